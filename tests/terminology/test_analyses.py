"""Analysis harmonisation: the NLK/LOINC code map, lookup by coding, and values in the canonical unit."""

from __future__ import annotations

import collections
import csv
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from kjerne.demo import catalogue as demo
from kjerne.demo.generate import generate
from kjerne.demo.generate import resources as bundle_resources
from kjerne.services.provesvar.svarrapport_map import map_svarrapport
from kjerne.terminology.analyses import (
    ANALYSES_FILE_ENV,
    COLUMNS,
    CatalogueError,
    catalogue,
    harmonise,
    load_catalogue,
    reload,
)
from kjerne.terminology.units import canonical, is_valid_ucum

NLK = "urn:oid:2.16.578.1.12.4.1.1.7280"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
EXAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "svarrapport" / "examples"


def _rows() -> list[dict[str, str]]:
    text = resources.files("kjerne").joinpath("data/analyses.csv").read_text(encoding="utf-8")
    return list(csv.DictReader(text.splitlines()))


def _q(value: float, unit: str | None, code: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"value": value}
    if unit is not None:
        out["unit"] = unit
    if code is not None:
        out.update({"system": UCUM, "code": code})
    return out


def _obs(system: str, code: str, quantity: dict[str, Any] | None, **extra: Any) -> dict[str, Any]:
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "code": {"coding": [{"system": system, "code": code}]},
        "effectiveDateTime": "2025-03-01T08:15:00+01:00",
        "performer": [{"reference": "Organization/lab-1", "display": "Lab 1"}],
    }
    if quantity is not None:
        obs["valueQuantity"] = quantity
    obs.update(extra)
    return obs


# --- the packaged file --------------------------------------------------------------------------------


def test_file_has_the_documented_columns() -> None:
    text = resources.files("kjerne").joinpath("data/analyses.csv").read_text(encoding="utf-8")
    assert tuple(text.splitlines()[0].split(",")) == COLUMNS


def test_every_row_has_valid_ucum_units() -> None:
    for row in _rows():
        unit = row["canonical_unit"]
        assert is_valid_ucum(unit), row
        assert canonical(unit) == unit, row
        for other in filter(None, row["unconvertible_units"].split("|")):
            assert is_valid_ucum(other), row


def test_every_coding_appears_once() -> None:
    codings = collections.Counter((r["system"], r["code"]) for r in _rows())
    assert [c for c, n in codings.items() if n > 1] == []


def test_every_row_is_complete() -> None:
    for row in _rows():
        assert row["analysis"] and row["system"] in (NLK, LOINC) and row["code"], row
        assert row["display_no"] and row["display_en"] and row["category"], row
        assert not row["molar_mass_g_per_mol"] or float(row["molar_mass_g_per_mol"]) > 0, row
        assert not row["lookback_days"] or int(row["lookback_days"]) >= 0, row


def test_catalogue_loads_the_packaged_file() -> None:
    cat = catalogue()
    assert len(cat) == len({r["analysis"] for r in _rows()})
    assert cat is catalogue()  # loaded once
    hb = cat["haemoglobin"]
    assert hb.display_no == "Hemoglobin (blodprosent)"
    assert hb.canonical_unit == "g/dL" and hb.category == "haematology" and hb.lookback_days == 7
    assert (NLK, "NOR05172") in hb.codes and (LOINC, "718-7") in hb.codes
    assert cat["creatinine"].molar_mass == pytest.approx(113.12)
    assert cat["glucose"].molar_mass == pytest.approx(180.16)
    assert cat["cholesterol"].molar_mass == pytest.approx(386.65)
    lookback = {k: cat[k].lookback_days for k in ("hba1c", "haemoglobin", "crp", "creatinine", "tsh", "ferritin")}
    assert lookback == {"hba1c": 60, "haemoglobin": 7, "crp": 1, "creatinine": 14, "tsh": 42, "ferritin": 60}
    assert {cat[k].lookback_days for k in ("cholesterol", "ldl_cholesterol", "hdl_cholesterol", "triglycerides")} == {
        180
    }


