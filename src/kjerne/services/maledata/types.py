"""Measurement types for Pasientens måledata, loaded from `kjerne/data/measurement-types.json`.

The data file decides which home measurements Kjerne accepts: their codes (LOINC, SNOMED CT, NPU/NLK), the
VkpObservation profile, the kind of value, the UCUM units (canonical first, the others with a conversion),
the physiologically plausible range and the alert range. Adding a type means editing that file, not this
module. `KJERNE_MEASUREMENT_TYPES` may name another file; `reload()` reads it again.

The file is checked when it is loaded (code formats and check digits, unique codes, alert range inside the
plausible range), so a mistake in it stops the service at start instead of letting bad data through.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
NPU = "urn:oid:2.16.578.1.12.4.1.1.7280"
UCUM = "http://unitsofmeasure.org"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
ACVPU = "http://kjerne.no/fhir/CodeSystem/acvpu"

ENV_VAR = "KJERNE_MEASUREMENT_TYPES"
DEFAULT_PATH = Path(__file__).resolve().parents[2] / "data" / "measurement-types.json"
VALUE_KINDS = ("quantity", "integer", "codeable", "components")

INTERPRETATION_DISPLAY = {
    "L": "Low",
    "LL": "Critical low",
    "H": "High",
    "HH": "Critical high",
    "A": "Abnormal",
    "AA": "Critical abnormal",
}

_CODE_SYSTEMS = {"loinc": LOINC, "snomed": SNOMED, "npu": NPU}


class MeasurementTypeError(ValueError):
    """The measurement-type file is malformed."""


# --- code formats ---------------------------------------------------------------------------------------

_LOINC_RE = re.compile(r"^(\d{1,7})-(\d)$")
_NPU_RE = re.compile(r"^(NPU|NOR)\d{5}$")

_VERHOEFF_D = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    (1, 2, 3, 4, 0, 6, 7, 8, 9, 5),
    (2, 3, 4, 0, 1, 7, 8, 9, 5, 6),
    (3, 4, 0, 1, 2, 8, 9, 5, 6, 7),
    (4, 0, 1, 2, 3, 9, 5, 6, 7, 8),
    (5, 9, 8, 7, 6, 0, 4, 3, 2, 1),
    (6, 5, 9, 8, 7, 1, 0, 4, 3, 2),
    (7, 6, 5, 9, 8, 2, 1, 0, 4, 3),
    (8, 7, 6, 5, 9, 3, 2, 1, 0, 4),
    (9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
)
_VERHOEFF_P = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    (1, 5, 7, 6, 2, 8, 3, 0, 9, 4),
    (5, 8, 0, 3, 7, 9, 6, 1, 4, 2),
    (8, 9, 1, 6, 0, 4, 3, 5, 2, 7),
    (9, 4, 5, 3, 1, 2, 6, 8, 7, 0),
    (4, 2, 8, 6, 5, 7, 3, 9, 0, 1),
    (2, 7, 9, 3, 8, 0, 6, 4, 1, 5),
    (7, 0, 4, 6, 9, 1, 3, 2, 5, 8),
)


def loinc_code_valid(code: str) -> bool:
    """A LOINC code `NNNNN-C` whose check digit C is the mod-10 (Luhn) digit of the number part."""
    m = _LOINC_RE.match(code)
    if not m:
        return False
    total = 0
    for i, ch in enumerate(reversed(m.group(1))):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            d = d - 9 if d > 9 else d
        total += d
    return (10 - total % 10) % 10 == int(m.group(2))


def snomed_concept_id_valid(sctid: str) -> bool:
    """A SNOMED CT concept id: 6-18 digits, no leading zero, concept partition (00 or 10), Verhoeff check."""
    if not sctid.isdigit() or not 6 <= len(sctid) <= 18 or sctid[0] == "0":
        return False
    if sctid[-3:-1] not in ("00", "10"):
        return False
    c = 0
    for i, ch in enumerate(reversed(sctid)):
        c = _VERHOEFF_D[c][_VERHOEFF_P[i % 8][int(ch)]]
    return c == 0


def npu_code_valid(code: str) -> bool:
    """An NLK analysis code: NPU (international) or NOR (Norwegian) followed by five digits."""
    return bool(_NPU_RE.match(code))


_VALIDATORS = {"loinc": loinc_code_valid, "snomed": snomed_concept_id_valid, "npu": npu_code_valid}


# --- the model --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Unit:
    """A UCUM unit accepted for a type; `to_canonical` gives the value in the type's first (canonical) unit."""

    code: str
    factor: float = 1.0
    shift: float = 0.0

    @property
    def converts(self) -> bool:
        return self.factor != 1.0 or self.shift != 0.0

    def to_canonical(self, value: float) -> float:
        if not self.converts:
            return value
        # Rounded so that 98.6 [degF] is 37.0 Cel and not 37.00000000000001.
        return round((value + self.shift) * self.factor, 6)


