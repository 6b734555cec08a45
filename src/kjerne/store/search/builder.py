"""Turns a SearchRequest into SQL over the current-resource table and runs one page of it."""

from __future__ import annotations

import hashlib
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, case, delete, func, insert, or_, select
from sqlalchemy.sql.expression import Alias

from kjerne.fhir.outcome import FhirError, invalid
from kjerne.store.clock import now_us
from kjerne.store.indexing import DATE_MAX, DATE_MIN
from kjerne.store.records import Stored, row_to_stored
from kjerne.store.schema import INDEX_TABLES, resource, search_snapshot, search_snapshot_info
from kjerne.store.search import date as date_pred
from kjerne.store.search import number, reference, string, token, uri
from kjerne.store.search.common import BuildContext, param_is
from kjerne.store.search.cursor import Cursor, decode
from kjerne.store.search.request import Clause, SearchRequest

AccessFilter = Callable[[str, Any], ColumnElement[bool] | None]
_PATIENT_HINT_PARAMS = ("patient", "subject")


def clause_predicate(
    rid: ColumnElement[Any], res_type: str, clause: Clause, ctx: BuildContext, r: Any
) -> ColumnElement[bool]:
    p = clause.param
    if p.code == "_id":
        ids = [v for v in clause.values]
        cond = r.c.res_id.in_(ids)
        return ~cond if clause.modifier == "not" else cond
    if p.code == "_lastUpdated":
        conds = []
        for v in clause.values:
            prefix, low, high = date_pred.parse_value(p.code, v)
            conds.append(date_pred.range_condition(r.c.last_updated, r.c.last_updated, prefix, low, high, ctx.now_us))
        return or_(*conds)

    def chain(target_rid: ColumnElement[Any], target_type: str, inner: Clause) -> ColumnElement[bool]:
        target = resource.alias("chain_row")
        outside = replace(ctx, patient=None)  # a chain's targets need not be the patient's own rows
        conds = [target.c.res_type == target_type, clause_predicate(target.c.rid, target_type, inner, outside, target)]
        visible = ctx.access(target_type, target) if ctx.access is not None else None
        if visible is not None:
            conds.append(visible)
        return target_rid.in_(select(target.c.rid).where(and_(*conds)))

    match p.type:
        case "token":
            return token.build(rid, res_type, clause, ctx)
        case "string":
            return string.build(rid, res_type, clause, ctx)
        case "date":
            return date_pred.build(rid, res_type, clause, ctx)
        case "reference":
            return reference.build(rid, res_type, clause, ctx, chain)
        case "quantity":
            return number.build_quantity(rid, res_type, clause, ctx)
        case "number":
            return number.build_number(rid, res_type, clause, ctx)
        case "uri":
            return uri.build(rid, res_type, clause, ctx)
    raise AssertionError(f"unsupported parameter type {p.type}")


def patient_hint(req: SearchRequest) -> str | None:
    """The one patient a search is scoped to, so the patient index can drive the query."""
    for clause in req.clauses:
        if (
            clause.param.code in _PATIENT_HINT_PARAMS
            and clause.chain is None
            and clause.modifier in (None, "Patient")
            and len(clause.values) == 1
        ):
            value = clause.values[0]
            if value.startswith("Patient/") and value.count("/") == 1:
                return value.split("/", 1)[1]
            if clause.param.code == "patient" and "/" not in value and "|" not in value:
                return value
    return None


def filters(req: SearchRequest, r: Alias | Any, ctx: BuildContext, access: AccessFilter) -> list[ColumnElement[bool]]:
    conds: list[ColumnElement[bool]] = [r.c.res_type == req.res_type, r.c.deleted.is_(False)]
    hint = patient_hint(req)
    if hint is not None:
        conds.append(r.c.patient == hint)
        ctx = replace(ctx, patient=hint)
    for clause in req.clauses:
        conds.append(clause_predicate(r.c.rid, req.res_type, clause, ctx, r))
    extra = access(req.res_type, r)
    if extra is not None:
        conds.append(extra)
    return conds


def sort_keys(req: SearchRequest, r: Any) -> list[tuple[ColumnElement[Any], bool, str]]:
    """(expression, descending, kind) per key; kind 'n' numeric or 's' text, for cursor checks."""
    keys: list[tuple[ColumnElement[Any], bool, str]] = []
    for param, desc in req.sort:
        code = param.code
        if code == "_id":
            keys.append((r.c.res_id, desc, "s"))
            continue
        if code == "_lastUpdated":
            keys.append((r.c.last_updated, desc, "n"))
            continue
        table = INDEX_TABLES[param.type]
        column = table.c[_SORT_COLUMN[param.type] if param.type != "date" else ("high" if desc else "low")]
        agg = func.max(column) if desc else func.min(column)
        sub = select(agg).where(and_(table.c.rid == r.c.rid, param_is(table, req.res_type, code))).scalar_subquery()
        if param.type == "date":
            keys.append((func.coalesce(sub, DATE_MIN if desc else DATE_MAX), desc, "n"))
        elif param.type in ("number", "quantity"):
            keys.append((func.coalesce(sub, -1e300 if desc else 1e300), desc, "n"))
        else:  # text keys: rows without a value sort last in either direction
            keys.append((case((sub.is_(None), 1), else_=0), False, "n"))
            keys.append((func.coalesce(sub, ""), desc, "s"))
    return keys