def test_molar_and_mass_loinc_codes_are_one_analysis() -> None:
    cat = catalogue()
    pairs = [("14682-9", "2160-0"), ("14749-6", "2345-7"), ("14647-2", "2093-3"), ("39469-2", "13457-7"),
             ("14646-4", "2085-9"), ("14927-8", "2571-8"), ("59261-8", "4548-4")]  # fmt: skip
    for molar, mass in pairs:
        a, b = cat.for_coding(LOINC, molar), cat.for_coding(LOINC, mass)
        assert a is not None and a is b, (molar, mass)


# --- lookup -----------------------------------------------------------------------------------------------


def test_for_coding_accepts_every_spelling_of_the_nlk_system() -> None:
    cat = catalogue()
    hb = cat["haemoglobin"]
    assert cat.for_coding(NLK, "NOR05172") is hb
    assert cat.for_coding("2.16.578.1.12.4.1.1.7280", "NOR05172") is hb
    assert cat.for_coding("http://ehelse.no/fhir/CodeSystem/no-kodeverk-7280", "NOR05172") is hb
    assert cat.for_coding("urn:oid:2.16.578.1.12.4.1.1.7230", "NOR05172") is hb  # NLK's precursor
    assert cat.for_coding(NLK, " NOR05172 ") is hb
    assert cat.for_coding(LOINC, "NOR05172") is None
    assert cat.for_coding(NLK, "NPU99999") is None
    assert cat.for_coding(None, "NOR05172") is None


def test_for_concept_tries_every_coding() -> None:
    cat = catalogue()
    concept = {
        "coding": [
            {"system": "urn:oid:2.16.578.1.12.4.1.1.8212", "code": "LOCAL-HB"},
            {"system": "http://snomed.info/sct", "code": "271026005"},
            {"system": LOINC, "code": "718-7"},
        ],
        "text": "Hb",
    }
    assert cat.for_concept(concept) is cat["haemoglobin"]
    assert cat.for_concept({"coding": [{"system": LOINC, "code": "0000-0"}]}) is None
    assert cat.for_concept({"text": "Hb"}) is None
    assert cat.for_concept(None) is None


def test_every_demo_analysis_resolves() -> None:
    cat = catalogue()
    for a in demo.ANALYSES.values():
        variants = [a.unit, *a.variants.values()]
        keys = set()
        for unit in variants:
            nlk, loinc = unit.nlk or a.nlk, unit.loinc or a.loinc
            concept = {"coding": [{"system": NLK, "code": nlk[0]}, {"system": LOINC, "code": loinc[0]}]}
            found = cat.for_concept(concept)
            assert found is not None, a.key
            keys.add(found.key)
            assert convert_ok(found, unit.ucum), (a.key, unit.ucum)
        assert len(keys) == 1, (a.key, keys)


def convert_ok(analysis: Any, ucum: str) -> bool:
    try:
        analysis.to_unit(1.0, ucum)
    except ValueError:
        return False
    return True


# --- harmonise ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_lab_observations() -> list[dict[str, Any]]:
    return [
        r
        for r in bundle_resources(generate(seed=1, persons=10))
        if r["resourceType"] == "Observation"
        and any(c.get("code") == "laboratory" for cat in r.get("category", ()) for c in cat.get("coding", ()))
    ]


def test_demo_lab_observations_harmonise(demo_lab_observations: list[dict[str, Any]]) -> None:
    assert len(demo_lab_observations) > 200
    harmonised = [harmonise(o) for o in demo_lab_observations]
    done = [h for h in harmonised if h is not None and h.converted]
    assert len(done) >= 0.95 * len(demo_lab_observations)
    for h in done:
        assert h.unit == h.analysis.canonical_unit
        assert h.effective and h.lab_display and h.lab_reference.startswith("Organization/")


def test_two_labs_haemoglobin_in_different_units_end_up_in_one_unit(
    demo_lab_observations: list[dict[str, Any]],
) -> None:
    hb = [h for o in demo_lab_observations if (h := harmonise(o)) is not None and h.analysis.key == "haemoglobin"]
    assert {h.original_unit for h in hb} == {"g/dL", "g/L"}  # the demo's Kystlab reports g/L
    assert len({h.lab_reference for h in hb}) >= 2
    assert {h.unit for h in hb} == {"g/dL"}
    for h in hb:
        assert 5 < h.value < 25
        assert h.reference_low is not None and 10 < h.reference_low < 15
        assert h.reference_high is not None and 13 < h.reference_high < 18
        if h.original_unit == "g/L":
            assert h.value == pytest.approx(h.original_value / 10)


