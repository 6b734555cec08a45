"""_include and _revinclude, with :iterate for one more level. Included rows pass the same access filter."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, and_, or_, select

from kjerne.store.records import Stored, row_to_stored
from kjerne.store.schema import idx_reference, resource
from kjerne.store.search.builder import AccessFilter
from kjerne.store.search.request import IncludeSpec, SearchRequest

MAX_INCLUDED = 2000


def _load(conn: Connection, keys: set[tuple[str, str]], access: AccessFilter) -> list[Stored]:
    out: list[Stored] = []
    by_type: dict[str, list[str]] = {}
    for t, i in keys:
        by_type.setdefault(t, []).append(i)
    for res_type, ids in by_type.items():
        r = resource.alias("inc")
        conds = [r.c.res_type == res_type, r.c.res_id.in_(ids), r.c.deleted.is_(False)]
        extra = access(res_type, r)
        if extra is not None:
            conds.append(extra)
        out.extend(row_to_stored(row) for row in conn.execute(select(r).where(and_(*conds))))
    return out


def _forward(
    conn: Connection, sources: list[Stored], specs: Iterable[IncludeSpec], access: AccessFilter
) -> list[Stored]:
    wanted: set[tuple[str, str]] = set()
    for spec in specs:
        rids = [s.rid for s in sources if s.res_type == spec.source_type]
        if not rids:
            continue
        ref = idx_reference.c
        conds = [ref.rid.in_(rids), ref.param == spec.param, ref.target_id.is_not(None)]
        if spec.target_type:
            conds.append(ref.target_type == spec.target_type)
        for t, i in conn.execute(select(ref.target_type, ref.target_id).where(and_(*conds))):
            wanted.add((t, i))
    return _load(conn, wanted, access)


def _reverse(
    conn: Connection, targets: list[Stored], specs: Iterable[IncludeSpec], access: AccessFilter
) -> list[Stored]:
    out: list[Stored] = []
    for spec in specs:
        ref = idx_reference.c
        pairs = [(t.res_type, t.res_id) for t in targets if not spec.target_type or t.res_type == spec.target_type]
        if not pairs:
            continue
        match = or_(*[and_(ref.target_type == t, ref.target_id == i) for t, i in pairs])
        r = resource.alias("rev")
        conds = [
            r.c.res_type == spec.source_type,
            r.c.deleted.is_(False),
            r.c.rid.in_(select(ref.rid).where(and_(ref.res_type == spec.source_type, ref.param == spec.param, match))),
        ]
        extra = access(spec.source_type, r)
        if extra is not None:
            conds.append(extra)
        out.extend(row_to_stored(row) for row in conn.execute(select(r).where(and_(*conds)).limit(MAX_INCLUDED)))
    return out


def resolve(conn: Connection, req: SearchRequest, page: list[Stored], access: AccessFilter) -> list[Stored]:
    if not (req.includes or req.revincludes) or not page:
        return []
    seen: dict[tuple[str, str], Stored] = {(s.res_type, s.res_id): s for s in page}
    found: dict[tuple[str, str], Stored] = {}

    def add(rows: list[Stored]) -> list[Stored]:
        new = []
        for s in rows:
            key = (s.res_type, s.res_id)
            if key not in seen and key not in found:
                found[key] = s
                new.append(s)
        return new

    first = add(_forward(conn, page, [s for s in req.includes if not s.iterate], access))
    first += add(_reverse(conn, page, [s for s in req.revincludes if not s.iterate], access))
    iterate_inc = [s for s in req.includes if s.iterate]
    iterate_rev = [s for s in req.revincludes if s.iterate]
    if iterate_inc or iterate_rev:
        level = page + first
        add(_forward(conn, level, iterate_inc, access))
        add(_reverse(conn, level, iterate_rev, access))
    result: list[Any] = list(found.values())
    return result[:MAX_INCLUDED]
