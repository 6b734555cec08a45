"""The shape of a PMD upload (`PmdBundleObservation`) before any entry is processed.

PMD takes measurements as a `batch` Bundle: each entry stands alone, and the `batch-response` echoes each
entry's `fullUrl` so a sender can match an error to what it sent. A Bundle that breaks these rules is refused
as a whole (the caller answers 400 with all the issues), because its entries could not be answered one by one.
Whether each measurement is plausible is decided per entry afterwards (`plausibility.check`).
"""

from __future__ import annotations

from typing import Any

from kjerne.fhir.outcome import Issue

ALLOWED_METHODS = ("POST", "PUT")


def check_pmd_bundle(bundle: Any) -> list[Issue]:
    """Every way `bundle` falls short of a PMD batch; an empty list when it may be processed."""
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        got = bundle.get("resourceType") if isinstance(bundle, dict) else type(bundle).__name__
        return [Issue("invalid", f"expected a Bundle, got {got!r}", "Bundle")]
    issues: list[Issue] = []
    kind = bundle.get("type")
    if kind != "batch":
        issues.append(
            Issue(
                "invalid",
                f"PMD accepts measurements only in a batch Bundle, not {kind!r}; each "
                "entry is processed and answered on its own",
                "Bundle.type",
            )
        )
    entries = bundle.get("entry")
    if entries is None or entries == []:
        issues.append(Issue("required", "the Bundle has no entries", "Bundle.entry"))
        return issues
    if not isinstance(entries, list):
        issues.append(Issue("structure", "Bundle.entry must be a list", "Bundle.entry"))
        return issues
    seen: dict[str, int] = {}
    for i, entry in enumerate(entries):
        issues += _check_entry(entry, i, seen)
    return issues


def _check_entry(entry: Any, i: int, seen: dict[str, int]) -> list[Issue]:
    where = f"Bundle.entry[{i}]"
    if not isinstance(entry, dict):
        return [Issue("structure", "an entry must be an object", where)]
    issues: list[Issue] = []
    full_url = entry.get("fullUrl")
    if not isinstance(full_url, str) or not full_url.strip():
        issues.append(
            Issue("required", "every entry needs a fullUrl, so its response can be matched to it", f"{where}.fullUrl")
        )
    elif full_url in seen:
        issues.append(
            Issue("invalid", f"fullUrl {full_url!r} is also used by Bundle.entry[{seen[full_url]}]", f"{where}.fullUrl")
        )
    else:
        seen[full_url] = i
    request = entry.get("request")
    if not isinstance(request, dict):
        issues.append(
            Issue("required", "every entry needs a request (method POST or PUT, and url)", f"{where}.request")
        )
    else:
        method = request.get("method")
        if method not in ALLOWED_METHODS:
            issues.append(
                Issue("invalid", f"request.method must be POST or PUT, not {method!r}", f"{where}.request.method")
            )
        if not isinstance(request.get("url"), str) or not request["url"].strip():
            issues.append(Issue("required", "request.url is missing", f"{where}.request.url"))
    resource = entry.get("resource")
    if not isinstance(resource, dict):
        issues.append(Issue("required", "the entry carries no resource", f"{where}.resource"))
    elif resource.get("resourceType") != "Observation":
        issues.append(
            Issue("invalid", f"PMD stores only Observation, not {resource.get('resourceType')!r}", f"{where}.resource")
        )
    return issues
