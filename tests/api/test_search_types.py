"""Search by parameter type: token, string, date, reference, quantity, number, uri, the common parameters
and chaining; by GET and by POST _search."""

from __future__ import annotations

from typing import Any

import pytest
from api_helpers import (
    BASE_PATH,
    DNR,
    DNR_1,
    FNR,
    FNR_1,
    FNR_2,
    FORM,
    UCUM,
    V2_0203,
    assert_outcome,
    create,
    glucose,
    ids,
    patient,
    search,
    search_ids,
)
from starlette.testclient import TestClient

# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def people(client: TestClient) -> dict[str, str]:
    """Patients with Norwegian names and identifiers; returns name → id."""
    made = {
        "aas": patient(FNR_1, "Ås", "Bjørn", birth_date="1969-11-13", gender="male", typed=True),
        "berg": patient(FNR_2, "Berg", "Åse", birth_date="1979-05-12", gender="female"),
        "bergersen": patient(None, "Bergersen", "Per", birth_date="1980-01-01", gender="male"),
        "haugberg": patient(None, "Haugberg", "Øystein", birth_date="1985"),
        "dnr": patient(None, "Lund", "Ola", identifier=[{"system": DNR, "value": DNR_1}]),
        "local": patient(None, "Aasen", "Kari", identifier=[{"value": "lokal-1"}], active=True),
    }
    made["berg"]["address"] = [{"city": "Tromsø", "postalCode": "9008"}]
    made["aas"]["address"] = [{"city": "Ålesund", "postalCode": "6002"}]
    return {k: create(client, v)["id"] for k, v in made.items()}


def by_name(people: dict[str, str], *names: str) -> set[str]:
    return {people[n] for n in names}


# -- GET and POST _search ------------------------------------------------------------------------


def test_post_search_gives_the_same_results_as_get(client: TestClient, people: dict[str, str]) -> None:
    params = [("family", "berg"), ("gender", "male,female")]
    got = ids(search(client, "Patient", params))
    assert sorted(got) == sorted([people["berg"], people["bergersen"]])
    r = client.post("/fhir/Patient/_search", content="family=berg&gender=male%2Cfemale", headers=FORM)
    assert r.status_code == 200, r.text
    assert r.json()["type"] == "searchset"
    assert ids(r.json()) == got
    # query-string and body parameters combine
    r = client.post("/fhir/Patient/_search?family=berg", content="gender=male", headers=FORM)
    assert r.status_code == 200, r.text
    assert ids(r.json()) == [people["bergersen"]]


def test_post_search_needs_a_form_body(client: TestClient, people: dict[str, str]) -> None:
    r = client.post("/fhir/Patient/_search", json={"family": "berg"})
    assert_outcome(r, (400, 415))


# -- token ---------------------------------------------------------------------------------------


def test_token_system_and_code(client: TestClient, people: dict[str, str]) -> None:
    assert search_ids(client, "Patient", {"identifier": f"{FNR}|{FNR_1}"}) == by_name(people, "aas")
    assert search_ids(client, "Patient", {"identifier": f"{FNR}|{FNR_2}"}) == by_name(people, "berg")
    assert search_ids(client, "Patient", {"identifier": f"{DNR}|{FNR_1}"}) == set()
    assert search_ids(client, "Patient", {"identifier": f"{DNR}|{DNR_1}"}) == by_name(people, "dnr")


def test_token_code_only_matches_any_system(client: TestClient, people: dict[str, str]) -> None:
    assert search_ids(client, "Patient", {"identifier": FNR_1}) == by_name(people, "aas")
    assert search_ids(client, "Patient", {"identifier": "lokal-1"}) == by_name(people, "local")


def test_token_empty_system_matches_only_values_without_system(client: TestClient, people: dict[str, str]) -> None:
    assert search_ids(client, "Patient", {"identifier": "|lokal-1"}) == by_name(people, "local")
    assert search_ids(client, "Patient", {"identifier": f"|{FNR_1}"}) == set()