_SORT_COLUMN = {
    "string": "norm",
    "token": "code",
    "reference": "target_id",
    "uri": "value",
    "number": "value",
    "quantity": "value",
}
SNAPSHOT_MAX = 10_000
SNAPSHOT_TTL_US = 3600 * 1_000_000


def _keyset(
    keys: list[tuple[ColumnElement[Any], bool, str]], rid: ColumnElement[Any], cur: Cursor
) -> ColumnElement[bool]:
    """Rows strictly after the cursor row in the result order."""
    if len(cur.keys) != len(keys) or any(
        (kind == "s") != isinstance(value, str) for (_, _, kind), value in zip(keys, cur.keys, strict=True)
    ):
        raise invalid("_cursor does not belong to this search", "_cursor")
    values = list(cur.keys)
    ors = []
    for i in range(len(keys) + 1):
        ands = [keys[j][0] == values[j] for j in range(i)]
        if i < len(keys):
            expr, desc, _ = keys[i]
            ands.append((expr < values[i]) if desc else (expr > values[i]))
        else:
            ands.append(rid > cur.rid)
        ors.append(and_(*ands))
    return or_(*ors)


@dataclass(slots=True)
class Page:
    rows: list[Stored]
    total: int | None
    next: Cursor | None
    previous: Cursor | None
    first: bool


def _order(keys: list[tuple[ColumnElement[Any], bool, str]], rid: ColumnElement[Any]) -> list[Any]:
    return [expr.desc() if desc else expr.asc() for expr, desc, _ in keys] + [rid.asc()]


def run(conn: Connection, req: SearchRequest, ctx: BuildContext, access: AccessFilter) -> Page:
    ctx.access = access
    cursor = decode(req.cursor) if req.cursor else None
    if cursor is not None and cursor.snapshot is not None:
        return _snapshot_page(conn, req, cursor, access)
    r = resource.alias("r")
    conds = filters(req, r, ctx, access)
    keys = sort_keys(req, r)
    if cursor is not None:
        conds.append(_keyset(keys, r.c.rid, cursor))
    if cursor is None and req.summary != "count" and req.count > 0:
        return _first_page(conn, req, r, conds, keys)
    total: int | None = None
    if req.summary == "count" or req.total == "accurate" or (req.total == "estimate" and cursor is None):
        total = conn.execute(select(func.count()).select_from(r).where(and_(*conds))).scalar_one()
    if req.summary == "count" or req.count == 0:
        return Page([], total, None, None, cursor is None)
    labelled = [expr.label(f"k{i}") for i, (expr, _, _) in enumerate(keys)]
    q = select(*_ROW_COLUMNS(r), *labelled).where(and_(*conds)).order_by(*_order(keys, r.c.rid)).limit(req.count + 1)
    rows = list(conn.execute(q))
    if len(rows) <= req.count:
        return Page([row_to_stored(row) for row in rows], total, None, None, cursor is None)
    rows = rows[: req.count]
    stored = [row_to_stored(row) for row in rows]
    assert cursor is not None  # a first page went to _first_page: this is keyset paging past a full snapshot
    last = rows[-1]._mapping
    nxt = Cursor(None, 0, tuple(last[f"k{i}"] for i in range(len(keys))), last["rid"])
    return Page(stored, total, nxt, None, False)


def _first_page(
    conn: Connection,
    req: SearchRequest,
    r: Any,
    conds: list[ColumnElement[bool]],
    keys: list[tuple[ColumnElement[Any], bool, str]],
) -> Page:
    """The matching rows are filtered and ordered once: their rids (up to the snapshot's size) give the
    total, the page, and the snapshot later pages read, instead of a count, a page query and a
    snapshot query each doing that work again."""
    labelled = [expr.label(f"k{i}") for i, (expr, _, _) in enumerate(keys)]
    ordered = select(r.c.rid, *labelled).where(and_(*conds)).order_by(*_order(keys, r.c.rid))
    rids = list(conn.execute(ordered.limit(SNAPSHOT_MAX + 1)).scalars())
    complete = len(rids) <= SNAPSHOT_MAX
    total: int | None = len(rids) if complete and req.total != "none" else None
    if not complete and req.total in ("accurate", "estimate"):
        total = conn.execute(select(func.count()).select_from(r).where(and_(*conds))).scalar_one()
    wanted = rids[: req.count]
    # The filter again on the page's rows: a row changed since the ordering (say, a new restriction
    # label) must not be shown under the decision taken on its earlier version.
    page = select(*_ROW_COLUMNS(r)).where(r.c.rid.in_(wanted), *conds)
    found = {row.rid: row_to_stored(row) for row in conn.execute(page)} if wanted else {}
    stored = [found[rid] for rid in wanted if rid in found]
    if len(rids) <= req.count:
        return Page(stored, total, None, None, True)
    sid = _store_snapshot(conn, req, rids[:SNAPSHOT_MAX], complete)
    return Page(stored, total, Cursor(sid, req.count), None, True)


