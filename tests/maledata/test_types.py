"""The measurement-type file: its content is valid, and a new type needs only a new file entry."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from kjerne.services.maledata import types as mt
from kjerne.services.maledata.plausibility import check
from kjerne.services.maledata.types import (
    LOINC,
    NPU,
    SNOMED,
    MeasurementTypeError,
    loinc_code_valid,
    npu_code_valid,
    registry,
    reload,
    snomed_concept_id_valid,
)

NOW = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC)
SHIPPED = json.loads(mt.DEFAULT_PATH.read_text(encoding="utf-8"))

# What the task and the VkpObservation IG fix for each type: (LOINC, SNOMED CT, canonical unit or None).
EXPECTED = {
    "heart-rate": ("8867-4", "364075005", "/min"),
    "blood-pressure": ("85354-9", "75367002", None),
    "oxygen-saturation": ("2708-6", "431314004", "%"),
    "respiratory-rate": ("9279-1", "86290005", "/min"),
    "body-temperature": ("8310-5", "276885007", "Cel"),
    "body-weight": ("29463-7", "27113001", "kg"),
    "body-height": ("8302-2", "50373000", "cm"),
    "body-mass-index": ("39156-5", "60621009", "kg/m2"),
    "blood-glucose": ("15074-8", "434912009", "mmol/L"),
    "news2": (None, "1104051000000101", "{score}"),
    "consciousness-acvpu": (None, "1104441000000107", None),
    "clinical-frailty-scale": (None, "763264000", "{score}"),
}


@pytest.fixture
def restore_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    yield monkeypatch
    monkeypatch.delenv(mt.ENV_VAR, raising=False)
    reload()


# --- code formats -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["8867-4", "85354-9", "2708-6", "29463-7", "15074-8", "8480-6", "8462-4"])
def test_loinc_check_digit_accepts_real_codes(code: str) -> None:
    assert loinc_code_valid(code)


@pytest.mark.parametrize("code", ["8867-5", "8867", "88674", "A867-4", "29563-7", ""])
def test_loinc_check_digit_refuses_typos(code: str) -> None:
    assert not loinc_code_valid(code)


@pytest.mark.parametrize("sctid", ["364075005", "75367002", "1104051000000101", "763264000", "248234008"])
def test_snomed_verhoeff_accepts_real_ids(sctid: str) -> None:
    assert snomed_concept_id_valid(sctid)


@pytest.mark.parametrize(
    "sctid",
    [
        "364075006",  # wrong check digit
        "346075005",  # transposed digits
        "364075015",  # description partition, not a concept
        "075367002",  # leading zero
        "12345",  # too short
        "36407500x",
    ],
)
def test_snomed_verhoeff_refuses_malformed_ids(sctid: str) -> None:
    assert not snomed_concept_id_valid(sctid)


def test_npu_codes() -> None:
    assert npu_code_valid("NPU02187") and npu_code_valid("NOR05172")
    assert not npu_code_valid("NPU2187") and not npu_code_valid("npu02187")


# --- the shipped file -------------------------------------------------------------------------------------


def test_shipped_file_has_the_expected_types_and_codes() -> None:
    reg = mt.load(mt.DEFAULT_PATH)
    assert {t.key for t in reg.all()} == set(EXPECTED)
    for key, (loinc, snomed, unit) in EXPECTED.items():
        t = reg.by_key(key)
        assert t is not None
        assert t.codes.loinc[:1] == ((loinc,) if loinc else ())
        assert t.codes.snomed[0] == snomed
        assert t.canonical_unit == unit
        assert t.profile.startswith("http://hl7.no/fhir/vkpobservation/StructureDefinition/Vkp")


@pytest.mark.parametrize("raw", SHIPPED["types"], ids=lambda r: r["key"])
def test_every_type_has_valid_codes_and_nested_ranges(raw: dict) -> None:
    t = mt.load(mt.DEFAULT_PATH).by_key(raw["key"])
    assert t is not None and t.display_nb and t.display_en
    assert all(loinc_code_valid(c) for c in t.codes.loinc)
    assert all(snomed_concept_id_valid(c) for c in t.codes.snomed)
    assert all(npu_code_valid(c) for c in t.codes.npu)
    measured = [(t.units, t.plausible, t.alert)] if t.value_kind in ("quantity", "integer") else []
    measured += [(c.units, c.plausible, c.alert) for c in t.components]
    for units, plausible, alert in measured:
        assert plausible is not None and plausible.low < plausible.high
        assert not units[0].converts
        if alert is not None:
            # plausible ⊇ alert: a flagged value is always a possible one
            thresholds = alert.thresholds()
            assert thresholds == sorted(thresholds)
            assert plausible.low <= thresholds[0] and thresholds[-1] <= plausible.high
    if t.value_kind == "quantity":
        assert t.units, "a quantity needs a unit"
    if t.value_kind == "codeable":
        assert t.answers and all(a.display_nb and a.display_en for a in t.answers)


def test_blood_pressure_components() -> None:
    bp = registry().by_key("blood-pressure")
    assert bp is not None and bp.value_kind == "components"
    systolic, diastolic = bp.component("systolic"), bp.component("diastolic")
    assert systolic is not None and diastolic is not None
    assert (systolic.codes.loinc, systolic.codes.snomed) == (("8480-6",), ("271649006",))
    assert (diastolic.codes.loinc, diastolic.codes.snomed) == (("8462-4",), ("271650006",))
    assert systolic.canonical_unit == diastolic.canonical_unit == "mm[Hg]"
    assert systolic.plausible != diastolic.plausible
    assert bp.descending_components == ("systolic", "diastolic")


def test_acvpu_uses_the_local_code_system() -> None:
    acvpu = registry().by_key("consciousness-acvpu")
    assert acvpu is not None
    assert [a.code for a in acvpu.answers] == ["A", "C", "V", "P", "U"]
    assert {a.system for a in acvpu.answers} == {mt.ACVPU}


def test_every_code_belongs_to_one_type() -> None:
    seen: dict[tuple[str, str], str] = {}
    for t in registry().all():
        for pair in t.codes.pairs():
            assert pair not in seen, f"{pair} in {seen.get(pair)} and {t.key}"
            seen[pair] = t.key


# --- lookup -----------------------------------------------------------------------------------------------


def _code(*codings: tuple[str, str]) -> dict:
    return {"code": {"coding": [{"system": s, "code": c} for s, c in codings]}}


@pytest.mark.parametrize(
    ("codings", "key"),
    [
        (((LOINC, "8867-4"),), "heart-rate"),
        (((SNOMED, "364075005"),), "heart-rate"),
        (((NPU, "NPU02187"),), "blood-glucose"),
        ((("http://example.org/local", "PULS"), (SNOMED, "431314004")), "oxygen-saturation"),
        (((LOINC, "59408-5"),), "oxygen-saturation"),
        (((SNOMED, "1104051000000101"),), "news2"),
    ],
)
def test_for_observation_by_any_coding(codings: tuple, key: str) -> None:
    t = registry().for_observation(_code(*codings))
    assert t is not None and t.key == key


def test_for_observation_unknown() -> None:
    reg = registry()
    assert reg.for_observation(_code((LOINC, "2339-0"))) is None
    assert reg.for_observation(_code((SNOMED, "8867-4"))) is None  # right code, wrong system
    assert reg.for_observation({}) is None
    assert reg.by_key("no-such-type") is None


def test_registry_is_loaded_once() -> None:
    assert registry() is registry()


# --- another file through KJERNE_MEASUREMENT_TYPES --------------------------------------------------------

WAIST = {
    "key": "waist-circumference",
    "display": {"nb": "Livvidde", "en": "Waist circumference"},
    "profile": "http://hl7.no/fhir/vkpobservation/StructureDefinition/VkpObservation",
    "codes": {"loinc": ["8280-0"], "snomed": ["276361009"], "npu": []},
    "value": "quantity",
    "units": [{"code": "cm"}, {"code": "m", "factor": 100}],
    "plausible": {"low": 30, "high": 300},
    "alert": {"low": None, "high": 102, "critical_low": None, "critical_high": None},
}


def _write(tmp_path: Path, types: list[dict]) -> Path:
    path = tmp_path / "types.json"
    path.write_text(json.dumps({"types": types}), encoding="utf-8")
    return path


def _waist(value: float, unit: str) -> dict:
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": mt.OBSERVATION_CATEGORY, "code": "vital-signs"}]}],
        "code": {"coding": [{"system": LOINC, "code": "8280-0"}]},
        "subject": {"identifier": {"system": "urn:oid:2.16.578.1.12.4.1.4.1", "value": "13116900216"}},
        "effectiveDateTime": "2025-03-01T08:00:00+01:00",
        "valueQuantity": {"value": value, "unit": unit, "system": mt.UCUM, "code": unit},
    }


def test_a_new_type_from_another_file_works_without_code_change(
    tmp_path: Path, restore_registry: pytest.MonkeyPatch
) -> None:
    assert check(_waist(90, "cm"), now=NOW).errors[0].expression == "Observation.code"  # unknown so far

    path = _write(tmp_path, [*SHIPPED["types"], WAIST])
    restore_registry.setenv(mt.ENV_VAR, str(path))
    reg = reload()
    assert reg.source == path and registry() is reg
    assert reg.by_key("waist-circumference") is not None

    ok = check(_waist(90, "cm"), now=NOW)
    assert ok.errors == [] and ok.interpretation is None and ok.measurement_type.key == "waist-circumference"
    flagged = check(_waist(1.1, "m"), now=NOW)
    assert flagged.errors == [] and flagged.canonical_value == 110
    assert flagged.interpretation[0]["code"] == "H"
    impossible = check(_waist(500, "cm"), now=NOW)
    assert [i.expression for i in impossible.errors] == ["Observation.valueQuantity.value"]
    wrong_unit = check(_waist(90, "kg"), now=NOW)
    assert [i.expression for i in wrong_unit.errors] == ["Observation.valueQuantity.code"]


def test_reload_returns_to_the_shipped_file(tmp_path: Path, restore_registry: pytest.MonkeyPatch) -> None:
    restore_registry.setenv(mt.ENV_VAR, str(_write(tmp_path, [WAIST])))
    assert [t.key for t in reload().all()] == ["waist-circumference"]
    restore_registry.delenv(mt.ENV_VAR)
    assert reload().by_key("heart-rate") is not None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"codes": {"loinc": ["8280-1"]}}, "not a valid loinc code"),
        ({"codes": {"snomed": ["276361008"]}}, "not a valid snomed code"),
        ({"codes": {"icd10": ["R03"]}}, "unknown code system"),
        ({"value": "text"}, "value must be one of"),
        ({"alert": {"low": 20, "high": 102}}, "outside the plausible range"),
        ({"alert": {"low": 110, "high": 102}}, "out of order"),
        ({"plausible": {"low": 300, "high": 30}}, "low <= high"),
        ({"units": [{"code": "m", "factor": 100}, {"code": "cm"}]}, "canonical"),
        ({"units": []}, "at least one unit"),
        ({"profile": "VkpObservation"}, "must be a URL"),
    ],
)
def test_a_broken_file_is_refused(tmp_path: Path, change: dict, message: str) -> None:
    with pytest.raises(MeasurementTypeError, match=message):
        mt.load(_write(tmp_path, [{**WAIST, **change}]))


def test_a_code_in_two_types_is_refused(tmp_path: Path) -> None:
    twin = {**WAIST, "key": "waist-again"}
    with pytest.raises(MeasurementTypeError, match="belongs to both"):
        mt.load(_write(tmp_path, [WAIST, twin]))


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MeasurementTypeError):
        mt.load(tmp_path / "nope.json")


def test_units_are_ucum_and_conversions_agree_with_the_unit_library() -> None:
    from kjerne.terminology import units

    glucose_molar_mass = 180.156
    for t in registry().all():
        for group in [t.units, *(c.units for c in t.components)]:
            for unit in group:
                if unit.code == "score":
                    continue  # not UCUM; accepted only because the VKP NEWS2 example sends it
                assert units.is_valid_ucum(unit.code), (t.key, unit.code)
                if unit.converts:
                    expected = units.convert(10.0, unit.code, group[0].code, molar_mass=glucose_molar_mass)
                    assert unit.to_canonical(10.0) == pytest.approx(expected, rel=1e-4), (t.key, unit.code)
