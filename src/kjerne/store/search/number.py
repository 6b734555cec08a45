"""number and quantity parameters: prefixes, the implicit precision of the search value, units."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import ColumnElement, and_, not_, or_

from kjerne.fhir.outcome import invalid
from kjerne.store.schema import cut, idx_number, idx_quantity
from kjerne.store.search.common import BuildContext, membership
from kjerne.store.search.prefixes import split_prefix
from kjerne.store.search.request import Clause, split_pipe


def parse_number(name: str, raw: str) -> tuple[float, float]:
    """The value and half its implicit precision: '5.40' → (5.4, 0.005)."""
    try:
        dec = Decimal(raw)
    except InvalidOperation as exc:
        raise invalid(f"search parameter '{name}': '{raw}' is not a number", name) from exc
    if not dec.is_finite():
        raise invalid(f"search parameter '{name}': '{raw}' is not a number", name)
    exponent = dec.as_tuple().exponent
    if not isinstance(exponent, int) or abs(dec.adjusted()) > 300 or abs(exponent) > 300:
        raise invalid(f"search parameter '{name}': '{raw}' is outside the range this server compares", name)
    return float(dec), 0.5 * 10.0**exponent


def value_condition(col: ColumnElement[Any], prefix: str, value: float, half: float) -> ColumnElement[bool]:
    match prefix:
        case "eq":
            return and_(col >= value - half, col < value + half)
        case "ne":
            return not_(and_(col >= value - half, col < value + half))
        case "gt" | "sa":
            return col > value
        case "lt" | "eb":
            return col < value
        case "ge":
            return col >= value
        case "le":
            return col <= value
        case _:  # ap: within 10 %
            margin = abs(value) * 0.1
            return and_(col >= value - margin, col <= value + margin)


def build_number(rid: ColumnElement[Any], res_type: str, clause: Clause, ctx: BuildContext) -> ColumnElement[bool]:
    conds = []
    if clause.modifier != "missing":
        for v in clause.values:
            prefix, raw = split_prefix(v)
            value, half = parse_number(clause.param.code, raw)
            conds.append(value_condition(idx_number.c.value, prefix, value, half))
    return membership(rid, idx_number, res_type, clause, conds, ctx.patient)


def build_quantity(rid: ColumnElement[Any], res_type: str, clause: Clause, ctx: BuildContext) -> ColumnElement[bool]:
    q = idx_quantity.c
    conds = []
    if clause.modifier != "missing":
        for v in clause.values:
            number_part, _, unit_part = v.partition("|")
            prefix, raw = split_prefix(number_part)
            value, half = parse_number(clause.param.code, raw)
            cond = value_condition(q.value, prefix, value, half)
            if unit_part:
                system, code = split_pipe(unit_part)
                system, code = cut(system), cut(code)
                if system:
                    cond = and_(cond, q.system == system, q.code == code)
                elif code:
                    cond = and_(cond, or_(q.code == code, q.unit == code))
            conds.append(cond)
    return membership(rid, idx_quantity, res_type, clause, conds, ctx.patient)
