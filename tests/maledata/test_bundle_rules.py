"""The shape of a PMD batch upload."""

from __future__ import annotations

from typing import Any

import pytest

from kjerne.demo.generate import generate
from kjerne.services.maledata.bundle_rules import check_pmd_bundle


def _observation(n: int) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"identifier": {"system": "urn:oid:2.16.578.1.12.4.1.4.1", "value": "13116900216"}},
        "effectiveDateTime": "2025-03-01T08:00:00+01:00",
        "valueQuantity": {"value": 60 + n, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"},
    }


def batch(n: int = 3, **fields: Any) -> dict[str, Any]:
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {
                "fullUrl": f"urn:uuid:00000000-0000-4000-8000-{i:012d}",
                "resource": _observation(i),
                "request": {"method": "POST" if i % 2 == 0 else "PUT", "url": "Observation"},
            }
            for i in range(n)
        ],
    }
    bundle.update(fields)
    return bundle


def where(bundle: Any) -> list[str | None]:
    return [i.expression for i in check_pmd_bundle(bundle)]


def test_a_valid_batch_passes() -> None:
    assert check_pmd_bundle(batch()) == []


@pytest.mark.parametrize("kind", ["transaction", "collection", "document", None])
def test_only_batch_is_accepted(kind: str | None) -> None:
    issues = check_pmd_bundle(batch(type=kind))
    assert [i.expression for i in issues] == ["Bundle.type"]
    assert "batch" in issues[0].diagnostics and repr(kind) in issues[0].diagnostics


def test_every_entry_needs_a_full_url() -> None:
    bundle = batch()
    del bundle["entry"][1]["fullUrl"]
    bundle["entry"][2]["fullUrl"] = ""
    issues = check_pmd_bundle(bundle)
    assert [i.expression for i in issues] == ["Bundle.entry[1].fullUrl", "Bundle.entry[2].fullUrl"]
    assert {i.code for i in issues} == {"required"}


def test_full_urls_must_be_distinct() -> None:
    bundle = batch()
    bundle["entry"][2]["fullUrl"] = bundle["entry"][0]["fullUrl"]
    (issue,) = check_pmd_bundle(bundle)
    assert issue.expression == "Bundle.entry[2].fullUrl" and "Bundle.entry[0]" in issue.diagnostics


@pytest.mark.parametrize("method", ["GET", "DELETE", "PATCH", "post", None])
def test_method_must_be_post_or_put(method: str | None) -> None:
    bundle = batch()
    bundle["entry"][1]["request"]["method"] = method
    assert where(bundle) == ["Bundle.entry[1].request.method"]


def test_request_and_url_are_required() -> None:
    bundle = batch()
    del bundle["entry"][0]["request"]
    del bundle["entry"][1]["request"]["url"]
    assert where(bundle) == ["Bundle.entry[0].request", "Bundle.entry[1].request.url"]


def test_only_observations() -> None:
    bundle = batch()
    bundle["entry"][0]["resource"] = {"resourceType": "Patient", "id": "p1"}
    del bundle["entry"][2]["resource"]
    issues = check_pmd_bundle(bundle)
    assert [i.expression for i in issues] == ["Bundle.entry[0].resource", "Bundle.entry[2].resource"]
    assert "'Patient'" in issues[0].diagnostics


def test_all_issues_are_returned_at_once() -> None:
    bundle = batch(type="transaction")
    del bundle["entry"][0]["fullUrl"]
    bundle["entry"][1]["request"]["method"] = "DELETE"
    bundle["entry"][2]["resource"] = {"resourceType": "Bundle"}
    assert where(bundle) == [
        "Bundle.type",
        "Bundle.entry[0].fullUrl",
        "Bundle.entry[1].request.method",
        "Bundle.entry[2].resource",
    ]


@pytest.mark.parametrize("entries", [None, []])
def test_a_batch_without_entries(entries: Any) -> None:
    bundle = batch()
    if entries is None:
        del bundle["entry"]
    else:
        bundle["entry"] = entries
    assert where(bundle) == ["Bundle.entry"]


def test_malformed_entries() -> None:
    assert where(batch(entry={"fullUrl": "x"})) == ["Bundle.entry"]
    bundle = batch()
    bundle["entry"][1] = "not an entry"
    assert where(bundle) == ["Bundle.entry[1]"]


@pytest.mark.parametrize("thing", [{"resourceType": "Observation"}, [], "Bundle"])
def test_not_a_bundle(thing: Any) -> None:
    assert where(thing) == ["Bundle"]


def test_the_vkp_example_shape_passes() -> None:
    # PmdBundleObservation's own example: one PUT entry with an http fullUrl and a free-form request.url.
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {
                "fullUrl": "http://bundle.example.no/pmdbundlerequestexample",
                "resource": _observation(0),
                "request": {"method": "PUT", "url": "test.url"},
            }
        ],
    }
    assert check_pmd_bundle(bundle) == []


def test_demo_transactions_are_not_pmd_batches() -> None:
    bundle = next(b for b in generate(seed=1, persons=2) if b["id"] != "demo-bundle-directory")
    issues = check_pmd_bundle(bundle)
    assert issues[0].expression == "Bundle.type"
