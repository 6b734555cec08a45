from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from kjerne.store.clock import us_to_instant


@dataclass(slots=True)
class Stored:
    """One stored version of a resource."""

    rid: int
    res_type: str
    res_id: str
    version: int
    last_updated: int
    deleted: bool
    patient: str | None
    content: bytes

    def resource(self) -> dict[str, Any]:
        return orjson.loads(self.content)

    @property
    def etag(self) -> str:
        return f'W/"{self.version}"'

    @property
    def last_modified(self) -> str:
        return us_to_instant(self.last_updated)

    @property
    def location(self) -> str:
        return f"{self.res_type}/{self.res_id}/_history/{self.version}"


def row_to_stored(row: Any) -> Stored:
    return Stored(
        rid=row.rid,
        res_type=row.res_type,
        res_id=row.res_id,
        version=row.version,
        last_updated=row.last_updated,
        deleted=bool(row.deleted),
        patient=row.patient,
        content=bytes(row.content),
    )