def test_token_system_only(client: TestClient, people: dict[str, str]) -> None:
    assert search_ids(client, "Patient", {"identifier": f"{FNR}|"}) == by_name(people, "aas", "berg")
    assert search_ids(client, "Patient", {"identifier": f"{DNR}|"}) == by_name(people, "dnr")


def test_token_or_values_and_and_parameters(client: TestClient, people: dict[str, str]) -> None:
    both = search_ids(client, "Patient", {"identifier": f"{FNR}|{FNR_1},{DNR}|{DNR_1}"})
    assert both == by_name(people, "aas", "dnr")
    anded = search_ids(client, "Patient", [("gender", "male"), ("identifier", f"{FNR}|")])
    assert anded == by_name(people, "aas")


def test_token_not(client: TestClient, people: dict[str, str]) -> None:
    # :not includes resources that have no value at all
    assert search_ids(client, "Patient", {"gender:not": "male"}) == by_name(people, "berg", "haugberg", "dnr", "local")
    assert search_ids(client, "Patient", {"gender:not": "male,female"}) == by_name(people, "haugberg", "dnr", "local")


def test_token_missing(client: TestClient, people: dict[str, str]) -> None:
    assert search_ids(client, "Patient", {"gender:missing": "true"}) == by_name(people, "haugberg", "dnr", "local")
    assert search_ids(client, "Patient", {"gender:missing": "false"}) == by_name(people, "aas", "berg", "bergersen")
    assert_outcome(client.get("/fhir/Patient", params={"gender:missing": "kanskje"}), 400)


def test_token_boolean(client: TestClient, people: dict[str, str]) -> None:
    assert search_ids(client, "Patient", {"active": "true"}) == by_name(people, "local")
    assert search_ids(client, "Patient", {"active": "false"}) == set()


def test_token_text(client: TestClient) -> None:
    pid = create(client, patient())["id"]
    glu = create(client, glucose(f"Patient/{pid}"))["id"]
    hba1c = create(client, glucose(f"Patient/{pid}", 48, unit="mmol/mol", code="4548-4", display="Hemoglobin A1c"))
    for text in ("glukose", "Glukose", "GLUKOSE", "blod"):
        assert search_ids(client, "Observation", {"code:text": text}) == {glu}, text
    assert search_ids(client, "Observation", {"code:text": "a1c"}) == {hba1c["id"]}
    assert search_ids(client, "Observation", {"code:text": "kolesterol"}) == set()


def test_token_text_on_identifier_type(client: TestClient, people: dict[str, str]) -> None:
    assert search_ids(client, "Patient", {"identifier:text": "fødselsnummer"}) == by_name(people, "aas")


def test_identifier_of_type(client: TestClient, people: dict[str, str]) -> None:
    value = f"{V2_0203}|NI|{FNR_1}"
    assert search_ids(client, "Patient", {"identifier:of-type": value}) == by_name(people, "aas")
    # berg has the same kind of number, but no type on the identifier
    assert search_ids(client, "Patient", {"identifier:of-type": f"{V2_0203}|NI|{FNR_2}"}) == set()
    assert search_ids(client, "Patient", {"identifier:of-type": f"{V2_0203}|MR|{FNR_1}"}) == set()
    assert_outcome(client.get("/fhir/Patient", params={"identifier:of-type": f"NI|{FNR_1}"}), 400)


def test_token_code_on_observation(client: TestClient) -> None:
    pid = create(client, patient())["id"]
    glu = create(client, glucose(f"Patient/{pid}"))["id"]
    create(client, glucose(f"Patient/{pid}", 48, unit="mmol/mol", code="4548-4", display="HbA1c"))
    assert search_ids(client, "Observation", {"code": "http://loinc.org|15074-8"}) == {glu}
    assert search_ids(client, "Observation", {"code": "15074-8"}) == {glu}
    assert search_ids(client, "Observation", {"code": "http://snomed.info/sct|15074-8"}) == set()


