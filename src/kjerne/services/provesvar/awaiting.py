"""'Awaiting release': the citizen learns that a report exists and when it opens, nothing more."""

from __future__ import annotations

from typing import Any

from kjerne.access.restrictions import RELEASE_EXT
from kjerne.store.repository import Repository

_KINDS = {
    "RAD": "radiology",
    "HRAD": "radiology",
    "PAT": "pathology",
    "HPAT": "pathology",
    "MB": "microbiology",
    "MIC": "microbiology",
    "HMIK": "microbiology",
    "LAB": "lab",
    "HLAB": "lab",
    "CH": "lab",
    "HM": "lab",
    "GE": "genetics",
}


def _kind(report: dict[str, Any]) -> str:
    for concept in report.get("category", []):
        for coding in concept.get("coding", []):
            kind = _KINDS.get(str(coding.get("code", "")).upper())
            if kind:
                return kind
    return "lab"


def awaiting_release(repo: Repository) -> list[dict[str, Any]]:
    out = []
    for stored in repo.awaiting_release():
        report = stored.resource()
        release = next(
            (
                e.get("valueDateTime")
                for e in (report.get("meta") or {}).get("extension", [])
                if e.get("url") == RELEASE_EXT
            ),
            None,
        )
        out.append({"issued": report.get("issued"), "release_after": release, "kind": _kind(report)})
    out.sort(key=lambda item: item["issued"] or "", reverse=True)
    return out
