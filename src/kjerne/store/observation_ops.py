"""$lastn and $stats over the observation index. Both read through the same access filter as search,
and both leave an audit entry."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, and_, func, literal, select, union_all

from kjerne.access.context import AccessRecord
from kjerne.fhir.outcome import invalid
from kjerne.store.records import Stored, row_to_stored
from kjerne.store.repository import Repository
from kjerne.store.schema import idx_obs, idx_token, patient_code, resource
from kjerne.store.search.request import split_pipe

MAX_LASTN = 100
MAX_CODES = 200


@dataclass(slots=True)
class ObsQuery:
    patients: list[str]
    codes: list[tuple[str | None, str]] = field(default_factory=list)  # (system or None, code)
    categories: list[tuple[str | None, str]] = field(default_factory=list)
    start_us: int | None = None
    end_us: int | None = None


def parse_codes(values: list[str]) -> list[tuple[str | None, str]]:
    out: list[tuple[str | None, str]] = []
    for raw in values:
        for v in raw.split(","):
            system, code = split_pipe(v)
            if not code:
                raise invalid(f"'{v}' is not a code (use system|code or code)", "code")
            out.append((system or None, code))
    return out


def _category_rids(categories: list[tuple[str | None, str]], patients: list[str]) -> Any:
    t = idx_token.c
    conds = []
    for system, code in categories:
        conds.append(and_(t.code == code, t.system == system) if system else t.code == code)
    from sqlalchemy import or_

    return select(t.rid).where(and_(t.patient.in_(patients), t.param == "category", or_(*conds)))


def _codes_of(conn: Any, repo: Repository, q: ObsQuery) -> list[tuple[str | None, str]]:
    pc = patient_code.c
    rows = conn.execute(
        select(pc.system, pc.code).where(pc.patient.in_(q.patients)).distinct().limit(MAX_CODES + 1)
    ).all()
    if len(rows) > MAX_CODES:
        raise invalid("the patient has too many distinct codes; name the codes or a category", "code")
    return [(r.system or None, r.code) for r in rows]


def _candidates(q: ObsQuery, system: str | None, code: str, limit: int) -> Any:
    o = idx_obs.c
    conds = [o.patient.in_(q.patients), o.code == code, o.component.is_(False)]
    if system:
        conds.append(o.system == system)
    if q.categories:
        conds.append(o.rid.in_(_category_rids(q.categories, q.patients)))
    if q.start_us is not None:
        conds.append(o.effective >= q.start_us)
    if q.end_us is not None:
        conds.append(o.effective <= q.end_us)
    return select(o.rid, o.effective).where(and_(*conds)).order_by(o.effective.desc()).limit(limit)


def _visible(conn: Any, repo: Repository, rids: list[int]) -> set[int]:
    r = resource.alias("r")
    check: list[ColumnElement[bool]] = [r.c.rid.in_(rids), r.c.deleted.is_(False)]
    extra = repo.access.read_filter("Observation", r)
    if extra is not None:
        check.append(extra)
    return {rid for (rid,) in conn.execute(select(r.c.rid).where(and_(*check)))}


def _pick(conn: Any, repo: Repository, q: ObsQuery, codes: list[tuple[str | None, str]], n: int) -> list[list[Any]]:
    """The newest n visible Observations of each code. Candidates come newest-first from the
    observation index alone, every code's in one statement; the access filter then judges only those
    rows (by rid), in one statement. A code whose candidates were partly held back fetches more,
    on its own."""
    limit = max(2 * n, 8)
    parts = [_candidates(q, system, code, limit).subquery().select() for system, code in codes]
    tagged = [p.add_columns(literal(i).label("i")) for i, p in enumerate(parts)]
    rows = conn.execute(union_all(*tagged)).all() if len(tagged) > 1 else conn.execute(tagged[0]).all()
    per_code: list[list[Any]] = [[] for _ in codes]
    for row in rows:
        per_code[row.i].append(row)
    visible = _visible(conn, repo, [row.rid for row in rows]) if rows else set()
    picked: list[list[Any]] = []
    for i, cand in enumerate(per_code):
        shown = [row for row in cand if row.rid in visible]
        if len(shown) < n and len(cand) == limit:
            system, code = codes[i]
            shown = _pick_more(conn, repo, q, system, code, n, limit * 8)
        picked.append(shown[:n])
    return picked


def _pick_more(
    conn: Any, repo: Repository, q: ObsQuery, system: str | None, code: str, n: int, limit: int
) -> list[Any]:
    while True:
        rows = conn.execute(_candidates(q, system, code, limit)).all()
        visible = _visible(conn, repo, [row.rid for row in rows]) if rows else set()
        picked = [row for row in rows if row.rid in visible][:n]
        if len(picked) >= n or len(rows) < limit or limit >= 200_000:
            return picked
        limit *= 8


def lastn(repo: Repository, q: ObsQuery, n: int) -> list[Stored]:
    if not 1 <= n <= MAX_LASTN:
        raise invalid(f"max must be between 1 and {MAX_LASTN}", "max")
    if not q.patients:
        return _audited(repo, [], "lastn", q)
    with repo.audit_tx() as conn:
        codes = q.codes or _codes_of(conn, repo, q)
        order: dict[int, tuple[int, int]] = {}
        if codes:
            for i, rows in enumerate(_pick(conn, repo, q, codes, n)):
                for row in rows:
                    order.setdefault(row.rid, (i, -row.effective))
        stored: list[Stored] = []
        if order:
            loaded = conn.execute(select(resource).where(resource.c.rid.in_(list(order)))).all()
            stored = sorted((row_to_stored(x) for x in loaded), key=lambda s: order[s.rid])
        repo._record(conn, _record("lastn", stored, q))
    return stored


def _record(action: str, stored: list[Stored], q: ObsQuery) -> AccessRecord:
    return AccessRecord(
        "operation",
        "Observation",
        "allowed",
        [f"Observation/{s.res_id}" for s in stored],
        sorted(set(q.patients)),
        detail=f"${action}",
    )


def _audited(repo: Repository, stored: list[Stored], action: str, q: ObsQuery) -> list[Stored]:
    with repo.audit_tx() as conn:
        repo._record(conn, _record(action, stored, q))
    return stored


@dataclass(slots=True)
class CodeStats:
    system: str | None
    code: str
    unit: str | None
    count: int
    minimum: float | None
    maximum: float | None
    mean: float | None
    last: float | None
    last_at: int | None
    buckets: list[dict[str, Any]]


def stats(repo: Repository, q: ObsQuery, *, bucket: str | None, tz: dt.tzinfo) -> list[CodeStats]:
    """min, max, mean, count and last per code (components of a panel per component code) over the
    period, with optional per-day or per-week buckets counted from local midnight."""
    if not q.codes:
        raise invalid("$stats needs at least one code", "code")
    if bucket not in (None, "day", "week"):
        raise invalid("bucket must be day or week", "bucket")
    out: list[CodeStats] = []
    with repo.audit_tx() as conn:
        for system, code in q.codes:
            r = resource.alias("r")
            o = idx_obs.alias("o")
            base: list[ColumnElement[bool]] = [o.c.patient.in_(q.patients), r.c.deleted.is_(False)]
            if q.start_us is not None:
                base.append(o.c.effective >= q.start_us)
            if q.end_us is not None:
                base.append(o.c.effective <= q.end_us)
            extra = repo.access.read_filter("Observation", r)
            if extra is not None:
                base.append(extra)
            head = [o.c.code == code, o.c.component.is_(False)] + ([o.c.system == system] if system else [])
            panel = select(o.c.rid).where(and_(o.c.patient.in_(q.patients), *head))
            # Values on the code itself, or, for a panel such as blood pressure, on its components.
            direct = and_(*head, o.c.value.is_not(None))
            parts = and_(o.c.component.is_(True), o.c.rid.in_(panel), o.c.value.is_not(None))
            src = o.join(r, r.c.rid == o.c.rid)
            groups = conn.execute(
                select(
                    o.c.system,
                    o.c.code,
                    o.c.unit,
                    func.count(),
                    func.min(o.c.value),
                    func.max(o.c.value),
                    func.avg(o.c.value),
                    func.max(o.c.effective),
                )
                .select_from(src)
                .where(and_(*base, (direct | parts)))
                .group_by(o.c.system, o.c.code, o.c.unit)
            ).all()
            for g in groups:
                gsys, gcode, unit, count, mn, mx, mean, last_at = g
                key = [o.c.code == gcode, o.c.value.is_not(None)]
                key.append(o.c.system == gsys if gsys is not None else o.c.system.is_(None))
                key.append(o.c.unit == unit if unit is not None else o.c.unit.is_(None))
                last = conn.execute(
                    select(o.c.value).select_from(src).where(and_(*base, *key)).order_by(o.c.effective.desc()).limit(1)
                ).scalar()
                buckets: list[dict[str, Any]] = []
                if bucket:
                    buckets = _buckets(conn, src, o, [*base, *key], bucket, q, tz)
                out.append(
                    CodeStats(
                        gsys,
                        gcode,
                        unit,
                        count,
                        mn,
                        mx,
                        float(mean) if mean is not None else None,
                        last,
                        last_at,
                        buckets,
                    )
                )
        repo._record(
            conn,
            AccessRecord("operation", "Observation", "allowed", [], sorted(set(q.patients)), detail="$stats"),
        )
    return out


def _buckets(
    conn: Any, src: Any, o: Any, conds: list[Any], bucket: str, q: ObsQuery, tz: dt.tzinfo
) -> list[dict[str, Any]]:
    width = 86_400_000_000 * (7 if bucket == "week" else 1)
    start = q.start_us
    if start is None:
        start = conn.execute(select(func.min(o.c.effective)).select_from(src).where(and_(*conds))).scalar() or 0
    first = dt.datetime.fromtimestamp(start / 1e6, tz)
    origin_day = first.replace(hour=0, minute=0, second=0, microsecond=0)
    if bucket == "week":
        origin_day -= dt.timedelta(days=origin_day.weekday())
    origin = int(origin_day.timestamp() * 1_000_000)
    slot = ((o.c.effective - origin) // width).label("slot")
    rows = conn.execute(
        select(slot, func.count(), func.min(o.c.value), func.max(o.c.value), func.avg(o.c.value))
        .select_from(src)
        .where(and_(*conds))
        .group_by(slot)
        .order_by(slot)
    ).all()
    out = []
    for s, count, mn, mx, mean in rows:
        begins = origin_day + dt.timedelta(days=int(s) * (7 if bucket == "week" else 1))
        out.append(
            {
                "start": begins.date().isoformat(),
                "count": count,
                "min": mn,
                "max": mx,
                "mean": float(mean) if mean is not None else None,
            }
        )
    return out