# -- string --------------------------------------------------------------------------------------


def test_string_is_case_and_accent_insensitive(client: TestClient, people: dict[str, str]) -> None:
    for value in ("as", "AS", "Ås", "ÅS", "ås", "å"):
        assert people["aas"] in search_ids(client, "Patient", {"family": value}), value
    for value in ("bjørn", "BJØRN", "Bjørn", "bjø"):
        assert search_ids(client, "Patient", {"given": value}) == by_name(people, "aas"), value
    assert search_ids(client, "Patient", {"name": "bjørn"}) == by_name(people, "aas")
    assert search_ids(client, "Patient", {"given": "øystein"}) == by_name(people, "haugberg")
    assert search_ids(client, "Patient", {"given": "ase"}) == by_name(people, "berg")


def test_string_default_is_starts_with(client: TestClient, people: dict[str, str]) -> None:
    assert search_ids(client, "Patient", {"family": "berg"}) == by_name(people, "berg", "bergersen")
    assert search_ids(client, "Patient", {"family": "as"}) == by_name(people, "aas")  # not Aasen
    assert search_ids(client, "Patient", {"family": "erg"}) == set()


def test_string_contains(client: TestClient, people: dict[str, str]) -> None:
    assert search_ids(client, "Patient", {"family:contains": "berg"}) == by_name(
        people, "berg", "bergersen", "haugberg"
    )
    assert search_ids(client, "Patient", {"family:contains": "ERS"}) == by_name(people, "bergersen")
    assert search_ids(client, "Patient", {"family:contains": "as"}) == by_name(people, "aas", "local")


def test_string_exact(client: TestClient, people: dict[str, str]) -> None:
    assert search_ids(client, "Patient", {"family:exact": "Berg"}) == by_name(people, "berg")
    assert search_ids(client, "Patient", {"family:exact": "berg"}) == set()
    assert search_ids(client, "Patient", {"family:exact": "Ås"}) == by_name(people, "aas")
    assert search_ids(client, "Patient", {"family:exact": "As"}) == set()
    assert search_ids(client, "Patient", {"family:exact": "Ber"}) == set()


def test_string_address(client: TestClient, people: dict[str, str]) -> None:
    for value in ("tromsø", "TROMSØ", "Troms"):
        assert search_ids(client, "Patient", {"address-city": value}) == by_name(people, "berg"), value
    assert search_ids(client, "Patient", {"address-city": "alesund"}) == by_name(people, "aas")
    assert search_ids(client, "Patient", {"address": "9008"}) == by_name(people, "berg")


def test_string_wildcards_are_literal(client: TestClient, people: dict[str, str]) -> None:
    assert search_ids(client, "Patient", {"family": "%"}) == set()
    assert search_ids(client, "Patient", {"family": "_erg"}) == set()
    assert search_ids(client, "Patient", {"family:contains": "b%g"}) == set()


def test_string_missing(client: TestClient, people: dict[str, str]) -> None:
    assert search_ids(client, "Patient", {"address-city:missing": "false"}) == by_name(people, "aas", "berg")