def test_demo_creatinine_and_alat_units_converge(demo_lab_observations: list[dict[str, Any]]) -> None:
    by_key = collections.defaultdict(list)
    for o in demo_lab_observations:
        h = harmonise(o)
        if h is not None:
            by_key[h.analysis.key].append(h)
    creat = by_key["creatinine"]
    assert {h.original_unit for h in creat} == {"umol/L", "mg/dL"}
    assert {h.unit for h in creat} == {"umol/L"}
    assert all(15 < h.value < 1500 for h in creat)
    for h in creat:
        if h.original_unit == "mg/dL":
            assert h.value == pytest.approx(h.original_value * 88.4, rel=2e-3)
    alat = by_key["alat"]
    assert {h.original_unit for h in alat} == {"U/L", "ukat/L"}
    assert {h.unit for h in alat} == {"U/L"}


def test_value_and_reference_interval_are_converted_together() -> None:
    obs = _obs(
        LOINC,
        "2160-0",
        _q(1.13, "mg/dL", "mg/dL"),
        referenceRange=[{"low": _q(0.5, "mg/dL", "mg/dL"), "high": _q(1.02, "mg/dL", "mg/dL")}],
        interpretation=[{"coding": [{"code": "H"}]}],
    )
    h = harmonise(obs)
    assert h is not None and h.converted
    assert h.analysis.key == "creatinine" and h.unit == "umol/L"
    assert h.value == pytest.approx(99.9, abs=0.1)
    assert h.original_value == 1.13 and h.original_unit == "mg/dL"
    assert h.reference_low == pytest.approx(44.2, abs=0.1)
    assert h.reference_high == pytest.approx(90.2, abs=0.1)
    assert h.interpretation == "H" and h.lab_display == "Lab 1" and h.effective.startswith("2025-03-01")
    assert h.coding == (LOINC, "2160-0") and h.observation_id == "o1" and h.status == "final"


def test_reference_bounds_in_their_own_unit_or_none() -> None:
    obs = _obs(
        NLK,
        "NPU28309",
        _q(135, "g/L", "g/L"),
        referenceRange=[
            {"type": {"coding": [{"code": "treatment"}]}, "low": _q(1, "g/L", "g/L")},
            {"low": _q(11.7, "g/dL", "g/dL"), "high": {"value": 153}},  # high has no unit: the value's unit
        ],
    )
    h = harmonise(obs)
    assert h is not None and h.value == pytest.approx(13.5) and h.unit == "g/dL"
    assert h.reference_low == pytest.approx(11.7) and h.reference_high == pytest.approx(15.3)


def test_printed_unit_without_ucum_code_is_read() -> None:
    h = harmonise(_obs(NLK, "NPU02593", _q(7.1, "10E9/l")))
    assert h is not None and h.converted and h.unit == "10*9/L" and h.value == 7.1


def test_hba1c_in_percent_is_kept_as_reported() -> None:
    h = harmonise(_obs(LOINC, "4548-4", _q(7.0, "%", "%"), referenceRange=[{"high": _q(6.0, "%", "%")}]))
    assert h is not None and h.analysis.key == "hba1c"
    assert not h.converted
    assert h.value == 7.0 and h.unit == "%" and h.reference_high == 6.0
    ifcc = harmonise(_obs(NLK, "NPU27300", _q(53, "mmol/mol", "mmol/mol")))
    assert ifcc is not None and ifcc.converted and ifcc.analysis is h.analysis


def test_unreadable_or_incompatible_unit_is_kept_as_reported() -> None:
    h = harmonise(_obs(LOINC, "718-7", _q(14.1, "frobs"), referenceRange=[{"low": _q(12, "frobs")}]))
    assert h is not None and not h.converted
    assert h.value == 14.1 and h.unit == "frobs" and h.original_unit == "frobs" and h.reference_low == 12
    # a unit of another kind: mass concentration of glucose has no meaning for a cell count
    h = harmonise(_obs(NLK, "NPU02593", _q(7.1, "mg/L", "mg/L")))
    assert h is not None and not h.converted and h.unit == "mg/L"
    # a number without a unit for an analysis that needs one
    h = harmonise(_obs(NLK, "NPU02593", _q(7.1, None)))
    assert h is not None and not h.converted and h.unit is None