@dataclass(frozen=True, slots=True)
class Range:
    low: float
    high: float

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


@dataclass(frozen=True, slots=True)
class AlertRange:
    """Values strictly below `low` are L (below `critical_low` LL), strictly above `high` H (`critical_high` HH)."""

    low: float | None = None
    high: float | None = None
    critical_low: float | None = None
    critical_high: float | None = None

    def interpret(self, value: float) -> str | None:
        if self.critical_low is not None and value < self.critical_low:
            return "LL"
        if self.critical_high is not None and value > self.critical_high:
            return "HH"
        if self.low is not None and value < self.low:
            return "L"
        if self.high is not None and value > self.high:
            return "H"
        return None

    def thresholds(self) -> list[float]:
        return [t for t in (self.critical_low, self.low, self.high, self.critical_high) if t is not None]


@dataclass(frozen=True, slots=True)
class Codes:
    loinc: tuple[str, ...] = ()
    snomed: tuple[str, ...] = ()
    npu: tuple[str, ...] = ()

    def pairs(self) -> list[tuple[str, str]]:
        """(system, code) for every code, primary codes of each system first."""
        return [(_CODE_SYSTEMS[name], code) for name in _CODE_SYSTEMS for code in getattr(self, name)]

    def matches(self, concept: Any) -> bool:
        """Whether any coding of a CodeableConcept is one of these codes."""
        own = set(self.pairs())
        return any((system, code) in own for system, code in _codings(concept))

    def codings(self) -> list[dict[str, str]]:
        return [{"system": system, "code": code} for system, code in self.pairs()]


@dataclass(frozen=True, slots=True)
class Answer:
    """One allowed coded value (for `codeable` types), with other codings read as the same answer."""

    system: str
    code: str
    display_nb: str
    display_en: str
    also: tuple[tuple[str, str], ...] = ()
    interpretation: str | None = None

    def matches(self, system: str | None, code: str | None) -> bool:
        return (system, code) == (self.system, self.code) or (system, code) in self.also


@dataclass(frozen=True, slots=True)
class Component:
    key: str
    display_nb: str
    display_en: str
    codes: Codes
    units: tuple[Unit, ...]
    plausible: Range
    alert: AlertRange | None

    @property
    def canonical_unit(self) -> str:
        return self.units[0].code

    def unit(self, code: str | None) -> Unit | None:
        return next((u for u in self.units if u.code == code), None)


@dataclass(frozen=True, slots=True)
class MeasurementType:
    key: str
    display_nb: str
    display_en: str
    profile: str
    codes: Codes
    value_kind: str  # quantity | integer | codeable | components
    units: tuple[Unit, ...] = ()
    plausible: Range | None = None
    alert: AlertRange | None = None
    components: tuple[Component, ...] = ()
    descending_components: tuple[str, ...] = ()
    answers: tuple[Answer, ...] = ()
    note: str = ""

    @property
    def canonical_unit(self) -> str | None:
        return self.units[0].code if self.units else None

    def unit(self, code: str | None) -> Unit | None:
        return next((u for u in self.units if u.code == code), None)

    def component(self, key: str) -> Component | None:
        return next((c for c in self.components if c.key == key), None)

    def answer(self, concept: Any) -> Answer | None:
        for system, code in _codings(concept):
            for a in self.answers:
                if a.matches(system, code):
                    return a
        return None