# -- date ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("1969-11-13", {"aas"}),
        ("eq1969-11-13", {"aas"}),
        ("1969-11", {"aas"}),
        ("1969", {"aas"}),
        ("1969-11-14", set()),
        ("ne1969-11-13", {"berg", "bergersen", "haugberg"}),
        ("lt1979-05-12", {"aas"}),
        ("le1979-05-12", {"aas", "berg"}),
        ("gt1979-05-12", {"bergersen", "haugberg"}),
        ("ge1979-05-12", {"berg", "bergersen", "haugberg"}),
        ("sa1979", {"bergersen", "haugberg"}),
        ("eb1980", {"aas", "berg"}),
        ("eb1980-01-01", {"aas", "berg"}),
        ("gt1979-12-31T23:59:59", {"bergersen", "haugberg"}),
        # a year-precision value is the whole year (R4 range semantics)
        ("1985", {"haugberg"}),
        ("1985-06", set()),
        ("gt1985-06", {"haugberg"}),
        ("lt1985-06", {"aas", "berg", "bergersen", "haugberg"}),
        ("ge1985-01-01", {"haugberg"}),
        ("sa1985-06", set()),
        ("eb1985-06", {"aas", "berg", "bergersen"}),
    ],
)
def test_date_prefixes_on_birthdate(client: TestClient, people: dict[str, str], query: str, expected: set) -> None:
    assert search_ids(client, "Patient", {"birthdate": query}) == by_name(people, *expected)


def test_date_ap(client: TestClient, people: dict[str, str]) -> None:
    near = search_ids(client, "Patient", {"birthdate": "ap1980-01-01"})
    assert people["bergersen"] in near
    assert people["berg"] in near  # eight months off, a long time ago
    assert people["aas"] not in near  # ten years off


def test_date_or_values_and_ranges(client: TestClient, people: dict[str, str]) -> None:
    assert search_ids(client, "Patient", {"birthdate": "1969,1985"}) == by_name(people, "aas", "haugberg")
    ranged = search_ids(client, "Patient", [("birthdate", "ge1970"), ("birthdate", "lt1985")])
    assert ranged == by_name(people, "berg", "bergersen")


def test_date_on_date_times(client: TestClient) -> None:
    pid = create(client, patient())["id"]
    a = create(client, glucose(f"Patient/{pid}", effective="2024-03-05T10:15:00+01:00"))["id"]
    b = create(client, glucose(f"Patient/{pid}", effective="2024-03-05T23:30:00Z"))["id"]  # 6 March in Oslo
    c = create(client, glucose(f"Patient/{pid}", effective="2024-04"))["id"]
    assert search_ids(client, "Observation", {"date": "2024-03-05"}) == {a}
    assert search_ids(client, "Observation", {"date": "2024-03-06"}) == {b}
    assert search_ids(client, "Observation", {"date": "2024-03"}) == {a, b}
    assert search_ids(client, "Observation", {"date": "2024"}) == {a, b, c}
    assert search_ids(client, "Observation", {"date": "2024-04-10"}) == set()  # the month is not within a day
    assert search_ids(client, "Observation", {"date": "gt2024-03-05T10:00:00+01:00"}) == {a, b, c}
    assert search_ids(client, "Observation", {"date": "lt2024-03-05T10:15:00+01:00"}) == set()
    assert search_ids(client, "Observation", {"date": "le2024-03-05T10:15:00+01:00"}) == {a}
    assert search_ids(client, "Observation", {"date": "ge2024-03-05T23:30:00Z"}) == {b, c}
    # a '+' in an offset that arrived as a space (an unencoded query string)
    r = client.get("/fhir/Observation?date=ge2024-03-06T00:30:00+01:00")
    assert r.status_code == 200, r.text
    assert set(ids(r.json())) == {b, c}


def test_date_on_periods_with_an_open_end(client: TestClient) -> None:
    pid = create(client, patient())["id"]

    def encounter(period: dict[str, str]) -> str:
        enc = {
            "resourceType": "Encounter",
            "status": "in-progress",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
            "subject": {"reference": f"Patient/{pid}"},
            "period": period,
        }
        return str(create(client, enc)["id"])

    ongoing = encounter({"start": "2024-01-10"})
    closed = encounter({"start": "2023-05-01", "end": "2023-05-03"})
    started = encounter({"end": "2022-12-31"})

    def found(value: str) -> set[str]:
        return search_ids(client, "Encounter", {"date": value})

    assert found("gt2030-01-01") == {ongoing}
    assert found("lt2024-01-01") == {closed, started}
    assert found("2024") == set()  # an open end is not within 2024
    assert found("2023-05") == {closed}
    assert found("2023-05-02") == set()  # the stay covers more than that day
    assert found("sa2023-12-31") == {ongoing}
    assert found("eb2024-01-01") == {closed, started}
    assert found("eb2023-01-01") == {started}
    assert found("ge2024-02") == {ongoing}
    assert found("le2023-05-02") == {closed, started}
    assert found("ne2023-05") == {ongoing, started}
    assert found("ap2024-01-10") == {ongoing}


