"""Plausibility and alert flags for single home measurements."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest

from kjerne.demo.generate import generate, resources
from kjerne.services.maledata.plausibility import Checked, apply_interpretation, check, parse_fhir_datetime
from kjerne.services.maledata.types import ACVPU, INTERPRETATION, LOINC, NPU, OBSERVATION_CATEGORY, SNOMED, UCUM

NOW = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC)
FNR = "urn:oid:2.16.578.1.12.4.1.4.1"

CODES = {
    "pulse": (LOINC, "8867-4"),
    "spo2": (LOINC, "2708-6"),
    "resp": (LOINC, "9279-1"),
    "temp": (LOINC, "8310-5"),
    "weight": (LOINC, "29463-7"),
    "height": (LOINC, "8302-2"),
    "bmi": (LOINC, "39156-5"),
    "glucose": (LOINC, "15074-8"),
    "bp": (LOINC, "85354-9"),
    "news2": (SNOMED, "1104051000000101"),
    "acvpu": (SNOMED, "1104441000000107"),
    "cfs": (SNOMED, "763264000"),
}


def observation(kind: str, **fields: Any) -> dict[str, Any]:
    system, code = CODES[kind]
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "vital-signs"}]}],
        "code": {"coding": [{"system": system, "code": code}]},
        "subject": {"identifier": {"system": FNR, "value": "13116900216"}, "display": "Line Danser"},
        "effectiveDateTime": "2025-03-01T08:15:00+01:00",
    }
    obs.update(fields)
    return obs


def qty(value: Any, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def measured(kind: str, value: Any, unit: str, **fields: Any) -> dict[str, Any]:
    return observation(kind, valueQuantity=qty(value, unit), **fields)


def bp(systolic: Any, diastolic: Any, unit: str = "mm[Hg]") -> dict[str, Any]:
    return observation(
        "bp",
        component=[
            {"code": {"coding": [{"system": LOINC, "code": "8480-6"}]}, "valueQuantity": qty(systolic, unit)},
            {"code": {"coding": [{"system": SNOMED, "code": "271650006"}]}, "valueQuantity": qty(diastolic, unit)},
        ],
    )


def flag(checked: Checked) -> str | None:
    assert checked.errors == [], checked.errors
    return checked.interpretation[0]["code"] if checked.interpretation else None


def where(checked: Checked) -> list[str | None]:
    return [i.expression for i in checked.errors]


# --- accepted, flagged or not -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "value", "unit", "expected"),
    [
        ("pulse", 72, "/min", None),
        ("pulse", 35, "/min", "L"),
        ("pulse", 25, "/min", "LL"),
        ("pulse", 140, "/min", "H"),
        ("pulse", 160, "/min", "HH"),
        ("pulse", 72, "{beats}/min", None),
        ("spo2", 97, "%", None),
        ("spo2", 100, "%", None),
        ("spo2", 91, "%", "L"),
        ("spo2", 84, "%", "LL"),
        ("resp", 16, "/min", None),
        ("resp", 26, "/min", "H"),
        ("resp", 5, "/min", "LL"),
        ("temp", 37.2, "Cel", None),
        ("temp", 39.0, "Cel", "H"),
        ("temp", 34.5, "Cel", "L"),
        ("temp", 40.5, "Cel", "HH"),
        ("temp", 98.6, "[degF]", None),
        ("temp", 104, "[degF]", "H"),
        ("weight", 82.4, "kg", None),
        ("weight", 3400, "g", None),
        ("weight", 180, "[lb_av]", None),
        ("height", 1.78, "m", None),
        ("height", 178, "cm", None),
        ("bmi", 24.3, "kg/m2", None),
        ("bmi", 15.2, "kg/m2", "L"),
        ("bmi", 43, "kg/m2", "H"),
        ("glucose", 6.1, "mmol/L", None),
        ("glucose", 3.5, "mmol/L", "L"),
        ("glucose", 2.6, "mmol/L", "LL"),
        ("glucose", 16.2, "mmol/L", "H"),
        ("glucose", 24, "mmol/L", "HH"),
        ("glucose", 100, "mg/dL", None),
    ],
)
def test_accepted_measurements_and_their_flags(kind: str, value: float, unit: str, expected: str | None) -> None:
    assert flag(check(measured(kind, value, unit), now=NOW)) == expected


@pytest.mark.parametrize(
    ("kind", "value", "unit", "canonical"),
    [
        ("temp", 98.6, "[degF]", 37.0),
        ("temp", 104, "[degF]", 40.0),
        ("weight", 180, "[lb_av]", 81.646627),
        ("weight", 3400, "g", 3.4),
        ("height", 1.78, "m", 178.0),
        ("glucose", 90, "mg/dL", 4.995558),
        ("pulse", 72, "/min", 72),
    ],
)
def test_canonical_value_is_reported_and_the_original_kept(
    kind: str, value: float, unit: str, canonical: float
) -> None:
    obs = measured(kind, value, unit)
    before = copy.deepcopy(obs)
    checked = check(obs, now=NOW)
    assert checked.errors == []
    assert checked.canonical_value == pytest.approx(canonical)
    assert checked.canonical_unit == checked.measurement_type.canonical_unit
    assert obs == before
    assert apply_interpretation(obs, checked)["valueQuantity"] == before["valueQuantity"]


def test_interpretation_coding_is_from_v3_observation_interpretation() -> None:
    assert check(measured("spo2", 88, "%"), now=NOW).interpretation == [
        {"system": INTERPRETATION, "code": "L", "display": "Low"}
    ]


# --- refused ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "value", "unit"),
    [
        ("spo2", 101, "%"),
        ("spo2", 40, "%"),
        ("pulse", -60, "/min"),
        ("pulse", 0, "/min"),
        ("pulse", 350, "/min"),
        ("resp", 0, "/min"),
        ("temp", 46, "Cel"),
        ("temp", 29.9, "Cel"),
        ("temp", 120, "[degF]"),
        ("weight", 0.1, "kg"),
        ("weight", 2000, "[lb_av]"),
        ("height", 3.2, "m"),
        ("glucose", 0.2, "mmol/L"),
        ("glucose", 60, "mmol/L"),
        ("bmi", 3, "kg/m2"),
    ],
)
def test_values_outside_the_plausible_range_are_refused(kind: str, value: float, unit: str) -> None:
    checked = check(measured(kind, value, unit), now=NOW)
    assert where(checked) == ["Observation.valueQuantity.value"]
    assert checked.errors[0].code == "value"
    assert "outside the physiologically possible range" in checked.errors[0].diagnostics


def test_spo2_above_100_names_the_range() -> None:
    (issue,) = check(measured("spo2", 101, "%"), now=NOW).errors
    assert issue.diagnostics == "Oxygen saturation (SpO2): 101 % is outside the physiologically possible range 50–100 %"


def test_converted_value_is_shown_in_both_units() -> None:
    (issue,) = check(measured("temp", 120, "[degF]"), now=NOW).errors
    assert "120 [degF] (= 48.8889 Cel)" in issue.diagnostics


@pytest.mark.parametrize(
    ("kind", "unit"),
    [("spo2", "kg"), ("pulse", "mm[Hg]"), ("temp", "K"), ("weight", "cm"), ("glucose", "mg"), ("spo2", "mmHg")],
)
def test_unit_that_does_not_fit_the_code(kind: str, unit: str) -> None:
    checked = check(measured(kind, 90, unit), now=NOW)
    assert where(checked) == ["Observation.valueQuantity.code"]
    assert checked.errors[0].code == "code-invalid"
    assert f"unit {unit!r} does not fit" in checked.errors[0].diagnostics


def test_unit_must_be_coded_in_ucum() -> None:
    no_code = measured("pulse", 72, "/min")
    del no_code["valueQuantity"]["code"]
    assert where(check(no_code, now=NOW)) == ["Observation.valueQuantity.code"]
    other_system = measured("pulse", 72, "/min")
    other_system["valueQuantity"]["system"] = "http://example.org/units"
    assert where(check(other_system, now=NOW)) == ["Observation.valueQuantity.system"]


@pytest.mark.parametrize("value", ["72", None, True, float("nan")])
def test_value_must_be_a_number(value: Any) -> None:
    assert where(check(measured("pulse", value, "/min"), now=NOW)) == ["Observation.valueQuantity.value"]


def test_value_of_the_wrong_type() -> None:
    checked = check(observation("pulse", valueString="72"), now=NOW)
    assert where(checked) == ["Observation.valueString"]


def test_unknown_vital_sign_is_refused() -> None:
    obs = observation("pulse", valueQuantity=qty(5, "mmol/L"))
    obs["code"] = {"coding": [{"system": LOINC, "code": "2339-0"}]}
    checked = check(obs, now=NOW)
    assert checked.measurement_type is None
    assert where(checked) == ["Observation.code"]
    assert "2339-0" in checked.errors[0].diagnostics


def test_unknown_code_outside_vital_signs_is_left_to_the_caller() -> None:
    obs = observation("pulse", valueQuantity=qty(5, "mmol/L"))
    obs["code"] = {"coding": [{"system": LOINC, "code": "2339-0"}]}
    obs["category"] = [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "laboratory"}]}]
    checked = check(obs, now=NOW)
    assert checked.errors == [] and checked.measurement_type is None and checked.interpretation is None


def test_codings_naming_two_types_are_refused() -> None:
    obs = measured("pulse", 72, "/min")
    obs["code"]["coding"].append({"system": SNOMED, "code": "431314004"})
    assert where(check(obs, now=NOW)) == ["Observation.code"]


def test_identified_by_snomed_or_npu_alone() -> None:
    obs = measured("glucose", 5.5, "mmol/L")
    obs["code"] = {"coding": [{"system": NPU, "code": "NPU02187"}]}
    assert check(obs, now=NOW).measurement_type.key == "blood-glucose"


# --- missing value ------------------------------------------------------------------------------------------

ABSENT = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/data-absent-reason", "code": "error"}]}


def test_missing_value_without_data_absent_reason() -> None:
    checked = check(observation("pulse"), now=NOW)
    assert where(checked) == ["Observation.value[x]"] and checked.errors[0].code == "required"


def test_missing_value_with_data_absent_reason_is_accepted() -> None:
    checked = check(observation("pulse", dataAbsentReason=ABSENT), now=NOW)
    assert checked.errors == [] and checked.interpretation is None and checked.canonical_value is None


def test_value_and_data_absent_reason_together() -> None:
    checked = check(measured("pulse", 72, "/min", dataAbsentReason=ABSENT), now=NOW)
    assert where(checked) == ["Observation.dataAbsentReason"]


# --- time ---------------------------------------------------------------------------------------------------


def _at(delta: dt.timedelta) -> str:
    return (NOW + delta).isoformat()


@pytest.mark.parametrize("delta", [dt.timedelta(minutes=-30), dt.timedelta(0), dt.timedelta(minutes=4, seconds=59)])
def test_times_up_to_five_minutes_ahead_are_accepted(delta: dt.timedelta) -> None:
    assert check(measured("pulse", 72, "/min", effectiveDateTime=_at(delta)), now=NOW).errors == []


def test_measurement_in_the_future_is_refused() -> None:
    checked = check(measured("pulse", 72, "/min", effectiveDateTime=_at(dt.timedelta(minutes=6))), now=NOW)
    assert where(checked) == ["Observation.effectiveDateTime"]
    assert "in the future" in checked.errors[0].diagnostics


def test_future_time_in_another_zone() -> None:
    # 13:30 in Oslo (winter, +01:00) is 12:30 UTC: 30 minutes ahead of NOW.
    obs = measured("pulse", 72, "/min", effectiveDateTime="2025-03-01T13:30:00+01:00")
    assert where(check(obs, now=NOW)) == ["Observation.effectiveDateTime"]
    obs["effectiveDateTime"] = "2025-03-01T13:00:00+01:00"
    assert check(obs, now=NOW).errors == []


@pytest.mark.parametrize(
    ("fields", "expression"),
    [
        (
            {"effectivePeriod": {"start": "2025-03-01T11:00:00Z", "end": "2025-03-01T13:00:00Z"}},
            "Observation.effectivePeriod.end",
        ),
        ({"effectivePeriod": {"start": "2025-03-02T11:00:00Z"}}, "Observation.effectivePeriod.start"),
        ({"effectiveDateTime": "2025-03-01T11:00:00Z", "issued": "2025-03-01T12:10:00Z"}, "Observation.issued"),
    ],
)
def test_future_period_or_issued(fields: dict, expression: str) -> None:
    obs = measured("pulse", 72, "/min")
    del obs["effectiveDateTime"]
    obs.update(fields)
    assert where(check(obs, now=NOW)) == [expression]


def test_period_and_issued_in_the_past_are_accepted() -> None:
    obs = measured("pulse", 72, "/min", issued="2025-03-01T11:59:00.123+00:00")
    del obs["effectiveDateTime"]
    obs["effectivePeriod"] = {"start": "2025-03-01T07:00:00+01:00", "end": "2025-03-01T07:05:00+01:00"}
    assert check(obs, now=NOW).errors == []


def test_period_ending_before_it_starts() -> None:
    obs = measured("pulse", 72, "/min")
    del obs["effectiveDateTime"]
    obs["effectivePeriod"] = {"start": "2025-03-01T07:05:00Z", "end": "2025-03-01T07:00:00Z"}
    assert where(check(obs, now=NOW)) == ["Observation.effectivePeriod"]


def test_date_without_time_counts_from_the_earliest_zone() -> None:
    # At 12:00 UTC it is already the next day at UTC+14, so "2025-03-02" may be now somewhere.
    assert check(measured("pulse", 72, "/min", effectiveDateTime="2025-03-01"), now=NOW).errors == []
    assert check(measured("pulse", 72, "/min", effectiveDateTime="2025-03-02"), now=NOW).errors == []
    late = check(measured("pulse", 72, "/min", effectiveDateTime="2025-03-03"), now=NOW)
    assert where(late) == ["Observation.effectiveDateTime"]


@pytest.mark.parametrize("text", ["2025-03-01T08:00:00", "01.03.2025 08:00", "2025-13-01", "yesterday", 20250301])
def test_malformed_time(text: Any) -> None:
    checked = check(measured("pulse", 72, "/min", effectiveDateTime=text), now=NOW)
    assert where(checked) == ["Observation.effectiveDateTime"] and checked.errors[0].code == "invalid"


def test_missing_time() -> None:
    obs = measured("pulse", 72, "/min")
    del obs["effectiveDateTime"]
    assert where(check(obs, now=NOW)) == ["Observation.effective[x]"]


def test_parse_fhir_datetime() -> None:
    assert parse_fhir_datetime("2025-03-01T08:15:30.5Z") == dt.datetime(2025, 3, 1, 8, 15, 30, 500000, dt.UTC)
    assert parse_fhir_datetime("2025") == dt.datetime(2025, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=14)))
    assert parse_fhir_datetime("2025-02-30") is None


def test_naive_now_is_taken_as_utc() -> None:
    obs = measured("pulse", 72, "/min", effectiveDateTime="2025-03-01T12:10:00Z")
    assert where(check(obs, now=NOW.replace(tzinfo=None))) == ["Observation.effectiveDateTime"]


# --- subject ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subject", "expression"),
    [
        (None, "Observation.subject"),
        ({"reference": "Patient/123"}, "Observation.subject.identifier"),
        ({"identifier": {"system": FNR}}, "Observation.subject.identifier"),
        ({"identifier": {"system": FNR, "value": "  "}}, "Observation.subject.identifier"),
        ({"identifier": {"system": "http://example.org/mrn", "value": "42"}}, "Observation.subject.identifier.system"),
    ],
)
def test_subject_must_carry_a_person_identifier(subject: Any, expression: str) -> None:
    obs = measured("pulse", 72, "/min")
    if subject is None:
        del obs["subject"]
    else:
        obs["subject"] = subject
    assert where(check(obs, now=NOW)) == [expression]


def test_d_number_subject_is_accepted() -> None:
    obs = measured("pulse", 72, "/min")
    obs["subject"] = {"identifier": {"system": "urn:oid:2.16.578.1.12.4.1.4.2", "value": "41010150034"}}
    assert check(obs, now=NOW).errors == []


def test_all_errors_are_reported_together() -> None:
    obs = measured("spo2", 101, "%", effectiveDateTime=_at(dt.timedelta(hours=1)))
    del obs["subject"]
    assert sorted(where(check(obs, now=NOW))) == [
        "Observation.effectiveDateTime",
        "Observation.subject",
        "Observation.valueQuantity.value",
    ]


# --- blood pressure -----------------------------------------------------------------------------------------


def test_blood_pressure_with_both_components() -> None:
    checked = check(bp(128, 82), now=NOW)
    assert checked.errors == [] and not checked.flagged
    assert [(c.key, c.index, c.canonical_value) for c in checked.components] == [
        ("systolic", 0, 128),
        ("diastolic", 1, 82),
    ]


def test_blood_pressure_flags_each_component() -> None:
    obs = bp(195, 115)
    checked = check(obs, now=NOW)
    assert checked.errors == [] and checked.flagged and checked.interpretation is None
    assert [c.interpretation[0]["code"] for c in checked.components] == ["H", "H"]
    flagged = apply_interpretation(obs, checked)
    assert "interpretation" not in flagged
    assert flagged["component"][0]["interpretation"][0]["coding"][0]["code"] == "H"
    assert flagged["component"][1]["interpretation"][0]["coding"][0]["code"] == "H"
    assert "interpretation" not in obs["component"][0]


@pytest.mark.parametrize(
    ("systolic", "diastolic", "expected"),
    [(85, 55, ("L", None)), (65, 45, ("LL", "L")), (230, 100, ("HH", None)), (140, 135, (None, "HH"))],
)
def test_blood_pressure_alert_levels(systolic: int, diastolic: int, expected: tuple) -> None:
    checked = check(bp(systolic, diastolic), now=NOW)
    assert checked.errors == []
    assert tuple(c.interpretation[0]["code"] if c.interpretation else None for c in checked.components) == expected


def test_blood_pressure_without_both_components() -> None:
    obs = bp(128, 82)
    del obs["component"][1]
    checked = check(obs, now=NOW)
    assert where(checked) == ["Observation.component"]
    assert "Diastolic blood pressure is missing" in checked.errors[0].diagnostics
    obs["component"] = []
    assert where(check(obs, now=NOW)) == ["Observation.component"]
    del obs["component"]
    assert where(check(obs, now=NOW)) == ["Observation.component"]


def test_blood_pressure_with_a_single_value_instead_of_components() -> None:
    obs = observation("bp", valueQuantity=qty(128, "mm[Hg]"))
    assert where(check(obs, now=NOW)) == ["Observation.component"]


def test_blood_pressure_not_measured() -> None:
    assert check(observation("bp", dataAbsentReason=ABSENT), now=NOW).errors == []


def test_blood_pressure_component_out_of_range_or_wrong_unit() -> None:
    assert where(check(bp(128, 250), now=NOW)) == ["Observation.component[1].valueQuantity.value"]
    assert where(check(bp(128, 82, "kPa"), now=NOW)) == [
        "Observation.component[0].valueQuantity.code",
        "Observation.component[1].valueQuantity.code",
    ]


def test_diastolic_must_be_below_systolic() -> None:
    checked = check(bp(80, 95), now=NOW)
    assert where(checked) == ["Observation.component"]
    assert "must be below" in checked.errors[0].diagnostics


def test_blood_pressure_component_twice_and_other_components() -> None:
    obs = bp(128, 82)
    obs["component"].append(copy.deepcopy(obs["component"][0]))
    assert where(check(obs, now=NOW)) == ["Observation.component[2]"]
    obs = bp(128, 82)
    obs["component"].insert(
        0, {"code": {"coding": [{"system": LOINC, "code": "8478-0"}]}, "valueQuantity": qty(97, "mm[Hg]")}
    )
    checked = check(obs, now=NOW)
    assert checked.errors == [] and [c.index for c in checked.components] == [1, 2]


def test_blood_pressure_component_missing_its_value() -> None:
    obs = bp(128, 82)
    del obs["component"][0]["valueQuantity"]
    assert where(check(obs, now=NOW)) == ["Observation.component[0].value[x]"]
    obs["component"][0]["dataAbsentReason"] = ABSENT
    assert check(obs, now=NOW).errors == []


# --- scores -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("score", "expected"), [(0, None), (4, None), (5, "H"), (6, "H"), (7, "HH"), (20, "HH")])
def test_news2_flags(score: int, expected: str | None) -> None:
    checked = check(observation("news2", valueInteger=score), now=NOW)
    assert flag(checked) == expected and checked.canonical_value == score


@pytest.mark.parametrize("score", [-1, 21, 3.5, "5", True])
def test_news2_outside_the_scale_or_not_whole(score: Any) -> None:
    assert where(check(observation("news2", valueInteger=score), now=NOW)) == ["Observation.valueInteger"]


def test_news2_as_a_score_quantity_like_the_vkp_example() -> None:
    checked = check(observation("news2", valueQuantity=qty(6, "{score}")), now=NOW)
    assert flag(checked) == "H"
    wrong = check(observation("news2", valueQuantity=qty(6, "kg")), now=NOW)
    assert where(wrong) == ["Observation.valueQuantity.code"]
    fraction = check(observation("news2", valueQuantity=qty(6.5, "{score}")), now=NOW)
    assert where(fraction) == ["Observation.valueQuantity.value"]


def test_clinical_frailty_scale() -> None:
    assert flag(check(observation("cfs", valueInteger=9), now=NOW)) is None
    assert flag(check(observation("cfs", valueQuantity={"value": 2}), now=NOW)) is None  # the VKP example's form
    assert where(check(observation("cfs", valueInteger=0), now=NOW)) == ["Observation.valueInteger"]
    assert where(check(observation("cfs", valueQuantity=qty(2, "kg")), now=NOW)) == ["Observation.valueQuantity.code"]


@pytest.mark.parametrize(
    ("coding", "answer", "expected"),
    [
        ({"system": ACVPU, "code": "A"}, "A", None),
        ({"system": SNOMED, "code": "248234008"}, "A", None),
        ({"system": ACVPU, "code": "C"}, "C", "AA"),
        ({"system": ACVPU, "code": "U"}, "U", "AA"),
    ],
)
def test_acvpu(coding: dict, answer: str, expected: str | None) -> None:
    checked = check(observation("acvpu", valueCodeableConcept={"coding": [coding]}), now=NOW)
    assert flag(checked) == expected and checked.canonical_value == answer


def test_acvpu_unknown_answer() -> None:
    obs = observation("acvpu", valueCodeableConcept={"coding": [{"system": ACVPU, "code": "X"}]})
    assert where(check(obs, now=NOW)) == ["Observation.valueCodeableConcept"]
    assert where(check(observation("acvpu", valueInteger=1), now=NOW)) == ["Observation.valueInteger"]


# --- apply_interpretation -----------------------------------------------------------------------------------


def test_apply_interpretation_returns_a_flagged_copy() -> None:
    obs = measured("glucose", 2.4, "mmol/L")
    before = copy.deepcopy(obs)
    flagged = apply_interpretation(obs, check(obs, now=NOW))
    assert obs == before
    assert flagged["interpretation"] == [
        {"coding": [{"system": INTERPRETATION, "code": "LL", "display": "Critical low"}]}
    ]
    assert {k: v for k, v in flagged.items() if k != "interpretation"} == before


def test_apply_interpretation_keeps_the_senders_when_kjerne_has_none() -> None:
    sender = [{"coding": [{"system": INTERPRETATION, "code": "N"}]}]
    obs = measured("pulse", 72, "/min", interpretation=sender)
    assert apply_interpretation(obs, check(obs, now=NOW))["interpretation"] == sender
    obs["valueQuantity"]["value"] = 145
    assert apply_interpretation(obs, check(obs, now=NOW))["interpretation"][0]["coding"][0]["code"] == "H"


def test_apply_interpretation_refuses_a_rejected_observation() -> None:
    obs = measured("spo2", 101, "%")
    with pytest.raises(ValueError):
        apply_interpretation(obs, check(obs, now=NOW))


# --- the demo data ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_vitals() -> list[dict[str, Any]]:
    return [
        r
        for r in resources(generate(seed=1, persons=20))
        if r["resourceType"] == "Observation"
        and any(c.get("code") == "vital-signs" for cat in r.get("category", ()) for c in cat["coding"])
    ]


def test_demo_measurements_all_pass(demo_vitals: list[dict[str, Any]]) -> None:
    assert len(demo_vitals) > 500
    now = dt.datetime.now(dt.UTC)
    failures = {o["id"]: check(o, now=now).errors for o in demo_vitals}
    assert {k: v for k, v in failures.items() if v} == {}
    kinds = {check(o, now=now).measurement_type.key for o in demo_vitals}
    assert {"heart-rate", "blood-pressure", "oxygen-saturation", "news2", "blood-glucose"} <= kinds


def test_demo_measurements_include_flagged_ones(demo_vitals: list[dict[str, Any]]) -> None:
    # The demo plants readings in the alert range (odd high BP, hypoglycaemia, COPD desaturation).
    assert any(check(o).flagged for o in demo_vitals)


def test_period_with_a_date_only_end_is_not_compared_with_its_start() -> None:
    obs = measured("pulse", 72, "/min")
    del obs["effectiveDateTime"]
    obs["effectivePeriod"] = {"start": "2025-02-28T20:00:00+01:00", "end": "2025-02-28"}
    assert check(obs, now=NOW).errors == []
