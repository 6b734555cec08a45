from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, and_, or_

from kjerne.store.indexing import normalise
from kjerne.store.schema import cut, idx_token
from kjerne.store.search.common import BuildContext, index_subquery, like_escape, membership
from kjerne.store.search.request import Clause, split_pipe


def value_condition(value: str, modifier: str | None) -> ColumnElement[bool]:
    t = idx_token.c
    if modifier == "text":
        norm = like_escape(normalise(value))
        return or_(t.text.like(norm + "%", escape="\\"), t.text.like("% " + norm + "%", escape="\\"))
    system, code = split_pipe(value)
    system, code = cut(system), cut(code)
    if system is None:
        return t.code == code
    if system == "":
        return and_(t.system.is_(None), t.code == code)
    if code == "":
        return t.system == system
    return and_(t.system == system, t.code == code)


def build(rid: ColumnElement[Any], res_type: str, clause: Clause, ctx: BuildContext) -> ColumnElement[bool]:
    if clause.modifier == "of-type":
        conds = []
        for value in clause.values:
            parts = value.split("|")
            if len(parts) != 3:
                from kjerne.fhir.outcome import invalid

                raise invalid(f"{clause.param.code}:of-type takes system|code|value", clause.param.code)
            conds.append(and_(idx_token.c.system == parts[0], idx_token.c.code == f"{parts[1]}|{parts[2]}"))
        return rid.in_(index_subquery(idx_token, res_type, clause.param.code + ":of-type", or_(*conds), ctx.patient))
    conds = [value_condition(v, clause.modifier) for v in clause.values]
    return membership(rid, idx_token, res_type, clause, conds, ctx.patient)
