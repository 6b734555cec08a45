"""Rows of the observation index (idx_obs): one per coding of the Observation's code, and one per
coding of each component (blood pressure's systolic and diastolic), each with the time and value."""

from __future__ import annotations

from typing import Any

from kjerne.store.indexing import date_range
from kjerne.store.schema import cut


def _effective(obs: dict[str, Any]) -> int | None:
    for key in ("effectiveDateTime", "effectiveInstant"):
        if isinstance(obs.get(key), str):
            try:
                return date_range(obs[key])[1]
            except ValueError:
                return None
    period = obs.get("effectivePeriod")
    if isinstance(period, dict):
        for key in ("end", "start"):
            if isinstance(period.get(key), str):
                try:
                    return date_range(period[key])[1]
                except ValueError:
                    return None
    if isinstance(obs.get("issued"), str):
        try:
            return date_range(obs["issued"])[1]
        except ValueError:
            return None
    return None


def _value(node: dict[str, Any]) -> tuple[float | None, str | None]:
    q = node.get("valueQuantity")
    if isinstance(q, dict) and isinstance(q.get("value"), int | float):
        return float(q["value"]), q.get("code") or q.get("unit")
    if isinstance(node.get("valueInteger"), int) and not isinstance(node.get("valueInteger"), bool):
        return float(node["valueInteger"]), None
    return None, None


def _codings(concept: Any) -> list[tuple[str | None, str]]:
    if not isinstance(concept, dict):
        return []
    return [
        (c.get("system"), c["code"])
        for c in concept.get("coding", [])
        if isinstance(c, dict) and isinstance(c.get("code"), str)
    ]


def observation_rows(obs: dict[str, Any], patient: str | None) -> list[dict[str, Any]]:
    if patient is None or obs.get("status") in ("cancelled", "entered-in-error"):
        return []
    when = _effective(obs)
    if when is None:
        return []
    rows = []
    value, unit = _value(obs)
    for system, code in _codings(obs.get("code")):
        rows.append(
            {
                "patient": patient,
                "system": cut(system),
                "code": cut(code),
                "effective": when,
                "value": value,
                "unit": (unit or "")[:64] or None,
                "component": False,
            }
        )
    for comp in obs.get("component", []):
        if not isinstance(comp, dict):
            continue
        cvalue, cunit = _value(comp)
        for system, code in _codings(comp.get("code")):
            rows.append(
                {
                    "patient": patient,
                    "system": cut(system),
                    "code": cut(code),
                    "effective": when,
                    "value": cvalue,
                    "unit": (cunit or "")[:64] or None,
                    "component": True,
                }
            )
    return rows