# -- reference -----------------------------------------------------------------------------------


@pytest.fixture
def observations(client: TestClient) -> dict[str, str]:
    p1 = create(client, patient(FNR_1, "Ås", "Bjørn"))["id"]
    p2 = create(client, patient(FNR_2, "Berg", "Åse"))["id"]
    o1 = create(client, glucose({"identifier": {"system": FNR, "value": FNR_1}}, 5.4))["id"]
    o2 = create(client, glucose(f"Patient/{p2}", 7.0))["id"]
    o3 = create(client, glucose(None, 3.0))["id"]
    return {"p1": p1, "p2": p2, "o1": o1, "o2": o2, "o3": o3}


def test_reference_by_type_and_id(client: TestClient, observations: dict[str, str]) -> None:
    o = observations
    assert search_ids(client, "Observation", {"subject": f"Patient/{o['p1']}"}) == {o["o1"]}
    assert search_ids(client, "Observation", {"subject": f"Patient/{o['p2']}"}) == {o["o2"]}
    assert search_ids(client, "Observation", {"patient": f"Patient/{o['p2']}"}) == {o["o2"]}
    assert search_ids(client, "Observation", {"subject": f"Group/{o['p2']}"}) == set()
    both = search_ids(client, "Observation", {"subject": f"Patient/{o['p1']},Patient/{o['p2']}"})
    assert both == {o["o1"], o["o2"]}


def test_reference_by_plain_id_and_absolute_url(client: TestClient, observations: dict[str, str]) -> None:
    o = observations
    assert search_ids(client, "Observation", {"subject": o["p2"]}) == {o["o2"]}
    assert search_ids(client, "Observation", {"patient": o["p2"]}) == {o["o2"]}
    assert search_ids(client, "Observation", {"subject:Patient": o["p2"]}) == {o["o2"]}
    assert search_ids(client, "Observation", {"subject": f"{BASE_PATH}/Patient/{o['p2']}"}) == {o["o2"]}


def test_reference_identifier(client: TestClient, observations: dict[str, str]) -> None:
    o = observations
    assert search_ids(client, "Observation", {"subject:identifier": f"{FNR}|{FNR_1}"}) == {o["o1"]}
    assert search_ids(client, "Observation", {"subject:identifier": f"{FNR}|{FNR_2}"}) == set()


def test_reference_missing(client: TestClient, observations: dict[str, str]) -> None:
    o = observations
    assert search_ids(client, "Observation", {"subject:missing": "true"}) == {o["o3"]}
    assert search_ids(client, "Observation", {"subject:missing": "false"}) == {o["o1"], o["o2"]}


def test_reference_to_an_unknown_type_is_400(client: TestClient, observations: dict[str, str]) -> None:
    assert_outcome(client.get("/fhir/Observation", params={"subject": "Pasient/1"}), 400)


# -- chaining ------------------------------------------------------------------------------------


