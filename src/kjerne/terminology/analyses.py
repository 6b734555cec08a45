"""Which laboratory analysis an Observation reports, and its value in the analysis' own unit.

The cumulative view puts one patient's results per analysis side by side over time, from every laboratory.
Laboratories code the same analysis differently (NLK codes such as NPU18016, LOINC, local codes) and report it
in different units (haemoglobin in g/dL or g/L, creatinine in µmol/L or mg/dL, ALAT in U/L or µkat/L). This
module maps each code to one harmonised analysis and converts the value (and the laboratory's own reference
interval) to the analysis' canonical unit.

The code map is a CSV file operators can update without a code change (`kjerne/data/analyses.csv`, or the file
named by the environment variable `KJERNE_ANALYSES_FILE`). One row per code, with these columns:

==========================  ==========================================================================
`analysis`                  harmonised key (`haemoglobin`, `creatinine`); rows with the same key are one
                            analysis
`system`, `code`            the coding (`urn:oid:2.16.578.1.12.4.1.1.7280` for NLK, `http://loinc.org`);
                            each (system, code) may appear once
`code_display`              the code's own name (optional)
`display_no`, `display_en`  plain-language names, Norwegian for citizens and English
`canonical_unit`            UCUM unit the cumulative view shows the analysis in
`molar_mass_g_per_mol`      for mass <-> amount-of-substance conversion (optional)
`lookback_days`             how recent a previous result makes a new order of the analysis redundant
                            (duplicate-test warning; empty: no warning)
`category`                  biochemistry, haematology, coagulation, immunology
`unconvertible_units`       units the analysis is also reported in whose values are on another scale and
                            are never converted, separated by `|` (HbA1c in % is not mmol/mol)
==========================  ==========================================================================

The analysis columns may be left empty on all but one row of an analysis; values given on several rows must
agree. A file with an error is refused as a whole (`CatalogueError`, naming the row): a code filed under the
wrong analysis would put one patient's results in the wrong row of the table.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from kjerne.terminology.units import UnitError, canonical, convert, is_valid_ucum

__all__ = [
    "ANALYSES_FILE_ENV",
    "Analysis",
    "AnalysisCatalogue",
    "CatalogueError",
    "Harmonised",
    "catalogue",
    "harmonise",
    "load_catalogue",
    "reload",
]

ANALYSES_FILE_ENV = "KJERNE_ANALYSES_FILE"
UCUM_SYSTEM = "http://unitsofmeasure.org"
_KODEVERK_OID = "2.16.578.1.12.4.1.1."
_NLK = f"urn:oid:{_KODEVERK_OID}7280"
# NPU/NOR codes that later became NLK were sent under kodeverk 7230; the codes themselves are the same.
_NLK_PRECURSOR = f"urn:oid:{_KODEVERK_OID}7230"
_KODEVERK_URI = re.compile(r"^https?://ehelse\.no/fhir/CodeSystem/no-kodeverk-(\d+)$")
_BARE_OID = re.compile(r"^\d+(?:\.\d+)+$")

COLUMNS = (
    "analysis",
    "system",
    "code",
    "code_display",
    "display_no",
    "display_en",
    "canonical_unit",
    "molar_mass_g_per_mol",
    "lookback_days",
    "category",
    "unconvertible_units",
)
_REQUIRED = ("analysis", "system", "code", "display_no", "canonical_unit")
_ANALYSIS_COLUMNS = (
    "display_no",
    "display_en",
    "canonical_unit",
    "molar_mass_g_per_mol",
    "lookback_days",
    "category",
    "unconvertible_units",
)
_KEY = re.compile(r"^[a-z][a-z0-9_]*$")


class CatalogueError(ValueError):
    """The analysis file cannot be used."""


def normalise_system(system: str | None) -> str:
    """One spelling per code system: Volven kodeverk as `urn:oid:2.16.578.1.12.4.1.1.<n>`.

    `2.16.578.1.12.4.1.1.7280`, `urn:oid:2.16.578.1.12.4.1.1.7280` and
    `http://ehelse.no/fhir/CodeSystem/no-kodeverk-7280` are the same system.
    """
    s = (system or "").strip()
    if _BARE_OID.match(s):
        return f"urn:oid:{s}"
    m = _KODEVERK_URI.match(s)
    if m:
        return f"urn:oid:{_KODEVERK_OID}{m.group(1)}"
    return s


@dataclass(frozen=True)
class Analysis:
    """One harmonised analysis: every code that reports it, and how the cumulative view shows it."""

    key: str
    display_no: str
    display_en: str
    canonical_unit: str
    molar_mass: float | None
    lookback_days: int | None
    category: str
    codes: tuple[tuple[str, str], ...]
    unconvertible_units: tuple[str, ...] = ()

    def to_unit(self, value: float, unit: str) -> float:
        """`value` in `unit` (UCUM) expressed in the canonical unit; raises `UnitError` when not possible."""
        if unit in self.unconvertible_units and unit != self.canonical_unit:
            raise UnitError(f"{self.key} in {unit} is on another scale than {self.canonical_unit}")
        return convert(value, unit, self.canonical_unit, molar_mass=self.molar_mass)


@dataclass(frozen=True)
class AnalysisCatalogue:
    """The analyses of one analysis file, looked up by key or by coding."""

    analyses: Mapping[str, Analysis]
    source: str
    _by_coding: Mapping[tuple[str, str], Analysis] = field(repr=False)
    _code_display: Mapping[tuple[str, str], str] = field(repr=False)

    def __len__(self) -> int:
        return len(self.analyses)

    def __iter__(self) -> Iterator[Analysis]:
        return iter(self.analyses.values())

    def __contains__(self, key: object) -> bool:
        return key in self.analyses

    def __getitem__(self, key: str) -> Analysis:
        return self.analyses[key]

    def get(self, key: str) -> Analysis | None:
        return self.analyses.get(key)

    def for_coding(self, system: str | None, code: str | None) -> Analysis | None:
        """The analysis a coding reports, or None when the code is not in the file."""
        if not system or not code:
            return None
        sys_ = normalise_system(str(system))
        code = str(code).strip()
        found = self._by_coding.get((sys_, code))
        if found is None and sys_ == _NLK_PRECURSOR:
            found = self._by_coding.get((_NLK, code))
        return found

    def for_concept(self, concept: Mapping[str, Any] | None) -> Analysis | None:
        """The analysis of a CodeableConcept: the first of its codings that is in the file."""
        found = self.match(concept)
        return found[0] if found else None

    def match(self, concept: Mapping[str, Any] | None) -> tuple[Analysis, tuple[str, str]] | None:
        """Like `for_concept`, with the coding (system, code) that matched."""
        if not isinstance(concept, Mapping):
            return None
        for coding in concept.get("coding") or ():
            if not isinstance(coding, Mapping):
                continue
            system, code = coding.get("system"), coding.get("code")
            analysis = self.for_coding(system, code)
            if analysis is not None:
                return analysis, (normalise_system(system), str(code).strip())
        return None

    def code_display(self, system: str, code: str) -> str | None:
        """The code's own name from the file, when it gives one."""
        return self._code_display.get((normalise_system(system), code.strip()))