def test_unitless_inr_is_already_canonical() -> None:
    reference = [{"low": {"value": 2.0}, "high": {"value": 3.0}}]
    h = harmonise(_obs(NLK, "NPU01685", _q(2.4, None), referenceRange=reference))
    assert h is not None and h.converted and h.unit == "{INR}"
    assert (h.value, h.reference_low, h.reference_high) == (2.4, 2.0, 3.0)


def test_comparator_and_period_are_kept() -> None:
    quantity = _q(5, "mg/L", "mg/L") | {"comparator": "<"}
    obs = _obs(NLK, "NPU19748", quantity)
    del obs["effectiveDateTime"]
    obs["effectivePeriod"] = {"start": "2025-01-02T07:00:00+01:00"}
    h = harmonise(obs)
    assert h is not None and h.comparator == "<" and h.value == 5 and h.effective == "2025-01-02T07:00:00+01:00"


def test_not_harmonised() -> None:
    assert harmonise(_obs(LOINC, "0000-0", _q(1, "g/L", "g/L"))) is None  # unknown code
    assert harmonise(_obs(LOINC, "718-7", None, valueString="hemolysert")) is None  # no number
    assert harmonise(_obs(LOINC, "718-7", {"unit": "g/dL"})) is None


@pytest.mark.parametrize(
    "broken",
    [
        {"code": ["718-7"], "valueQuantity": _q(1, "g/dL", "g/dL")},
        {"code": {"coding": "718-7"}, "valueQuantity": _q(1, "g/dL", "g/dL")},
        {"code": {"coding": [{"system": LOINC, "code": "718-7"}]}, "valueQuantity": {"value": "14"}},
        {"code": {"coding": [{"system": LOINC, "code": "718-7"}]}, "valueQuantity": {"value": True}},
        {"code": {"coding": [{"system": LOINC, "code": "718-7"}]}, "valueQuantity": [14]},
        {"code": {"coding": [{"system": LOINC, "code": "718-7"}]}, "valueQuantity": {"value": float("nan")}},
    ],
)
def test_malformed_observations_are_not_harmonised(broken: dict[str, Any]) -> None:
    assert harmonise({"resourceType": "Observation", **broken}) is None


def test_malformed_parts_are_ignored() -> None:
    obs = _obs(
        LOINC,
        "718-7",
        _q(14.0, "g/dL", "g/dL"),
        interpretation=["H", {"coding": [{"code": "N"}]}],
        referenceRange=["11-15", {"type": "normal", "low": _q(11.7, "g/dL", "g/dL")}],
        performer="Lab",
    )
    h = harmonise(obs)
    assert h is not None and h.value == 14.0 and h.interpretation == "N"
    assert h.reference_low == 11.7 and h.lab_display is None


def test_svarrapport_example_results_harmonise() -> None:
    xml = (EXAMPLES / "Svarrapport-v-1-4" / "Svar_biokjemi_v1-4_Ny.xml").read_bytes()
    result = map_svarrapport(xml)
    assert result.ok, result.errors
    found = {}
    for entry in result.bundle["entry"]:
        h = harmonise(entry["resource"]) if entry["resource"]["resourceType"] == "Observation" else None
        if h is not None:
            found[h.analysis.key] = h
    assert {"haemoglobin", "leukocytes", "inr", "d_dimer", "tsh", "free_t4"} <= set(found)
    assert found["haemoglobin"].value == 15.0 and found["haemoglobin"].unit == "g/dL"
    assert found["leukocytes"].unit == "10*9/L" and found["leukocytes"].reference_high == 11.0
    assert found["inr"].converted and found["inr"].reference_high == 1.2


# --- the operator's file -------------------------------------------------------------------------------------

_HEADER = ",".join(COLUMNS)


