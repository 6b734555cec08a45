"""Reading a patient's results through the repository (so through the access engine and audit log),
page by page, without the caller handling cursors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from kjerne.store.repository import Repository

MAX_ROWS = 20_000


def all_matches(repo: Repository, res_type: str, pairs: list[tuple[str, str]]) -> Iterator[dict[str, Any]]:
    cursor: str | None = None
    seen = 0
    while True:
        page_pairs = [*pairs, ("_count", "1000"), ("_total", "none")]
        if cursor:
            page_pairs.append(("_cursor", cursor))
        result = repo.search(res_type, page_pairs)
        for stored in result.page.rows:
            seen += 1
            yield stored.resource()
        if result.page.next is None or seen >= MAX_ROWS:
            return
        cursor = result.page.next.encode()


def patient_pairs(patient_ids: list[str]) -> list[tuple[str, str]]:
    return [("patient", ",".join(f"Patient/{p}" for p in patient_ids) or "Patient/none")]
