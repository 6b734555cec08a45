"""Opaque page cursors.

A search that has more than one page stores the ordered rids of its result at the first page (a
snapshot, `store/search/builder.py`); its cursor is the snapshot id and the offset of the page. Rows
created, updated or deleted between pages then never make a page skip or repeat a row. A result too
large for one snapshot continues with a keyset cursor: the sort-key values and rid of the last row.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import orjson

from kjerne.fhir.outcome import invalid


@dataclass(frozen=True, slots=True)
class Cursor:
    snapshot: str | None = None  # snapshot id
    offset: int = 0
    keys: tuple[Any, ...] = ()  # keyset continuation past the end of a snapshot
    rid: int = 0

    def encode(self) -> str:
        raw = orjson.dumps([self.snapshot, self.offset, list(self.keys), self.rid])
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _bad() -> Exception:
    return invalid("_cursor is not a cursor this server issued", "_cursor")


def decode(token: str) -> Cursor:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        snapshot, offset, keys, rid = orjson.loads(raw)
    except (ValueError, TypeError, orjson.JSONDecodeError) as exc:
        raise _bad() from exc
    if snapshot is not None and (not isinstance(snapshot, str) or len(snapshot) != 36):
        raise _bad()
    if not isinstance(offset, int) or isinstance(offset, bool) or not 0 <= offset < 2**31:
        raise _bad()
    if not isinstance(rid, int) or isinstance(rid, bool) or not 0 <= rid < 2**63:
        raise _bad()
    if not isinstance(keys, list) or any(
        isinstance(k, bool) or not isinstance(k, int | float | str) or (isinstance(k, int) and abs(k) >= 2**63)
        for k in keys
    ):
        raise _bad()
    if any(isinstance(k, str) and "\x00" in k for k in keys):
        raise _bad()
    return Cursor(snapshot, offset, tuple(keys), rid)
