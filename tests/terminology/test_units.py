"""UCUM units: validation, the platform's spelling, and conversion between laboratory units."""

from __future__ import annotations

import time

import pytest

from kjerne.terminology.units import UnitError, canonical, convert, convertible, dimensionality, is_valid_ucum

CREATININE = 113.12
GLUCOSE = 180.16
CHOLESTEROL = 386.65
HAEMOGLOBIN_FE = 16114.5


# --- conversions laboratories actually differ in -----------------------------------------------------


def test_haemoglobin_g_per_dl_to_g_per_l_is_times_ten() -> None:
    assert convert(13.4, "g/dL", "g/L") == pytest.approx(134.0)
    assert convert(134, "g/L", "g/dL") == pytest.approx(13.4)


def test_haemoglobin_substance_concentration_converts_with_the_iron_monomer_mass() -> None:
    # 15.0 g/dL is about 9.3 mmol/L (the Danish convention, factor 0.6206)
    assert convert(15.0, "g/dL", "mmol/L", molar_mass=HAEMOGLOBIN_FE) == pytest.approx(9.31, abs=0.01)
    assert convert(9.31, "mmol/L", "g/dL", molar_mass=HAEMOGLOBIN_FE) == pytest.approx(15.0, abs=0.01)


def test_creatinine_mg_per_dl_to_umol_per_l_is_times_88_4() -> None:
    assert convert(1.0, "mg/dL", "umol/L", molar_mass=CREATININE) == pytest.approx(88.4, rel=1e-3)
    assert convert(1.13, "mg/dL", "umol/L", molar_mass=CREATININE) == pytest.approx(99.9, rel=1e-3)
    assert convert(88.4, "umol/L", "mg/dL", molar_mass=CREATININE) == pytest.approx(1.0, rel=1e-3)


def test_enzyme_activity_u_per_l_and_ukat_per_l() -> None:
    assert convert(60, "U/L", "ukat/L") == pytest.approx(1.0)
    assert convert(0.75, "ukat/L", "U/L") == pytest.approx(45.0)
    assert convert(1, "kat/L", "ukat/L") == pytest.approx(1e6)


def test_glucose_mmol_per_l_and_mg_per_dl() -> None:
    assert convert(5.5, "mmol/L", "mg/dL", molar_mass=GLUCOSE) == pytest.approx(99.1, abs=0.05)
    assert convert(100, "mg/dL", "mmol/L", molar_mass=GLUCOSE) == pytest.approx(5.55, abs=0.005)


def test_cholesterol_mmol_per_l_and_mg_per_dl() -> None:
    assert convert(5.0, "mmol/L", "mg/dL", molar_mass=CHOLESTEROL) == pytest.approx(193.3, abs=0.05)


def test_round_trip_is_exact_enough() -> None:
    for value in (0.01, 1.0, 57.3, 12345.0):
        there = convert(value, "mg/dL", "umol/L", molar_mass=CREATININE)
        assert convert(there, "umol/L", "mg/dL", molar_mass=CREATININE) == pytest.approx(value, rel=1e-12)


def test_counts_prefixes_and_arbitrary_units() -> None:
    assert convert(7.2, "10*9/L", "10*3/uL") == pytest.approx(7.2)
    assert convert(4.4, "m[IU]/L", "u[IU]/mL") == pytest.approx(4.4)
    assert convert(250, "ng/L", "ug/L") == pytest.approx(0.25)
    assert convert(2.5, "mg/L", "mg/dL") == pytest.approx(0.25)


def test_same_unit_is_identity_even_where_pint_has_no_definition() -> None:
    assert convert(7.41, "[pH]", "[pH]") == 7.41


def test_offset_units_convert() -> None:
    assert convert(37.0, "Cel", "[degF]") == pytest.approx(98.6)
    assert convert(0.0, "Cel", "K") == pytest.approx(273.15)


def test_dimensionless_and_annotations() -> None:
    assert convert(45, "%", "L/L") == pytest.approx(0.45)
    assert convert(1.1, "1", "{INR}") == pytest.approx(1.1)
    assert convert(62, "mL/min/{1.73_m2}", "mL/min/{1.73_m2}") == 62
    # one side annotated: the annotation is a label only
    assert convert(0.4, "mg/L", "mg/L{FEU}") == pytest.approx(0.4)


