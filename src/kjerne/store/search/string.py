from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement

from kjerne.store.indexing import normalise
from kjerne.store.schema import idx_string
from kjerne.store.search.common import BuildContext, like_escape, membership
from kjerne.store.search.request import Clause


def value_condition(value: str, modifier: str | None) -> ColumnElement[bool]:
    s = idx_string.c
    if modifier == "exact":
        return s.exact == value
    norm = like_escape(normalise(value))
    if modifier == "contains":
        return s.norm.like("%" + norm + "%", escape="\\")
    return s.norm.like(norm + "%", escape="\\")


def build(rid: ColumnElement[Any], res_type: str, clause: Clause, ctx: BuildContext) -> ColumnElement[bool]:
    conds = [value_condition(v, clause.modifier) for v in clause.values]
    return membership(rid, idx_string, res_type, clause, conds, ctx.patient)
