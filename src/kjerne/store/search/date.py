from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, and_, not_, or_

from kjerne.fhir.outcome import invalid
from kjerne.store.indexing import date_range
from kjerne.store.schema import idx_date
from kjerne.store.search.common import BuildContext, membership
from kjerne.store.search.prefixes import split_prefix
from kjerne.store.search.request import Clause

_DAY_US = 86_400_000_000


def parse_value(name: str, value: str) -> tuple[str, int, int]:
    prefix, raw = split_prefix(value.strip().replace(" ", "+"))
    try:
        low, high = date_range(raw)
    except ValueError as exc:
        raise invalid(f"search parameter '{name}': '{value}' is not a valid date ({exc})", name) from exc
    return prefix, low, high


def range_condition(
    lo: ColumnElement[Any], hi: ColumnElement[Any], prefix: str, s_low: int, s_high: int, now_us: int
) -> ColumnElement[bool]:
    """R4 prefix semantics between a target range [lo, hi] and a search range [s_low, s_high]."""
    contained = and_(lo >= s_low, hi <= s_high)
    match prefix:
        case "eq":
            return contained
        case "ne":
            return not_(contained)
        case "gt":
            return hi > s_high
        case "lt":
            return lo < s_low
        case "ge":
            return or_(hi > s_high, contained)
        case "le":
            return or_(lo < s_low, contained)
        case "sa":
            return lo > s_high
        case "eb":
            return hi < s_low
        case _:  # ap: within 10 % of the distance from now, at least a day
            margin = max(_DAY_US, abs(now_us - (s_low + s_high) // 2) // 10)
            return and_(lo <= s_high + margin, hi >= s_low - margin)


def build(rid: ColumnElement[Any], res_type: str, clause: Clause, ctx: BuildContext) -> ColumnElement[bool]:
    if clause.modifier == "missing":
        return membership(rid, idx_date, res_type, clause, [], ctx.patient)
    conds = []
    for value in clause.values:
        prefix, low, high = parse_value(clause.param.code, value)
        conds.append(range_condition(idx_date.c.low, idx_date.c.high, prefix, low, high, ctx.now_us))
    return membership(rid, idx_date, res_type, clause, conds, ctx.patient)
