"""Turns a SearchRequest into SQL over the current-resource table and runs one page of it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, case, func, or_, select
from sqlalchemy.sql.expression import Alias

from kjerne.fhir.outcome import invalid
from kjerne.store.indexing import DATE_MAX, DATE_MIN
from kjerne.store.records import Stored, row_to_stored
from kjerne.store.schema import INDEX_TABLES, resource
from kjerne.store.search import date as date_pred
from kjerne.store.search import number, reference, string, token, uri
from kjerne.store.search.common import BuildContext
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
        return target_rid.in_(
            select(target.c.rid).where(
                and_(target.c.res_type == target_type, clause_predicate(target.c.rid, target_type, inner, ctx, target))
            )
        )

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
    for clause in req.clauses:
        conds.append(clause_predicate(r.c.rid, req.res_type, clause, ctx, r))
    extra = access(req.res_type, r)
    if extra is not None:
        conds.append(extra)
    return conds


def sort_keys(req: SearchRequest, r: Any) -> list[tuple[ColumnElement[Any], bool]]:
    keys: list[tuple[ColumnElement[Any], bool]] = []
    for param, desc in req.sort:
        code = param.code
        if code == "_id":
            keys.append((r.c.res_id, desc))
            continue
        if code == "_lastUpdated":
            keys.append((r.c.last_updated, desc))
            continue
        table = INDEX_TABLES[param.type]
        column = {
            "date": table.c.high if desc else table.c.low,
            "string": table.c.get("norm"),
            "token": table.c.get("code"),
            "reference": table.c.get("target_id"),
            "uri": table.c.get("value"),
            "number": table.c.get("value"),
            "quantity": table.c.get("value"),
        }[param.type]
        agg = func.max(column) if desc else func.min(column)
        sub = select(agg).where(and_(table.c.rid == r.c.rid, table.c.param == code)).scalar_subquery()
        if param.type == "date":
            keys.append((func.coalesce(sub, DATE_MIN if desc else DATE_MAX), desc))
        elif param.type in ("number", "quantity"):
            keys.append((func.coalesce(sub, -1e300 if desc else 1e300), desc))
        else:  # text keys: rows without a value sort last in either direction
            keys.append((_null_last(sub), False))
            keys.append((func.coalesce(sub, ""), desc))
    return keys


def _null_last(sub: Any) -> ColumnElement[Any]:
    return case((sub.is_(None), 1), else_=0)


def _keyset(keys: list[tuple[ColumnElement[Any], bool]], rid: ColumnElement[Any], cur: Cursor) -> ColumnElement[bool]:
    """Rows strictly after the cursor row in the page order (or before it when paging backwards)."""
    values = list(cur.keys)
    ors = []
    for i in range(len(keys) + 1):
        ands = [keys[j][0] == values[j] for j in range(i)]
        if i < len(keys):
            expr, desc = keys[i]
            forward = (expr < values[i]) if desc else (expr > values[i])
            backward = (expr > values[i]) if desc else (expr < values[i])
            ands.append(backward if cur.backwards else forward)
        else:
            ands.append(rid < cur.rid if cur.backwards else rid > cur.rid)
        ors.append(and_(*ands))
    return or_(*ors)


@dataclass(slots=True)
class Page:
    rows: list[Stored]
    total: int | None
    next: Cursor | None
    previous: Cursor | None
    first: bool


def run(conn: Connection, req: SearchRequest, ctx: BuildContext, access: AccessFilter) -> Page:
    r = resource.alias("r")
    conds = filters(req, r, ctx, access)
    cursor = decode(req.cursor) if req.cursor else None
    snapshot = cursor.snapshot if cursor else (conn.execute(select(func.max(resource.c.rid))).scalar() or 0)
    conds.append(r.c.rid <= snapshot)

    total: int | None = None
    if req.summary == "count" or req.total == "accurate" or (req.total == "estimate" and cursor is None):
        total = conn.execute(select(func.count()).select_from(r).where(and_(*conds))).scalar_one()
    if req.summary == "count" or req.count == 0:
        return Page([], total, None, None, cursor is None)

    keys = sort_keys(req, r)
    page_conds = list(conds)
    if cursor is not None:
        if len(cursor.keys) != len(keys):
            raise invalid("_cursor does not belong to this search", "_cursor")
        page_conds.append(_keyset(keys, r.c.rid, cursor))
    backwards = bool(cursor and cursor.backwards)
    order = []
    for expr, desc in keys:
        d = desc != backwards
        order.append(expr.desc() if d else expr.asc())
    order.append(r.c.rid.desc() if backwards else r.c.rid.asc())
    labelled = [expr.label(f"k{i}") for i, (expr, _) in enumerate(keys)]
    q = (
        select(
            r.c.rid,
            r.c.res_type,
            r.c.res_id,
            r.c.version,
            r.c.last_updated,
            r.c.deleted,
            r.c.patient,
            r.c.content,
            *labelled,
        )
        .where(and_(*page_conds))
        .order_by(*order)
        .limit(req.count + 1)
    )
    rows = list(conn.execute(q))
    more = len(rows) > req.count
    rows = rows[: req.count]
    if backwards:
        rows.reverse()
    stored = [row_to_stored(row) for row in rows]

    def edge(row: Any, back: bool) -> Cursor:
        return Cursor(tuple(row[f"k{i}"] for i in range(len(keys))), row.rid, snapshot, back)

    rows_m = [row._mapping for row in rows]
    has_next = (more and not backwards) or (backwards and cursor is not None)
    has_prev = (cursor is not None and not backwards) or (backwards and more)
    nxt = Cursor(edge(rows_m[-1], False).keys, rows_m[-1]["rid"], snapshot, False) if has_next and rows_m else None
    prev = Cursor(edge(rows_m[0], True).keys, rows_m[0]["rid"], snapshot, True) if has_prev and rows_m else None
    return Page(stored, total, nxt, prev, cursor is None)