def _write(path: Path, *rows: str) -> Path:
    path.write_text("\n".join((_HEADER, *rows)) + "\n", encoding="utf-8")
    return path


def test_env_override_and_reload(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    default = catalogue()
    custom = _write(
        tmp_path / "analyses.csv",
        f"haemoglobin,{NLK},LOCAL-HB,Lokal Hb,Blodprosent,Haemoglobin,g/L,,5,haematology,",
        f"haemoglobin,{LOINC},718-7,,,,,,,,",  # analysis columns may be left to another row
    )
    monkeypatch.setenv(ANALYSES_FILE_ENV, str(custom))
    cat = catalogue()
    assert cat is not default and cat.source == str(custom)
    assert [a.key for a in cat] == ["haemoglobin"]
    assert cat.for_coding(NLK, "LOCAL-HB") is cat.for_coding(LOINC, "718-7")
    assert cat.for_coding(NLK, "NOR05172") is None
    assert cat.code_display(NLK, "LOCAL-HB") == "Lokal Hb"
    h = harmonise(_obs(LOINC, "718-7", _q(13.4, "g/dL", "g/dL")))
    assert h is not None and h.unit == "g/L" and h.value == pytest.approx(134) and h.analysis.lookback_days == 5

    # an edit of the file is read on reload(), not before
    _write(custom, f"crp,{LOINC},1988-5,,CRP,CRP,mg/L,,1,biochemistry,")
    assert catalogue() is cat
    assert [a.key for a in reload()] == ["crp"]
    assert catalogue().for_coding(LOINC, "1988-5") is not None

    monkeypatch.delenv(ANALYSES_FILE_ENV)
    assert catalogue().for_coding(NLK, "NOR05172") is not None


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ((f"hb,{NLK},X1,,Hb,Hb,g/dL,,7,h,", f"hb,{NLK},X1,,Hb,Hb,g/dL,,7,h,"), "already given on line 2"),
        ((f"hb,{NLK},X1,,Hb,Hb,gram/dL,,7,h,",), "not valid UCUM"),
        ((f"hb,{NLK},X1,,Hb,Hb,g/dl,,7,h,",), "write canonical_unit"),
        ((f"hb,{NLK},X1,,Hb,Hb,g/dL,,7,h,", f"hb,{LOINC},718-7,,Blod,Hb,g/dL,,7,h,"), "disagrees"),
        ((f"hb,{NLK},X1,,Hb,Hb,g/dL,heavy,7,h,",), "not a number"),
        ((f"hb,{NLK},X1,,Hb,Hb,g/dL,,a week,h,",), "whole number"),
        ((f"Hb,{NLK},X1,,Hb,Hb,g/dL,,7,h,",), "analysis key"),
        ((f"hb,{NLK},,,Hb,Hb,g/dL,,7,h,",), "system and code"),
        ((f"hb,{NLK},X1,,,Hb,g/dL,,7,h,",), "display_no is required"),
        ((f"hb,{NLK},X1,,Hb,Hb,g/dL,,7,h,percent",), "unconvertible unit"),
        ((f"hb,{NLK},X1,,Hb,Hb,g/dL,,7,h,,extra",), "more fields"),
    ],
)
def test_bad_files_are_refused(tmp_path: Path, rows: tuple[str, ...], message: str) -> None:
    with pytest.raises(CatalogueError, match=message):
        load_catalogue(_write(tmp_path / "bad.csv", *rows))


def test_missing_columns_and_files_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("analysis,system,code\nhb,x,y\n", encoding="utf-8")
    with pytest.raises(CatalogueError, match="missing column"):
        load_catalogue(bad)
    with pytest.raises(CatalogueError, match="cannot read"):
        load_catalogue(tmp_path / "nowhere.csv")


def test_a_broken_override_does_not_replace_the_catalogue_in_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = catalogue()
    monkeypatch.setenv(ANALYSES_FILE_ENV, str(_write(tmp_path / "bad.csv", f"hb,{NLK},X1,,Hb,Hb,nope,,7,h,")))
    with pytest.raises(CatalogueError):
        catalogue()
    monkeypatch.delenv(ANALYSES_FILE_ENV)
    assert catalogue() is before
