from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, literal

from kjerne.store.schema import cut, idx_uri
from kjerne.store.search.common import BuildContext, like_escape, membership
from kjerne.store.search.request import Clause


def value_condition(value: str, modifier: str | None) -> ColumnElement[bool]:
    u = idx_uri.c
    value = cut(value) or ""
    if modifier == "below":
        return u.value.like(like_escape(value) + "%", escape="\\")
    if modifier == "above":
        return literal(value).like(u.value + "%")
    return u.value == value


def build(rid: ColumnElement[Any], res_type: str, clause: Clause, ctx: BuildContext) -> ColumnElement[bool]:
    conds = [value_condition(v, clause.modifier) for v in clause.values]
    return membership(rid, idx_uri, res_type, clause, conds, ctx.patient)