def _store_snapshot(conn: Connection, req: SearchRequest, rids: list[int], complete: bool) -> str:
    sid = str(uuid.uuid4())
    now = now_us()
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(
            "INSERT INTO search_snapshot (sid, pos, rid)"
            " SELECT %s, ord - 1, rid FROM unnest(%s::bigint[]) WITH ORDINALITY AS u(rid, ord)",
            (sid, rids),
        )
    else:
        conn.execute(insert(search_snapshot), [{"sid": sid, "pos": i, "rid": rid} for i, rid in enumerate(rids)])
    conn.execute(
        insert(search_snapshot_info).values(
            sid=sid, res_type=req.res_type, query_hash=query_hash(req), created=now, size=len(rids), complete=complete
        )
    )
    if random.random() < 0.02:
        _expire(conn, now)
    return sid


def query_hash(req: SearchRequest) -> str:
    """What defines a search's result order and membership: its filters and sort, not its page size."""
    kept = sorted((k, v) for k, v in req.pairs if k not in ("_cursor", "_count", "_total", "_summary", "_elements"))
    return hashlib.sha256(repr((req.res_type, kept)).encode()).hexdigest()


def _ROW_COLUMNS(r: Any) -> list[Any]:
    return [r.c.rid, r.c.res_type, r.c.res_id, r.c.version, r.c.last_updated, r.c.deleted, r.c.patient, r.c.content]


def _expire(conn: Connection, now: int) -> None:
    old = select(search_snapshot_info.c.sid).where(search_snapshot_info.c.created < now - SNAPSHOT_TTL_US)
    conn.execute(delete(search_snapshot).where(search_snapshot.c.sid.in_(old)))
    conn.execute(delete(search_snapshot_info).where(search_snapshot_info.c.created < now - SNAPSHOT_TTL_US))


def _snapshot_page(conn: Connection, req: SearchRequest, cursor: Cursor, access: AccessFilter) -> Page:
    assert cursor.snapshot is not None  # run() sends only snapshot cursors here
    info = conn.execute(select(search_snapshot_info).where(search_snapshot_info.c.sid == cursor.snapshot)).first()
    if info is None or info.created < now_us() - SNAPSHOT_TTL_US:
        raise FhirError.of(410, "expired", "this page of the search has expired; run the search again")
    if info.res_type != req.res_type or info.query_hash != query_hash(req):
        raise invalid("_cursor does not belong to this search", "_cursor")
    start = cursor.offset
    r = resource.alias("r")
    s = search_snapshot
    conds = [
        s.c.sid == cursor.snapshot,
        s.c.pos >= start,
        s.c.pos < start + req.count,
        r.c.deleted.is_(False),
    ]
    extra = access(req.res_type, r)
    if extra is not None:
        conds.append(extra)
    q = select(*_ROW_COLUMNS(r)).select_from(s.join(r, r.c.rid == s.c.rid)).where(and_(*conds)).order_by(s.c.pos)
    stored = [row_to_stored(row) for row in conn.execute(q)]
    end = start + req.count
    nxt: Cursor | None = None
    if end < info.size:
        nxt = Cursor(cursor.snapshot, end)
    elif not info.complete:
        nxt = _continue_after_snapshot(conn, req, cursor.snapshot, info.size)
    prev = Cursor(cursor.snapshot, max(0, start - req.count)) if start > 0 else None
    total = None
    if info.complete and req.total != "none":
        # Counted through this caller's access filter: a cursor handed to someone else must not
        # reveal how much the first caller could see.
        visible = [s.c.sid == cursor.snapshot, r.c.deleted.is_(False)]
        if extra is not None:
            visible.append(extra)
        total = conn.execute(
            select(func.count()).select_from(s.join(r, r.c.rid == s.c.rid)).where(and_(*visible))
        ).scalar_one()
    return Page(stored, total, nxt, prev, False)


def _continue_after_snapshot(conn: Connection, req: SearchRequest, sid: str, size: int) -> Cursor | None:
    """Past the end of a full snapshot, paging continues by keyset from its last row."""
    last_rid = conn.execute(
        select(search_snapshot.c.rid).where(and_(search_snapshot.c.sid == sid, search_snapshot.c.pos == size - 1))
    ).scalar()
    if last_rid is None:
        return None
    r = resource.alias("r")
    keys = sort_keys(req, r)
    row = conn.execute(select(*[e for e, _, _ in keys]).select_from(r).where(r.c.rid == last_rid)).first()
    if row is None:
        return None
    return Cursor(None, 0, tuple(row), last_rid)