@dataclass(frozen=True)
class TypeRegistry:
    types: tuple[MeasurementType, ...]
    source: Path | None = None
    _by_key: dict[str, MeasurementType] = field(init=False, repr=False)
    _by_code: dict[tuple[str, str], MeasurementType] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        by_key: dict[str, MeasurementType] = {}
        by_code: dict[tuple[str, str], MeasurementType] = {}
        for t in self.types:
            if t.key in by_key:
                raise MeasurementTypeError(f"measurement type {t.key!r} is defined twice")
            by_key[t.key] = t
            for pair in t.codes.pairs():
                if pair in by_code:
                    raise MeasurementTypeError(
                        f"code {pair[1]} ({pair[0]}) belongs to both {by_code[pair].key!r} and {t.key!r}"
                    )
                by_code[pair] = t
        object.__setattr__(self, "_by_key", by_key)
        object.__setattr__(self, "_by_code", by_code)

    def all(self) -> tuple[MeasurementType, ...]:
        return self.types

    def by_key(self, key: str) -> MeasurementType | None:
        return self._by_key.get(key)

    def for_code(self, system: str | None, code: str | None) -> MeasurementType | None:
        if not system or not code:
            return None
        return self._by_code.get((system, code))

    def candidates(self, obs: Mapping[str, Any]) -> list[MeasurementType]:
        """Every type named by some coding of `Observation.code`, in coding order, without repeats."""
        found: list[MeasurementType] = []
        for system, code in _codings(obs.get("code")):
            t = self.for_code(system, code)
            if t is not None and t not in found:
                found.append(t)
        return found

    def for_observation(self, obs: Mapping[str, Any]) -> MeasurementType | None:
        """The type named by `Observation.code` (LOINC, SNOMED CT or NPU coding); None when none is known."""
        found = self.candidates(obs)
        return found[0] if found else None


def _codings(concept: Any) -> Iterable[tuple[str | None, str | None]]:
    if not isinstance(concept, dict):
        return
    for coding in concept.get("coding") or ():
        if isinstance(coding, dict):
            yield coding.get("system"), coding.get("code")


# --- loading ----------------------------------------------------------------------------------------------


