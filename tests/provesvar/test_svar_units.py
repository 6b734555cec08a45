"""Norwegian laboratory unit spellings -> UCUM."""

from __future__ import annotations

import pytest
from provesvar_helpers import BIOKJEMI_14, RECEIVED, edit, first, resources

from kjerne.services.provesvar.svarrapport_map import map_svarrapport
from kjerne.services.provesvar.units import UnitError, parse_ucum, to_ucum


@pytest.mark.parametrize(
    ("written", "ucum"),
    [
        ("mmol/l", "mmol/L"),
        ("mmol/L", "mmol/L"),
        ("10E9/l", "10*9/L"),
        ("10E9/L", "10*9/L"),
        ("x10^9/L", "10*9/L"),
        ("x 10^9/l", "10*9/L"),
        ("Gant/L", "10*9/L"),
        ("10E12/l", "10*12/L"),
        ("µmol/l", "umol/L"),  # micro sign
        ("μmol/L", "umol/L"),  # Greek mu
        ("g/dl", "g/dL"),
        ("g/l", "g/L"),
        ("E/l", "U/L"),
        ("U/l", "U/L"),
        ("kE/l", "kU/L"),
        ("IE/l", "[IU]/L"),
        ("IE/ml", "[IU]/mL"),
        ("IU/L", "[IU]/L"),
        ("mIE/l", "m[IU]/L"),
        ("%", "%"),
        ("mU/l", "mU/L"),
        ("ml/min/1,73m2", "mL/min/{1.73_m2}"),
        ("mL/min/1.73 m²", "mL/min/{1.73_m2}"),
        ("mm/t", "mm/h"),
        ("mmol/døgn", "mmol/d"),
        ("mmHg", "mm[Hg]"),
        ("kPa", "kPa"),
        ("fl", "fL"),
        ("10E-3/L", "10*-3/L"),
        ("mg/mmol", "mg/mmol"),
        ("nmol/l", "nmol/L"),
        ("ng/mL", "ng/mL"),
    ],
)
def test_spellings(written: str, ucum: str) -> None:
    assert to_ucum(written).code == ucum


@pytest.mark.parametrize("written", ["0", "", "  "])
def test_no_unit_convention(written: str) -> None:
    assert to_ucum(written).code is None


@pytest.mark.parametrize("written", ["bogus", "mmol/x", "10*", "cells/uL", "mg//L", "{unclosed"])
def test_units_that_do_not_parse(written: str) -> None:
    with pytest.raises(UnitError):
        to_ucum(written)


@pytest.mark.parametrize("code", ["mmol/L", "10*9/L", "mL/min/{1.73_m2}", "g/(24.h)", "[IU]/L", "/uL", "kg/m2"])
def test_ucum_grammar_accepts_valid_codes(code: str) -> None:
    assert parse_ucum(code) == code


def _with_unit(unit: str) -> bytes:
    xpath = "s:ServReport/s:Patient/s:ResultItem[1]/s:NumResult/s:NumResultValue"
    return edit(BIOKJEMI_14, lambda root, ns: first(root, ns, xpath).set("U", unit))


def test_quantity_in_bundle() -> None:
    result = map_svarrapport(_with_unit("mmol/l"), received_at=RECEIVED)
    assert result.ok
    q = resources(result.bundle, "Observation")[0]["valueQuantity"]
    assert q == {"value": 11, "unit": "mmol/l", "system": "http://unitsofmeasure.org", "code": "mmol/L"}


def test_unit_that_does_not_parse_refuses_the_report() -> None:
    result = map_svarrapport(_with_unit("enheter pr glass"), received_at=RECEIVED)
    assert not result.ok
    assert result.error_faults[0].code == "X99"
    assert "ResultItem[1]/NumResult/NumResultValue" in result.errors[0]
    assert "unit 'enheter pr glass' is not UCUM" in result.errors[0]


def test_reference_interval_and_deviation_flag_are_kept() -> None:
    result = map_svarrapport(BIOKJEMI_14.read_bytes(), received_at=RECEIVED)
    lh = next(o for o in resources(result.bundle, "Observation") if o["code"]["coding"][0]["code"] == "NOR05857")
    assert lh["referenceRange"] == [
        {"text": "< 12", "high": {"value": 12, "unit": "IU/L", "system": "http://unitsofmeasure.org", "code": "[IU]/L"}}
    ]
    interp = lh["interpretation"][0]["coding"]
    assert {"system": "urn:oid:2.16.578.1.12.4.1.1.8244", "code": "1", "display": "Over øvre referansegrense"} in interp
    assert any(c["code"] == "H" for c in interp)
    leuk = next(o for o in resources(result.bundle, "Observation") if o["code"]["coding"][0]["code"] == "NPU02593")
    assert leuk["referenceRange"][0]["low"]["value"] == 3.5
    assert leuk["referenceRange"][0]["high"]["value"] == 11


def test_comparator() -> None:
    def change(root, ns) -> None:
        num = first(root, ns, "s:ServReport/s:Patient/s:ResultItem[1]/s:NumResult")
        comp = num.makeelement(f"{{{ns['s']}}}ArithmeticComp", V="LT", DN="Mindre")
        num.insert(0, comp)

    result = map_svarrapport(edit(BIOKJEMI_14, change), received_at=RECEIVED)
    assert result.ok, result.errors
    assert resources(result.bundle, "Observation")[0]["valueQuantity"]["comparator"] == "<"