def test_chained_identifier_and_name(client: TestClient, observations: dict[str, str]) -> None:
    o = observations
    assert search_ids(client, "Observation", {"subject:Patient.identifier": f"{FNR}|{FNR_1}"}) == {o["o1"]}
    assert search_ids(client, "Observation", {"subject:Patient.identifier": f"{FNR}|{FNR_2}"}) == {o["o2"]}
    assert search_ids(client, "Observation", {"subject:Patient.family": "ås"}) == {o["o1"]}
    assert search_ids(client, "Observation", {"subject:Patient.name": "ås"}) == {o["o1"], o["o2"]}  # Åse
    assert search_ids(client, "Observation", {"subject:Patient.name": "ÅSE"}) == {o["o2"]}
    assert search_ids(client, "Observation", {"subject:Patient.name": "bjørn,åse"}) == {o["o1"], o["o2"]}
    assert search_ids(client, "Observation", {"patient:Patient.name": "berg"}) == {o["o2"]}
    assert search_ids(client, "Observation", {"subject:Patient.name:exact": "Berg"}) == {o["o2"]}
    assert search_ids(client, "Observation", {"subject:Patient.name": "olsen"}) == set()


def test_chain_skips_deleted_targets(client: TestClient, observations: dict[str, str]) -> None:
    o = observations
    assert client.delete(f"/fhir/Patient/{o['p2']}").status_code in (200, 204)
    assert search_ids(client, "Observation", {"subject:Patient.name": "berg"}) == set()


def test_chain_on_an_unknown_target_parameter_is_400(client: TestClient, observations: dict[str, str]) -> None:
    found = assert_outcome(client.get("/fhir/Observation", params={"subject:Patient.skostorrelse": "42"}), 400)
    assert "skostorrelse" in str(found)


# -- quantity and number -------------------------------------------------------------------------


@pytest.fixture
def values(client: TestClient) -> dict[str, str]:
    pid = create(client, patient())["id"]
    out = {}
    for key, value, unit in (
        ("5.4", 5.4, "mmol/L"),
        ("5.44", 5.44, "mmol/L"),
        ("5.46", 5.46, "mmol/L"),
        ("7", 7.0, "mmol/L"),
        ("3", 3.0, "mmol/L"),
        ("100mg", 100, "mg/dL"),
    ):
        out[key] = create(client, glucose(f"Patient/{pid}", value, unit=unit))["id"]
    return out


def _q(client: TestClient, value: str) -> set[str]:
    return search_ids(client, "Observation", {"value-quantity": value})


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("5.4", {"5.4", "5.44"}),  # implicit precision: [5.35, 5.45)
        ("5.40", {"5.4"}),
        ("5", {"5.4", "5.44", "5.46"}),  # [4.5, 5.5)
        ("eq7", {"7"}),
        ("ne5.4", {"5.46", "7", "3", "100mg"}),
        ("gt5", {"5.4", "5.44", "5.46", "7", "100mg"}),
        ("gt5|http://unitsofmeasure.org|mmol/L", {"5.4", "5.44", "5.46", "7"}),
        ("lt5|http://unitsofmeasure.org|mmol/L", {"3"}),
        ("ge7|http://unitsofmeasure.org|mmol/L", {"7"}),
        ("le5.44||mmol/L", {"3", "5.4", "5.44"}),
        ("gt5||mg/dL", {"100mg"}),
        ("gt5|http://unitsofmeasure.org|mg/dL", {"100mg"}),
        ("gt5|http://snomed.info/sct|mmol/L", set()),
        ("ap7", {"7"}),
        ("5.4|http://unitsofmeasure.org|mmol/L", {"5.4", "5.44"}),
        ("5.4,7", {"5.4", "5.44", "7"}),
    ],
)
def test_quantity(client: TestClient, values: dict[str, str], query: str, expected: set[str]) -> None:
    assert _q(client, query) == {values[k] for k in expected}


def test_quantity_and_parameters(client: TestClient, values: dict[str, str]) -> None:
    got = search_ids(client, "Observation", [("value-quantity", "gt5"), ("value-quantity", f"lt6|{UCUM}|mmol/L")])
    assert got == {values["5.4"], values["5.44"], values["5.46"]}


