"""Opaque page cursors: the sort-key values of the edge row, its rid, and the snapshot bound.

Pages are keyset pages over (sort keys…, rid) with rids fixed at the first page's high-water mark,
so rows written or deleted between pages never make a page skip or repeat a row.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import orjson

from kjerne.fhir.outcome import invalid


@dataclass(frozen=True, slots=True)
class Cursor:
    keys: tuple[Any, ...]
    rid: int
    snapshot: int
    backwards: bool = False
    offset: int = 0  # position of the page's first row, for the client's orientation only

    def encode(self) -> str:
        raw = orjson.dumps([list(self.keys), self.rid, self.snapshot, int(self.backwards), self.offset])
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(token: str) -> Cursor:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        keys, rid, snapshot, backwards, offset = orjson.loads(raw)
        if not isinstance(keys, list) or not isinstance(rid, int) or not isinstance(snapshot, int):
            raise ValueError("bad cursor shape")
        return Cursor(tuple(keys), rid, snapshot, bool(backwards), int(offset))
    except (ValueError, TypeError, orjson.JSONDecodeError) as exc:
        raise invalid("_cursor is not a cursor this server issued", "_cursor") from exc