# --- refusals ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("from_unit", "to_unit", "molar_mass"),
    [
        ("g/L", "mmol/L", None),  # mass <-> substance needs a molar mass
        ("U/L", "mg/L", CREATININE),  # activity is not a mass
        ("g/L", "fL", None),
        ("mmol/L", "mmol", None),
        ("mg/L{FEU}", "mg/L{DDU}", None),  # D-dimer units on different scales
        ("umol/L", "mg/dL", -1.0),
        ("µmol/L", "umol/L", None),  # not UCUM: the caller must use canonical() first
        ("foo", "g/L", None),
        ("g/L", "", None),
    ],
)
def test_incompatible_or_invalid_units_raise(from_unit: str, to_unit: str, molar_mass: float | None) -> None:
    with pytest.raises(UnitError):
        convert(1.0, from_unit, to_unit, molar_mass=molar_mass)
    # a refusal is remembered and still raises on the next call
    with pytest.raises(UnitError):
        convert(2.0, from_unit, to_unit, molar_mass=molar_mass)
    assert not convertible(from_unit, to_unit, molar_mass=molar_mass)


def test_unit_error_is_a_value_error() -> None:
    assert issubclass(UnitError, ValueError)


# --- validity and spelling ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "unit",
    ["g/dL", "g/L", "umol/L", "mg/dL", "U/L", "ukat/L", "mmol/L", "m[IU]/L", "[IU]/L", "10*9/L", "10*-3/L",
     "fL", "mL/min/{1.73_m2}", "mmol/mol", "%", "{INR}", "1", "mm[Hg]", "Cel", "/min", "mmol/l", "[pH]"],
)  # fmt: skip
def test_valid_ucum(unit: str) -> None:
    assert is_valid_ucum(unit)


@pytest.mark.parametrize(
    "unit", ["", " mg/L", "mg/L ", "µmol/L", "IU/L", "mIE/L", "10E9/L", "x10^9/L", "0", "E/L", "foo", "g//L", "mg/"]
)
def test_invalid_ucum(unit: str) -> None:
    assert not is_valid_ucum(unit)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("mmol/L", "mmol/L"),
        ("mmol/l", "mmol/L"),
        ("g/dl", "g/dL"),
        ("mol/l", "mol/L"),
        ("µmol/L", "umol/L"),
        ("μmol/l", "umol/L"),  # Greek mu
        ("10E9/L", "10*9/L"),
        ("x10^9/L", "10*9/L"),
        ("10E-3/L", "10*-3/L"),
        ("mIE/L", "m[IU]/L"),
        ("IU/L", "[IU]/L"),
        ("E/L", "U/L"),
        ("mL/min/1,73m2", "mL/min/{1.73_m2}"),
        ("ml/min/{1.73_m2}", "mL/min/{1.73_m2}"),
        ("{INR}", "{INR}"),
        ("kcal", "kcal"),
        ("[lb_av]", "[lb_av]"),
        ("", "1"),
        ("0", "1"),
        (" g/L ", "g/L"),
    ],
)
def test_canonical_spelling(given: str, expected: str) -> None:
    assert canonical(given) == expected
    assert is_valid_ucum(canonical(given))


@pytest.mark.parametrize("unit", ["foo", "mg/", "per cent"])
def test_canonical_refuses_what_it_cannot_read(unit: str) -> None:
    with pytest.raises(UnitError):
        canonical(unit)


def test_dimensionality() -> None:
    assert dimensionality("mg/dL") == {"[mass]": 1, "[length]": -3}
    assert dimensionality("U/L") == dimensionality("ukat/L")


# --- speed ---------------------------------------------------------------------------------------------


def test_conversion_is_fast_after_warm_up() -> None:
    """Every value of a cumulative table is converted: under 20 µs each once the pair has been seen."""
    pairs = [("g/L", "g/dL", None), ("mg/dL", "umol/L", CREATININE), ("ukat/L", "U/L", None)]
    for f, t, m in pairs:
        convert(1.0, f, t, molar_mass=m)
    n = 30_000
    start = time.perf_counter()
    for i in range(n):
        f, t, m = pairs[i % 3]
        convert(float(i), f, t, molar_mass=m)
    per_call = (time.perf_counter() - start) / n
    assert per_call < 20e-6, f"{per_call * 1e6:.2f} µs per conversion"
