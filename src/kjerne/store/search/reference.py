from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import ColumnElement, and_, false, select

from kjerne.fhir.model import resource_types
from kjerne.fhir.outcome import invalid
from kjerne.store.schema import cut, idx_reference, resource
from kjerne.store.search.common import BuildContext, any_of, index_subquery, membership
from kjerne.store.search.request import Clause, split_pipe

ChainBuilder = Callable[[ColumnElement[Any], str, Clause], ColumnElement[bool]]


def value_condition(clause: Clause, value: str, ctx: BuildContext) -> ColumnElement[bool]:
    ref = idx_reference.c
    param = clause.param
    if clause.modifier == "identifier":
        system, code = split_pipe(value)
        system, code = cut(system), cut(code) or ""
        if system is None:
            return ref.ident_value == code
        if system == "":
            return and_(ref.ident_system.is_(None), ref.ident_value == code)
        return and_(ref.ident_system == system, ref.ident_value == code)
    if ctx.base_url and value.startswith(ctx.base_url.rstrip("/") + "/"):
        value = value[len(ctx.base_url.rstrip("/")) + 1 :]
    if "://" in value or value.startswith("urn:"):
        return ref.url == value
    parts = value.split("/")
    if len(parts) >= 4 and parts[2] == "_history":
        parts = parts[:2]
    if len(parts) == 2:
        target_type, target_id = parts
        if target_type not in resource_types():
            raise invalid(f"search parameter '{param.code}': '{target_type}' is not a resource type", param.code)
        if clause.modifier and clause.modifier != target_type:
            return false()  # the type modifier contradicts the value's type
        return and_(ref.target_type == target_type, ref.target_id == target_id)
    if len(parts) != 1:
        raise invalid(f"search parameter '{param.code}': '{value}' is not a reference", param.code)
    if clause.modifier:
        return and_(ref.target_type == clause.modifier, ref.target_id == value)
    return ref.target_id == value


def build(
    rid: ColumnElement[Any], res_type: str, clause: Clause, ctx: BuildContext, chain: ChainBuilder
) -> ColumnElement[bool]:
    ref = idx_reference.c
    if clause.chain is not None:
        target = resource.alias("chain_target")
        inner = Clause(clause.chain.param, clause.chain.modifier, clause.values)
        targets = select(target.c.res_id).where(
            and_(
                target.c.res_type == clause.chain.target_type,
                target.c.deleted.is_(False),
                chain(target.c.rid, clause.chain.target_type, inner),
            )
        )
        cond = and_(ref.target_type == clause.chain.target_type, ref.target_id.in_(targets))
        return rid.in_(index_subquery(idx_reference, res_type, clause.param.code, cond, ctx.patient))
    if clause.modifier == "missing":
        return membership(rid, idx_reference, res_type, clause, [], ctx.patient)
    conds = [value_condition(clause, v, ctx) for v in clause.values]
    return rid.in_(index_subquery(idx_reference, res_type, clause.param.code, any_of(conds), ctx.patient))