# --- loading ----------------------------------------------------------------------------------------


def _number(text: str, what: str, where: str) -> float:
    try:
        value = float(text.replace(",", "."))
    except ValueError:
        raise CatalogueError(f"{where}: {what} {text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise CatalogueError(f"{where}: {what} must be a positive number, got {text!r}")
    return value


def _parse(text: str, source: str) -> AnalysisCatalogue:
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = [h.strip() for h in reader.fieldnames or ()]
    missing = [c for c in _REQUIRED if c not in header]
    if missing:
        raise CatalogueError(f"{source}: missing column(s) {', '.join(missing)}")
    reader.fieldnames = header
    attrs: dict[str, dict[str, str]] = {}  # analysis key -> column -> value
    first_row: dict[str, int] = {}
    codes: dict[str, list[tuple[str, str]]] = {}
    seen: dict[tuple[str, str], int] = {}
    code_display: dict[tuple[str, str], str] = {}
    for line, row in enumerate(reader, start=2):
        if None in row:
            raise CatalogueError(f"{source} line {line}: more fields than columns")
        cells = {k: (v or "").strip() for k, v in row.items()}
        if not any(cells.values()):
            continue
        where = f"{source} line {line}"
        key, system, code = cells["analysis"], normalise_system(cells["system"]), cells["code"]
        if not _KEY.match(key):
            raise CatalogueError(f"{where}: analysis key {key!r} must be lower-case letters, digits and _")
        if not system or not code:
            raise CatalogueError(f"{where}: system and code are required")
        if (system, code) in seen:
            raise CatalogueError(f"{where}: ({system}, {code}) already given on line {seen[system, code]}")
        seen[system, code] = line
        codes.setdefault(key, []).append((system, code))
        first_row.setdefault(key, line)
        if cells.get("code_display"):
            code_display[system, code] = cells["code_display"]
        known = attrs.setdefault(key, {})
        for column in _ANALYSIS_COLUMNS:
            value = cells.get(column, "")
            if not value:
                continue
            if column in known and known[column] != value:
                raise CatalogueError(
                    f"{where}: {column} {value!r} for {key} disagrees with {known[column]!r} given earlier"
                )
            known[column] = value
    analyses: dict[str, Analysis] = {}
    by_coding: dict[tuple[str, str], Analysis] = {}
    for key, known in attrs.items():
        where = f"{source}, analysis {key} (line {first_row[key]})"
        for column in ("display_no", "canonical_unit"):
            if not known.get(column):
                raise CatalogueError(f"{where}: {column} is required")
        unit = known["canonical_unit"]
        if not is_valid_ucum(unit):
            raise CatalogueError(f"{where}: canonical_unit {unit!r} is not valid UCUM")
        if canonical(unit) != unit:
            raise CatalogueError(f"{where}: write canonical_unit {unit!r} as {canonical(unit)!r}")
        unconvertible: list[str] = []
        for u in (u.strip() for u in known.get("unconvertible_units", "").split("|")):
            if not u:
                continue
            if not is_valid_ucum(u):
                raise CatalogueError(f"{where}: unconvertible unit {u!r} is not valid UCUM")
            unconvertible.append(canonical(u))
        molar = known.get("molar_mass_g_per_mol")
        lookback = known.get("lookback_days")
        lookback_days: int | None = None
        if lookback:
            if not lookback.isdigit():
                raise CatalogueError(f"{where}: lookback_days {lookback!r} must be a whole number of days")
            lookback_days = int(lookback)
        analysis = Analysis(
            key=key,
            display_no=known["display_no"],
            display_en=known.get("display_en", ""),
            canonical_unit=unit,
            molar_mass=_number(molar, "molar_mass_g_per_mol", where) if molar else None,
            lookback_days=lookback_days,
            category=known.get("category", ""),
            codes=tuple(codes[key]),
            unconvertible_units=tuple(unconvertible),
        )
        analyses[key] = analysis
        for coding in analysis.codes:
            by_coding[coding] = analysis
    return AnalysisCatalogue(analyses, source, by_coding, code_display)


def _default_text() -> tuple[str, str]:
    resource = resources.files("kjerne").joinpath("data/analyses.csv")
    return resource.read_text(encoding="utf-8"), "kjerne/data/analyses.csv"


def load_catalogue(path: str | os.PathLike[str] | None = None) -> AnalysisCatalogue:
    """Read an analysis file (the packaged one when `path` is None). Raises `CatalogueError`."""
    if path is None:
        text, source = _default_text()
    else:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise CatalogueError(f"cannot read analysis file {p}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise CatalogueError(f"analysis file {p} is not UTF-8") from None
        source = str(p)
    return _parse(text, source)


_lock = threading.Lock()
_loaded: tuple[str | None, AnalysisCatalogue] | None = None


def _configured_path() -> str | None:
    return os.environ.get(ANALYSES_FILE_ENV) or None


def catalogue() -> AnalysisCatalogue:
    """The analysis catalogue in use: `KJERNE_ANALYSES_FILE` when set, otherwise the packaged file.

    Read once and kept; a change of `KJERNE_ANALYSES_FILE` is noticed on the next call, a change of the file's
    content only after `reload()`.
    """
    path = _configured_path()
    current = _loaded
    if current is not None and current[0] == path:
        return current[1]
    with _lock:
        if _loaded is not None and _loaded[0] == path:
            return _loaded[1]
        return _store(path)


def reload() -> AnalysisCatalogue:
    """Read the analysis file again (after an operator updated it)."""
    with _lock:
        return _store(_configured_path())


def _store(path: str | None) -> AnalysisCatalogue:
    global _loaded
    loaded = load_catalogue(path)
    _loaded = (path, loaded)
    return loaded


# --- harmonising one Observation --------------------------------------------------------------------


@dataclass(frozen=True)
class Harmonised:
    """One numeric result as the cumulative view shows it.

    `value`, `unit`, `reference_low` and `reference_high` are in the analysis' canonical unit when `converted`
    is true; otherwise (unit missing, unreadable or on another scale) they are as the laboratory reported them.
    The reference interval is each laboratory's own, kept beside its value.
    """

    analysis: Analysis
    value: float
    unit: str | None
    original_value: float
    original_unit: str | None
    reference_low: float | None
    reference_high: float | None
    interpretation: str | None
    effective: str | None
    lab_display: str | None
    converted: bool
    comparator: str | None = None
    coding: tuple[str, str] | None = None
    lab_reference: str | None = None
    observation_id: str | None = None
    status: str | None = None


def _ucum_of(quantity: Mapping[str, Any]) -> str | None:
    """The UCUM code of a Quantity: its `code` when the system is UCUM, else its printed unit read as UCUM.

    None when the quantity has no unit at all; raises `UnitError` when it has one that cannot be read.
    """
    code, unit, system = quantity.get("code"), quantity.get("unit"), quantity.get("system")
    if code and (system in (None, UCUM_SYSTEM)):
        return canonical(str(code))
    if unit:
        return canonical(str(unit))
    if code:
        raise UnitError(f"unit code {code!r} is not from UCUM ({system})")
    return None


def _number_of(quantity: Any) -> float | None:
    if not isinstance(quantity, Mapping):
        return None
    value = quantity.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _tidy(x: float) -> float:
    """Drop the binary noise a conversion leaves (13.4 g/dL * 10 = 134.00000000000003)."""
    return float(f"{x:.12g}")


def _is_unity(unit: str | None) -> bool:
    if unit is None:
        return True
    try:
        return convert(1.0, unit, "1") == 1.0
    except UnitError:
        return False


def _to_canonical(analysis: Analysis, value: float, unit: str | None) -> float | None:
    """`value` in `unit` (None: no unit) in the analysis' canonical unit; None when that is not possible."""
    if unit == analysis.canonical_unit:
        return value
    if unit is None:  # a number without a unit is only meaningful for a dimensionless analysis (INR)
        return value if _is_unity(analysis.canonical_unit) else None
    try:
        return _tidy(analysis.to_unit(value, unit))
    except UnitError:
        return None


def _to_unit(value: float, unit: str | None, target: str | None, molar_mass: float | None) -> float | None:
    """A reference bound into the (unconverted) unit of its value; None when that is not possible."""
    if unit == target:
        return value
    if unit is None or target is None:
        return None
    try:
        return _tidy(convert(value, unit, target, molar_mass=molar_mass))
    except UnitError:
        return None


def _reference(observation: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The laboratory's normal range: the first range without a type, or of type `normal`."""
    ranges = [r for r in observation.get("referenceRange") or () if isinstance(r, Mapping)]
    for r in ranges:
        kind = r.get("type")
        codings = (kind.get("coding") or ()) if isinstance(kind, Mapping) else ()
        if not codings or any(c.get("code") == "normal" for c in codings if isinstance(c, Mapping)):
            return r
    return None


def _effective(observation: Mapping[str, Any]) -> str | None:
    for key in ("effectiveDateTime", "effectiveInstant"):
        if observation.get(key):
            return str(observation[key])
    period = observation.get("effectivePeriod")
    if isinstance(period, Mapping):
        return period.get("start") or period.get("end")
    return None


def _lab(observation: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(display, reference) of the performing laboratory: the first Organization performer, else the first."""
    performers = [p for p in observation.get("performer") or () if isinstance(p, Mapping)]
    chosen = next((p for p in performers if str(p.get("reference", "")).startswith("Organization/")), None)
    chosen = chosen or (performers[0] if performers else None)
    if chosen is None:
        return None, None
    return chosen.get("display"), chosen.get("reference")


def _interpretation(observation: Mapping[str, Any]) -> str | None:
    for concept in observation.get("interpretation") or ():
        if not isinstance(concept, Mapping):
            continue
        for coding in concept.get("coding") or ():
            if isinstance(coding, Mapping) and coding.get("code"):
                return str(coding["code"])
    return None


def harmonise(observation: Mapping[str, Any], cat: AnalysisCatalogue | None = None) -> Harmonised | None:
    """The Observation's numeric result in its analysis' canonical unit.

    None when the Observation's code is not in the analysis file or it has no numeric value (text and coded
    results are not part of the cumulative table). When the value cannot be converted (no unit on an analysis
    that needs one, a unit that cannot be read, a unit on another scale), it is kept as reported with
    `converted=False`, and so is the reference interval.
    """
    cat = cat or catalogue()
    found = cat.match(observation.get("code"))
    if found is None:
        return None
    analysis, coding = found
    quantity = observation.get("valueQuantity")
    value = _number_of(quantity)
    if value is None:
        return None
    assert isinstance(quantity, Mapping)
    printed = quantity.get("code") or quantity.get("unit") or None
    try:
        unit, readable = _ucum_of(quantity), True
    except UnitError:
        unit, readable = None, False
    in_canonical = _to_canonical(analysis, value, unit) if readable else None
    converted = in_canonical is not None
    shown_unit = analysis.canonical_unit if converted else (unit if readable else printed)

    bounds: list[float | None] = [None, None]
    reference = _reference(observation)
    for i, side in enumerate(("low", "high")):
        q = reference.get(side) if reference is not None else None
        number = _number_of(q)
        if number is None:
            continue
        assert isinstance(q, Mapping)
        ref_printed = q.get("code") or q.get("unit") or None
        if ref_printed is None:  # a bound without a unit is in the unit of the value
            ref_unit, ref_readable = unit, readable
        else:
            try:
                ref_unit, ref_readable = _ucum_of(q), True
            except UnitError:
                ref_unit, ref_readable = None, False
        if not ref_readable:
            bounds[i] = number if (not readable and ref_printed in (None, printed)) else None
        elif converted:
            bounds[i] = _to_canonical(analysis, number, ref_unit)
        elif readable:
            bounds[i] = _to_unit(number, ref_unit, unit, analysis.molar_mass)
    display, lab_reference = _lab(observation)
    return Harmonised(
        analysis=analysis,
        value=in_canonical if in_canonical is not None else value,
        unit=shown_unit,
        original_value=value,
        original_unit=unit if unit is not None else printed,
        reference_low=bounds[0],
        reference_high=bounds[1],
        interpretation=_interpretation(observation),
        effective=_effective(observation),
        lab_display=display,
        converted=converted,
        comparator=quantity.get("comparator"),
        coding=coding,
        lab_reference=lab_reference,
        observation_id=observation.get("id"),
        status=observation.get("status"),
    )
