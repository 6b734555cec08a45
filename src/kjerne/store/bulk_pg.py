"""A transaction's buffered rows written to PostgreSQL in one statement.

Each table's rows travel as one JSON array parameter, and one statement of data-modifying CTEs inserts
them all with `json_to_recordset`. That is one round trip per flush, and the rows are serialised by
orjson in C. Per-table COPY cost two round trips and a Python call per row for every table, and an
executemany one server-side execution per row: together that was a fifth of the write path's CPU.

Resource content is already JSON, so it is embedded as a JSON value (an `orjson.Fragment`, no escaping)
and taken back out as the exact text that was put in (the `json` type keeps its input verbatim).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from psycopg.types.json import Json
from sqlalchemy import BigInteger, Boolean, Float, Integer, LargeBinary, String, Table, Text
from sqlalchemy.types import TypeEngine


def _sql_type(column_type: TypeEngine[Any]) -> str:
    # Strings arrive as text and take the column's length check on assignment, as with COPY.
    if isinstance(column_type, String | Text):
        return "text"
    if isinstance(column_type, LargeBinary):
        return "json"  # the stored resource, embedded as JSON
    if isinstance(column_type, Boolean):
        return "boolean"
    if isinstance(column_type, Float):
        return "double precision"
    if isinstance(column_type, BigInteger | Integer):
        return "bigint"
    raise TypeError(f"no JSON row type for {column_type!r}")


@dataclass(frozen=True, slots=True)
class Target:
    table: Table
    on_conflict_do_nothing: bool = False

    def insert_sql(self) -> str:
        columns = list(self.table.c)
        names = ", ".join(c.name for c in columns)
        picked = ", ".join(
            f"convert_to({c.name}::text, 'UTF8')" if isinstance(c.type, LargeBinary) else c.name for c in columns
        )
        types = ", ".join(f"{c.name} {_sql_type(c.type)}" for c in columns)
        tail = " ON CONFLICT DO NOTHING" if self.on_conflict_do_nothing else ""
        rows = f"json_to_recordset(%s::json) AS x({types})"
        return f"INSERT INTO {self.table.name} ({names}) SELECT {picked} FROM {rows}{tail}"


def statement(targets: Sequence[Target]) -> str:
    """One statement that inserts into every target, its JSON rows in the parameter of the same position."""
    *first, last = [t.insert_sql() for t in targets]
    ctes = ", ".join(f"w{i} AS ({sql})" for i, sql in enumerate(first))
    return f"WITH {ctes} {last}" if ctes else last


def _default(value: Any) -> Any:
    if isinstance(value, bytes):  # a stored resource: JSON already
        return orjson.Fragment(value)
    return float(value)  # Decimal: the index columns are double precision


def _dumps(rows: list[dict[str, Any]]) -> bytes:
    return orjson.dumps(rows, default=_default)


def rows_json(rows: list[dict[str, Any]]) -> Json:
    """The rows as a `json` parameter: orjson's UTF-8 bytes go to the server as they are, with no
    round trip through a Python string."""
    return Json(rows, dumps=_dumps)