def test_number(client: TestClient) -> None:
    pid = create(client, patient())["id"]

    def risk(p: float) -> str:
        res = {
            "resourceType": "RiskAssessment",
            "status": "final",
            "subject": {"reference": f"Patient/{pid}"},
            "prediction": [{"probabilityDecimal": p}],
        }
        return str(create(client, res)["id"])

    low, high, mid = risk(0.25), risk(0.8), risk(0.5)

    def found(value: str) -> set[str]:
        return search_ids(client, "RiskAssessment", {"probability": value})

    assert found("0.25") == {low}
    assert found("0.8") == {high}
    assert found("gt0.5") == {high}
    assert found("ge0.5") == {mid, high}
    assert found("lt0.5") == {low}
    assert found("le0.5") == {low, mid}
    assert found("ne0.5") == {low, high}
    assert found("0.4") == set()
    assert found("0.1,0.8") == {high}
    assert found("0.3,0.5") == {low, mid}  # 0.3 is [0.25, 0.35)
    assert_outcome(client.get("/fhir/RiskAssessment", params={"probability": "abc"}), 400)


# -- common parameters ---------------------------------------------------------------------------


def test_id(client: TestClient, people: dict[str, str]) -> None:
    assert search_ids(client, "Patient", {"_id": people["berg"]}) == by_name(people, "berg")
    both = search_ids(client, "Patient", {"_id": f"{people['berg']},{people['aas']}"})
    assert both == by_name(people, "aas", "berg")
    assert search_ids(client, "Patient", {"_id": "finnes-ikke"}) == set()


def test_last_updated(client: TestClient) -> None:
    first = create(client, patient(FNR_1))
    second = create(client, patient(FNR_2))
    stamp = first["meta"]["lastUpdated"]
    assert search_ids(client, "Patient", {"_lastUpdated": f"gt{stamp}"}) == {second["id"]}
    assert search_ids(client, "Patient", {"_lastUpdated": f"le{stamp}"}) == {first["id"]}
    assert search_ids(client, "Patient", {"_lastUpdated": "gt2020-01-01"}) == {first["id"], second["id"]}
    assert search_ids(client, "Patient", {"_lastUpdated": "lt2020-01-01"}) == set()
    # an update moves the resource forward
    client.put(f"/fhir/Patient/{first['id']}", json={**first, "gender": "female"})
    assert search_ids(client, "Patient", {"_lastUpdated": f"gt{second['meta']['lastUpdated']}"}) == {first["id"]}


def test_tag_profile_security(client: TestClient) -> None:
    tagged = patient(
        FNR_1,
        meta={
            "tag": [{"system": "http://kjerne.test/kilde", "code": "helseplattformen"}],
            "profile": ["http://hl7.no/fhir/StructureDefinition/no-basis-Patient"],
            "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}],
        },
    )
    a = create(client, tagged)["id"]
    create(client, patient(FNR_2))
    assert search_ids(client, "Patient", {"_tag": "http://kjerne.test/kilde|helseplattformen"}) == {a}
    assert search_ids(client, "Patient", {"_tag": "helseplattformen"}) == {a}
    assert search_ids(client, "Patient", {"_tag": "http://kjerne.test/kilde|dips"}) == set()
    assert search_ids(client, "Patient", {"_profile": "http://hl7.no/fhir/StructureDefinition/no-basis-Patient"}) == {a}
    assert search_ids(client, "Patient", {"_profile": "http://hl7.no/fhir/StructureDefinition/no-basis"}) == set()
    conf = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality|R"
    assert search_ids(client, "Patient", {"_security": conf}) == {a}
    assert (
        search_ids(client, "Patient", {"_security": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality|N"})
        == set()
    )


def _fresh(client: TestClient, res: dict[str, Any]) -> str:
    return str(create(client, res)["id"])


def test_empty_parameter_value_is_ignored(client: TestClient) -> None:
    a = _fresh(client, patient(FNR_1))
    assert search_ids(client, "Patient", {"family": ""}) == {a}