def load(path: Path | str) -> TypeRegistry:
    """Read and check a measurement-type file."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise MeasurementTypeError(f"{path}: {exc}") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("types"), list):
        raise MeasurementTypeError(f"{path}: expected an object with a 'types' list")
    types = []
    for n, entry in enumerate(raw["types"]):
        where = f"{path}: types[{n}]" + (f" ({entry.get('key')})" if isinstance(entry, dict) else "")
        try:
            types.append(_parse_type(entry))
        except (KeyError, TypeError, ValueError) as exc:
            raise MeasurementTypeError(f"{where}: {exc}") from exc
    try:
        return TypeRegistry(tuple(types), path)
    except MeasurementTypeError as exc:
        raise MeasurementTypeError(f"{path}: {exc}") from exc


def _parse_type(raw: dict[str, Any]) -> MeasurementType:
    key = _text(raw, "key")
    kind = raw["value"]
    if kind not in VALUE_KINDS:
        raise ValueError(f"value must be one of {', '.join(VALUE_KINDS)}, not {kind!r}")
    profile = _text(raw, "profile")
    if not profile.startswith(("http://", "https://")):
        raise ValueError(f"profile must be a URL, not {profile!r}")
    codes = _parse_codes(raw["codes"])
    if not codes.pairs():
        raise ValueError("at least one code is needed")
    t = MeasurementType(
        key=key,
        display_nb=_text(raw["display"], "nb"),
        display_en=_text(raw["display"], "en"),
        profile=profile,
        codes=codes,
        value_kind=kind,
        note=raw.get("note", ""),
    )
    if kind in ("quantity", "integer"):
        units = _parse_units(raw.get("units") or [])
        if kind == "quantity" and not units:
            raise ValueError("a quantity needs at least one unit")
        plausible = _parse_range(raw["plausible"])
        alert = _parse_alert(raw.get("alert"), plausible)
        return replace(t, units=units, plausible=plausible, alert=alert)
    if kind == "components":
        components = tuple(_parse_component(c) for c in raw["components"])
        keys = [c.key for c in components]
        if len(components) < 1 or len(set(keys)) != len(keys):
            raise ValueError("components need distinct keys")
        descending = tuple(raw.get("descending_components") or ())
        if any(k not in keys for k in descending):
            raise ValueError(f"descending_components names an unknown component: {descending}")
        return replace(t, components=components, descending_components=descending)
    answers = tuple(_parse_answer(a) for a in raw["answers"])
    if not answers:
        raise ValueError("a codeable type needs answers")
    return replace(t, answers=answers)


def _parse_component(raw: dict[str, Any]) -> Component:
    key = _text(raw, "key")
    try:
        codes = _parse_codes(raw["codes"])
        if not codes.pairs():
            raise ValueError("at least one code is needed")
        units = _parse_units(raw["units"])
        if not units:
            raise ValueError("at least one unit is needed")
        plausible = _parse_range(raw["plausible"])
        return Component(
            key=key,
            display_nb=_text(raw["display"], "nb"),
            display_en=_text(raw["display"], "en"),
            codes=codes,
            units=units,
            plausible=plausible,
            alert=_parse_alert(raw.get("alert"), plausible),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"component {key!r}: {exc}") from exc


def _parse_codes(raw: dict[str, Any]) -> Codes:
    unknown = set(raw) - set(_CODE_SYSTEMS)
    if unknown:
        raise ValueError(f"unknown code system(s) {sorted(unknown)}; use {sorted(_CODE_SYSTEMS)}")
    out: dict[str, tuple[str, ...]] = {}
    for name, valid in _VALIDATORS.items():
        codes = tuple(raw.get(name) or ())
        for code in codes:
            if not isinstance(code, str) or not valid(code):
                raise ValueError(f"{code!r} is not a valid {name} code")
        out[name] = codes
    return Codes(**out)


def _parse_units(raw: list[dict[str, Any]]) -> tuple[Unit, ...]:
    units = tuple(Unit(_text(u, "code"), float(u.get("factor", 1.0)), float(u.get("shift", 0.0))) for u in raw)
    if units and units[0].converts:
        raise ValueError(f"the first unit ({units[0].code}) is the canonical one and cannot convert")
    if len({u.code for u in units}) != len(units):
        raise ValueError("a unit is listed twice")
    if any(u.factor <= 0 for u in units):
        raise ValueError("unit factors must be positive")
    return units


def _parse_range(raw: dict[str, Any]) -> Range:
    low, high = _number(raw["low"]), _number(raw["high"])
    if low is None or high is None or low > high:
        raise ValueError(f"plausible range needs low <= high, got {raw}")
    return Range(low, high)


def _parse_alert(raw: dict[str, Any] | None, plausible: Range) -> AlertRange | None:
    if raw is None:
        return None
    alert = AlertRange(
        low=_number(raw.get("low")),
        high=_number(raw.get("high")),
        critical_low=_number(raw.get("critical_low")),
        critical_high=_number(raw.get("critical_high")),
    )
    # Thresholds must be ordered (critical_low <= low <= high <= critical_high) and inside the plausible range,
    # or a value could be both impossible and merely flagged.
    thresholds = alert.thresholds()
    if thresholds != sorted(thresholds):
        raise ValueError(f"alert thresholds out of order: {raw}")
    if thresholds and not (plausible.low <= thresholds[0] and thresholds[-1] <= plausible.high):
        raise ValueError(f"alert range {raw} reaches outside the plausible range {plausible.low}-{plausible.high}")
    if (alert.critical_low is not None and alert.low is None) or (
        alert.critical_high is not None and alert.high is None
    ):
        raise ValueError(f"a critical threshold needs the ordinary one on the same side: {raw}")
    return alert if thresholds else None


def _parse_answer(raw: dict[str, Any]) -> Answer:
    interpretation = raw.get("interpretation")
    if interpretation is not None and interpretation not in INTERPRETATION_DISPLAY:
        raise ValueError(f"interpretation {interpretation!r} is not one of {sorted(INTERPRETATION_DISPLAY)}")
    also = tuple((_text(a, "system"), _text(a, "code")) for a in raw.get("also") or ())
    return Answer(
        system=_text(raw, "system"),
        code=_text(raw, "code"),
        display_nb=_text(raw["display"], "nb"),
        display_en=_text(raw["display"], "en"),
        also=also,
        interpretation=interpretation,
    )


def _text(raw: Mapping[str, Any], name: str) -> str:
    value = raw[name]
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string")
    return value


def _number(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{value!r} is not a number")
    return float(value)


# --- the process-wide registry ----------------------------------------------------------------------------

_lock = threading.Lock()
_registry: TypeRegistry | None = None


def configured_path() -> Path:
    """The file `registry()` reads: `$KJERNE_MEASUREMENT_TYPES` when set, else the shipped file."""
    override = os.environ.get(ENV_VAR, "").strip()
    return Path(override) if override else DEFAULT_PATH


def registry() -> TypeRegistry:
    """The measurement types, read once per process (or per `reload()`)."""
    global _registry
    current = _registry
    if current is not None:
        return current
    with _lock:
        if _registry is None:
            _registry = load(configured_path())
        return _registry


def reload() -> TypeRegistry:
    """Read the configured file again (after it, or `KJERNE_MEASUREMENT_TYPES`, changed)."""
    global _registry
    fresh = load(configured_path())
    with _lock:
        _registry = fresh
    return fresh
