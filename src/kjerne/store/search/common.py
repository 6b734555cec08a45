"""Shared pieces of the per-type predicate builders."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, Table, and_, false, not_, or_, select

from kjerne.store.derived_params import stored_as
from kjerne.store.search.request import Clause


@dataclass(slots=True)
class BuildContext:
    base_url: str
    now_us: int
    # The access filter, applied to the targets of a chained parameter too, so a chain cannot test
    # what the caller may not read.
    access: Callable[[str, Any], ColumnElement[bool] | None] | None = None
    # The one patient the searched rows belong to, when the search names one. Index rows carry their
    # resource's patient, so each index subquery can be narrowed to that patient's rows: the planner
    # then reads the patient's few rows instead of, say, every laboratory Observation's category.
    patient: str | None = None


def like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def param_is(table: Any, res_type: str, param: str) -> ColumnElement[bool]:
    """The index rows of a parameter; a union parameter (combo-code) reads its parts' rows."""
    stored = stored_as(res_type, param)
    return table.c.param == stored[0] if len(stored) == 1 else table.c.param.in_(stored)


def index_subquery(
    table: Table, res_type: str, param: str, cond: ColumnElement[bool] | None, patient: str | None = None
) -> Select[Any]:
    where = [table.c.res_type == res_type, param_is(table, res_type, param)]
    if patient is not None:
        where.append(table.c.patient == patient)
    if cond is not None:
        where.append(cond)
    return select(table.c.rid).where(and_(*where))


def any_of(conds: list[ColumnElement[bool]]) -> ColumnElement[bool]:
    if not conds:
        return false()
    return conds[0] if len(conds) == 1 else or_(*conds)


def membership(
    rid: ColumnElement[Any],
    table: Table,
    res_type: str,
    clause: Clause,
    conds: list[ColumnElement[bool]],
    patient: str | None = None,
) -> ColumnElement[bool]:
    """rid IN (index rows of this param matching any value); :missing and :not handled here."""
    code = clause.param.code
    if clause.modifier == "missing":
        has = rid.in_(index_subquery(table, res_type, code, None, patient))
        return not_(has) if clause.values[0] == "true" else has
    matched = rid.in_(index_subquery(table, res_type, code, any_of(conds), patient))
    if clause.modifier == "not":
        return not_(matched)
    return matched
