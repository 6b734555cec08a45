"""Plausibility of one home measurement (a VkpObservation) before it is stored.

`check` answers two questions about an Observation and changes nothing:

* Can it be stored? Anything physiologically impossible or unreadable is an error (`Checked.errors`, one
  `Issue` per fault, each naming the element by FHIRPath): an unknown vital-signs code, a unit that does not
  fit the code, a value outside the plausible range, a missing value without `dataAbsentReason`, a blood
  pressure without both components, a measurement time in the future, a subject without identifier.
* Should someone look at it? A value outside the alert range is stored and flagged with an
  `interpretation` (H/L/HH/LL/AA from v3-ObservationInterpretation). `apply_interpretation` returns a copy
  of the Observation with the flags set; the original is left as it was.

Values in an accepted non-canonical unit (`[lb_av]`, `[degF]`, `mg/dL`) are stored as sent; the ranges are
applied to the value in the canonical unit, which is reported in `Checked.canonical_value`.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, TypeGuard

import orjson

from kjerne.fhir.identifiers import PERSON_SYSTEMS
from kjerne.fhir.outcome import Issue
from kjerne.services.maledata.types import (
    INTERPRETATION,
    INTERPRETATION_DISPLAY,
    OBSERVATION_CATEGORY,
    UCUM,
    AlertRange,
    Component,
    MeasurementType,
    Range,
    TypeRegistry,
    Unit,
    registry,
)

#: How far a device clock may run ahead of ours before a measurement counts as "in the future".
CLOCK_SKEW = dt.timedelta(minutes=5)

Coding = dict[str, str]


@dataclass(frozen=True)
class ComponentResult:
    """The outcome for one component (systolic, diastolic) of a `components` measurement."""

    key: str
    index: int  # position in Observation.component
    canonical_value: float | None
    interpretation: list[Coding] | None


@dataclass(frozen=True)
class Checked:
    errors: list[Issue]
    interpretation: list[Coding] | None
    measurement_type: MeasurementType | None
    canonical_value: float | str | None = None  # number in the canonical unit, or the answer code
    canonical_unit: str | None = None
    components: list[ComponentResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def flagged(self) -> bool:
        return bool(self.interpretation) or any(c.interpretation for c in self.components)


def check(obs: Mapping[str, Any], *, now: dt.datetime | None = None, types: TypeRegistry | None = None) -> Checked:
    """Check one Observation against the measurement types (default: `registry()`)."""
    now = _aware(now or dt.datetime.now(dt.UTC))
    types = types or registry()
    errors: list[Issue] = []
    if obs.get("resourceType") != "Observation":
        errors.append(Issue("invalid", f"expected an Observation, got {obs.get('resourceType')!r}", "resourceType"))
        return Checked(errors, None, None)

    _check_subject(obs, errors)
    _check_times(obs, now, errors)

    candidates = types.candidates(obs)
    if len(candidates) > 1:
        names = ", ".join(t.key for t in candidates)
        errors.append(
            Issue("code-invalid", f"Observation.code names more than one measurement ({names})", "Observation.code")
        )
        return Checked(errors, None, None)
    if not candidates:
        if _is_vital_signs(obs):
            errors.append(
                Issue(
                    "code-invalid",
                    f"unknown vital-signs measurement {_describe_code(obs)}; "
                    "accepted types are listed in measurement-types.json",
                    "Observation.code",
                )
            )
        return Checked(errors, None, None)
    mtype = candidates[0]

    if not _check_value_presence(obs, mtype, errors):
        return Checked(errors, None, mtype)
    if mtype.value_kind == "components":
        results = _check_components(obs, mtype, errors)
        return Checked(errors, None, mtype, components=results)
    if mtype.value_kind == "codeable":
        value, flag = _check_codeable(obs, mtype, errors)
        return Checked(errors, _interpretation(flag), mtype, canonical_value=value)
    number: float | None
    if mtype.value_kind == "integer":
        number, flag = _check_integer(obs, mtype, errors)
    else:
        assert mtype.plausible is not None
        number, flag = _check_quantity(
            obs.get("valueQuantity"),
            "Observation.valueQuantity",
            mtype.display_en,
            mtype.units,
            mtype.plausible,
            mtype.alert,
            errors,
        )
    return Checked(errors, _interpretation(flag), mtype, canonical_value=number, canonical_unit=mtype.canonical_unit)


def apply_interpretation(obs: Mapping[str, Any], checked: Checked) -> dict[str, Any]:
    """A copy of `obs` with Kjerne's flags in `interpretation` (per component for blood pressure).

    Where Kjerne has no flag, whatever interpretation the sender gave is kept. Refuses an Observation that
    failed the check: a rejected measurement is not stored, so it has nothing to be flagged on."""
    out = orjson.loads(orjson.dumps(obs))  # a deep copy; much faster than copy.deepcopy
    flag(out, checked)
    return out


def flag(obs: dict[str, Any], checked: Checked) -> None:
    """`apply_interpretation` on the Observation itself, for a caller that owns it."""
    if checked.errors:
        raise ValueError("cannot flag an Observation that failed the plausibility check")
    if checked.interpretation:
        obs["interpretation"] = [{"coding": [dict(c) for c in checked.interpretation]}]
    for result in checked.components:
        if result.interpretation:
            obs["component"][result.index]["interpretation"] = [{"coding": [dict(c) for c in result.interpretation]}]


# --- subject and time -------------------------------------------------------------------------------------


def _check_subject(obs: Mapping[str, Any], errors: list[Issue]) -> None:
    subject = obs.get("subject")
    if not isinstance(subject, dict):
        errors.append(Issue("required", "the measurement has no subject", "Observation.subject"))
        return
    ident = subject.get("identifier")
    if not isinstance(ident, dict) or not str(ident.get("value") or "").strip():
        errors.append(
            Issue(
                "required",
                "the subject must be identified by fødselsnummer, D-nummer or FHN (subject.identifier)",
                "Observation.subject.identifier",
            )
        )
        return
    if ident.get("system") not in PERSON_SYSTEMS:
        errors.append(
            Issue(
                "code-invalid",
                f"subject identifier system {ident.get('system')!r} is not a "
                "Norwegian person identifier (FNR, DNR or FHN)",
                "Observation.subject.identifier.system",
            )
        )


_DATETIME_RE = re.compile(
    r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$"
)
# A date without a time could be anywhere on Earth; its earliest moment is midnight at UTC+14.
_EARLIEST_ZONE = dt.timezone(dt.timedelta(hours=14))


@lru_cache(maxsize=256)
def _zone(text: str) -> dt.tzinfo | None:
    return dt.UTC if text == "Z" else dt.datetime.strptime(text, "%z").tzinfo


def parse_fhir_datetime(text: str) -> dt.datetime | None:
    """The earliest instant a FHIR date/dateTime/instant can mean; None when it is malformed.

    A time must carry a zone (FHIR requires one); a partial date (`2024`, `2024-05`, `2024-05-03`) means its
    first moment in the earliest time zone, so it is only "in the future" when every reading of it is."""
    m = _DATETIME_RE.match(text) if isinstance(text, str) else None
    if not m:
        return None
    year, month, day, hour, minute, second, fraction, zone = m.groups()
    if hour is not None and zone is None:
        return None
    try:
        if hour is None:
            return dt.datetime(int(year), int(month or 1), int(day or 1), tzinfo=_EARLIEST_ZONE)
        tz = _zone(zone)
        micro = int(fraction[1:7].ljust(6, "0")) if fraction else 0
        return dt.datetime(int(year), int(month), int(day), int(hour), int(minute), int(second or 0), micro, tzinfo=tz)
    except ValueError:
        return None


_TIME_PATHS = (
    ("effectiveDateTime", "Observation.effectiveDateTime"),
    ("effectiveInstant", "Observation.effectiveInstant"),
)
_PERIOD_START, _PERIOD_END = "Observation.effectivePeriod.start", "Observation.effectivePeriod.end"


def _check_times(obs: Mapping[str, Any], now: dt.datetime, errors: list[Issue]) -> None:
    moments: list[tuple[str, Any]] = [(where, obs[name]) for name, where in _TIME_PATHS if name in obs]
    period = obs.get("effectivePeriod")
    if isinstance(period, dict):
        moments += [(f"Observation.effectivePeriod.{k}", period[k]) for k in ("start", "end") if k in period]
    if not moments:
        errors.append(
            Issue(
                "required",
                "the measurement has no time (effectiveDateTime or effectivePeriod)",
                "Observation.effective[x]",
            )
        )
    if "issued" in obs:
        moments.append(("Observation.issued", obs["issued"]))
    latest = now + CLOCK_SKEW
    parsed: dict[str, dt.datetime] = {}
    for where, text in moments:
        when = parse_fhir_datetime(text)
        if when is None:
            errors.append(Issue("invalid", f"{text!r} is not a valid FHIR dateTime with time zone", where))
        elif when > latest:
            errors.append(Issue("business-rule", f"measurement time {text} is in the future", where))
        else:
            parsed[where] = when
    if not isinstance(period, dict):
        return
    # Only full date-times are compared: a partial date stands for a span, and its earliest moment may well
    # lie before a start on the same day.
    texts = dict(moments)
    start, end = (
        parsed.get(where) if "T" in str(texts.get(where, "")) else None for where in (_PERIOD_START, _PERIOD_END)
    )
    if start and end and start > end:
        errors.append(
            Issue("invariant", "effectivePeriod.start is after effectivePeriod.end", "Observation.effectivePeriod")
        )


# --- values -----------------------------------------------------------------------------------------------

_EXPECTED_VALUE = {
    "quantity": ("valueQuantity",),
    "integer": ("valueInteger", "valueQuantity"),
    "codeable": ("valueCodeableConcept",),
}


def _check_value_presence(obs: Mapping[str, Any], mtype: MeasurementType, errors: list[Issue]) -> bool:
    """Whether there is a value to check further; records the error when the value is missing or misplaced."""
    values = [k for k in obs if k.startswith("value") and k != "value"]
    absent = obs.get("dataAbsentReason")
    if mtype.value_kind == "components":
        if absent and not obs.get("component"):
            return False
        if not obs.get("component"):
            errors.append(
                Issue(
                    "required",
                    f"{mtype.display_en} needs its components "
                    f"({', '.join(c.key for c in mtype.components)}) or a dataAbsentReason",
                    "Observation.component",
                )
            )
            return False
        return True
    if not values:
        if not absent:
            errors.append(
                Issue("required", f"{mtype.display_en} has no value and no dataAbsentReason", "Observation.value[x]")
            )
        return False
    if absent:
        errors.append(
            Issue(
                "invariant", "dataAbsentReason must not be given together with a value", "Observation.dataAbsentReason"
            )
        )
    expected = _EXPECTED_VALUE[mtype.value_kind]
    wrong = [k for k in values if k not in expected]
    if wrong:
        errors.append(
            Issue(
                "invalid",
                f"{mtype.display_en} is recorded as {' or '.join(expected)}, not {wrong[0]}",
                f"Observation.{wrong[0]}",
            )
        )
        return False
    return True


class _Accepted:
    __slots__ = ("units",)

    def __init__(self, units: tuple[Unit, ...]) -> None:
        self.units = units

    def __str__(self) -> str:
        return ", ".join(u.code for u in self.units)


def _check_quantity(
    qty: Any,
    path: str,
    label: str,
    units: tuple[Unit, ...],
    plausible: Range,
    alert: AlertRange | None,
    errors: list[Issue],
) -> tuple[float | None, str | None]:
    """(value in the canonical unit, flag); (None, None) after recording an error."""
    if not isinstance(qty, dict):
        errors.append(Issue("invalid", f"{label}: expected a Quantity", path))
        return None, None
    value = qty.get("value")
    if not _is_number(value):
        if value is None:
            errors.append(Issue("required", f"{label}: the quantity has no value", f"{path}.value"))
        else:
            errors.append(Issue("invalid", f"{label}: {value!r} is not a number", f"{path}.value"))
        return None, None
    accepted = _Accepted(units)  # spelt out only for an error message
    code = qty.get("code")
    if not code:
        errors.append(
            Issue("required", f"{label}: the UCUM unit code is missing (accepted: {accepted})", f"{path}.code")
        )
        return None, None
    if qty.get("system") != UCUM:
        errors.append(
            Issue(
                "code-invalid", f"{label}: the unit must be UCUM ({UCUM}), not {qty.get('system')!r}", f"{path}.system"
            )
        )
        return None, None
    unit = next((u for u in units if u.code == code), None)
    if unit is None:
        errors.append(
            Issue(
                "code-invalid",
                f"{label}: unit {code!r} does not fit this measurement (accepted: {accepted})",
                f"{path}.code",
            )
        )
        return None, None
    canonical = unit.to_canonical(float(value))
    if not plausible.contains(canonical):
        shown = f"{_fmt(value)} {code}" + (f" (= {_fmt(canonical)} {units[0].code})" if unit.converts else "")
        errors.append(
            Issue(
                "value",
                f"{label}: {shown} is outside the physiologically possible range "
                f"{_fmt(plausible.low)}–{_fmt(plausible.high)} {units[0].code}",
                f"{path}.value",
            )
        )
        return None, None
    return canonical, alert.interpret(canonical) if alert else None


def _check_integer(
    obs: Mapping[str, Any], mtype: MeasurementType, errors: list[Issue]
) -> tuple[int | None, str | None]:
    label = mtype.display_en
    if "valueInteger" in obs:
        path, value = "Observation.valueInteger", obs["valueInteger"]
    else:
        # The VKP examples send scores as a Quantity with a score unit (or none).
        qty = obs["valueQuantity"]
        path = "Observation.valueQuantity.value"
        if not isinstance(qty, dict):
            errors.append(Issue("invalid", f"{label}: expected a Quantity", "Observation.valueQuantity"))
            return None, None
        code = qty.get("code")
        if code is not None and mtype.unit(code) is None:
            accepted = ", ".join(u.code for u in mtype.units) or "none"
            errors.append(
                Issue(
                    "code-invalid",
                    f"{label}: unit {code!r} does not fit a score (accepted: {accepted})",
                    "Observation.valueQuantity.code",
                )
            )
            return None, None
        value = qty.get("value")
        if value is None:
            errors.append(Issue("required", f"{label}: the quantity has no value", path))
            return None, None
    if not _is_number(value) or value != int(value):
        errors.append(Issue("invalid", f"{label}: {value!r} is not a whole number", path))
        return None, None
    number = int(value)
    assert mtype.plausible is not None
    if not mtype.plausible.contains(number):
        errors.append(
            Issue(
                "value",
                f"{label}: {number} is outside the scale {_fmt(mtype.plausible.low)}–{_fmt(mtype.plausible.high)}",
                path,
            )
        )
        return None, None
    return number, mtype.alert.interpret(number) if mtype.alert else None


def _check_codeable(
    obs: Mapping[str, Any], mtype: MeasurementType, errors: list[Issue]
) -> tuple[str | None, str | None]:
    answer = mtype.answer(obs.get("valueCodeableConcept"))
    if answer is None:
        allowed = ", ".join(f"{a.code} ({a.display_en})" for a in mtype.answers)
        errors.append(
            Issue(
                "code-invalid",
                f"{mtype.display_en}: the value is not one of {allowed} in {mtype.answers[0].system}",
                "Observation.valueCodeableConcept",
            )
        )
        return None, None
    return answer.code, answer.interpretation


def _check_components(obs: Mapping[str, Any], mtype: MeasurementType, errors: list[Issue]) -> list[ComponentResult]:
    raw = obs.get("component")
    if not isinstance(raw, list):
        errors.append(Issue("invalid", "Observation.component must be a list", "Observation.component"))
        return []
    found: dict[str, int] = {}
    for i, comp in enumerate(raw):
        if not isinstance(comp, dict):
            continue
        spec = next((c for c in mtype.components if c.codes.matches(comp.get("code"))), None)
        if spec is None:
            continue  # other components (cuff size, body position ...) are not ours to judge
        if spec.key in found:
            errors.append(
                Issue(
                    "invalid",
                    f"{mtype.display_en}: more than one {spec.display_en} component",
                    f"Observation.component[{i}]",
                )
            )
            continue
        found[spec.key] = i
    missing = [c for c in mtype.components if c.key not in found]
    if missing:
        names = " and ".join(c.display_en for c in missing)
        errors.append(
            Issue("required", f"{mtype.display_en} needs both components; {names} is missing", "Observation.component")
        )
        return []
    results: list[ComponentResult] = []
    for spec in mtype.components:
        i = found[spec.key]
        results.append(_check_component(raw[i], i, spec, mtype, errors))
    values = {r.key: r.canonical_value for r in results}
    for upper, lower in zip(mtype.descending_components, mtype.descending_components[1:], strict=False):
        hi, lo = values.get(upper), values.get(lower)
        if hi is not None and lo is not None and hi <= lo:
            a, b = mtype.component(upper), mtype.component(lower)
            assert a is not None and b is not None
            errors.append(
                Issue(
                    "value",
                    f"{mtype.display_en}: {b.display_en} ({_fmt(lo)}) must be below {a.display_en} ({_fmt(hi)})",
                    "Observation.component",
                )
            )
    return results


def _check_component(
    comp: Mapping[str, Any], i: int, spec: Component, mtype: MeasurementType, errors: list[Issue]
) -> ComponentResult:
    path = f"Observation.component[{i}]"
    has_value = "valueQuantity" in comp
    others = [k for k in comp if k.startswith("value") and k != "valueQuantity"]
    if others:
        errors.append(
            Issue("invalid", f"{spec.display_en} is recorded as valueQuantity, not {others[0]}", f"{path}.{others[0]}")
        )
        return ComponentResult(spec.key, i, None, None)
    if not has_value:
        if not comp.get("dataAbsentReason"):
            errors.append(
                Issue("required", f"{spec.display_en} has no value and no dataAbsentReason", f"{path}.value[x]")
            )
        return ComponentResult(spec.key, i, None, None)
    if comp.get("dataAbsentReason"):
        errors.append(
            Issue("invariant", "dataAbsentReason must not be given together with a value", f"{path}.dataAbsentReason")
        )
    value, flag = _check_quantity(
        comp["valueQuantity"],
        f"{path}.valueQuantity",
        spec.display_en,
        spec.units,
        spec.plausible,
        spec.alert,
        errors,
    )
    return ComponentResult(spec.key, i, value, _interpretation(flag))


# --- helpers ----------------------------------------------------------------------------------------------


def _interpretation(flag: str | None) -> list[Coding] | None:
    if flag is None:
        return None
    return [{"system": INTERPRETATION, "code": flag, "display": INTERPRETATION_DISPLAY[flag]}]


def _is_vital_signs(obs: Mapping[str, Any]) -> bool:
    for concept in obs.get("category") or ():
        if not isinstance(concept, dict):
            continue
        for coding in concept.get("coding") or ():
            if (
                isinstance(coding, dict)
                and coding.get("code") == "vital-signs"
                and coding.get("system") in (None, OBSERVATION_CATEGORY)
            ):
                return True
    return False


def _describe_code(obs: Mapping[str, Any]) -> str:
    concept = obs.get("code")
    codings = concept.get("coding") if isinstance(concept, dict) else None
    shown = [f"{c.get('code')} ({c.get('system')})" for c in codings or () if isinstance(c, dict) and c.get("code")]
    return ", ".join(shown) if shown else "(no code)"


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _fmt(value: float) -> str:
    return f"{value:g}"


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)
