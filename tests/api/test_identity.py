"""Persons are known by national identity number: identifier-only references resolve to the one Patient
with that number, which is created when data first arrives for an unknown person."""

from __future__ import annotations

from typing import Any

from api_helpers import (
    DNR,
    DNR_1,
    FNR,
    FNR_1,
    FNR_2,
    HPR,
    HPR_1,
    count,
    create,
    glucose,
    ids,
    matches,
    patient,
    search,
    search_ids,
)
from starlette.testclient import TestClient

URI_FNR = "http://hl7.no/fhir/NamingSystem/FNR"


def by_fnr(value: str = FNR_1, system: str = FNR) -> dict[str, Any]:
    return {"identifier": {"system": system, "value": value}}


def patients_with(client: TestClient, value: str, system: str = FNR) -> list[dict[str, Any]]:
    return matches(search(client, "Patient", {"identifier": f"{system}|{value}"}))


def test_identifier_reference_resolves_to_the_existing_patient(client: TestClient) -> None:
    pid = create(client, patient(FNR_1))["id"]
    obs = create(client, glucose(by_fnr()))
    assert obs["subject"]["reference"] == f"Patient/{pid}"
    assert obs["subject"]["identifier"] == {"system": FNR, "value": FNR_1}  # kept
    stored = client.get(f"/fhir/Observation/{obs['id']}").json()
    assert stored["subject"]["reference"] == f"Patient/{pid}"
    assert count(client, "Patient") == 1
    # the resolved reference is indexed and puts the observation in the patient's compartment
    assert search_ids(client, "Observation", {"subject": f"Patient/{pid}"}) == {obs["id"]}
    assert search_ids(client, "Observation", {"patient": pid}) == {obs["id"]}


def test_unknown_person_gets_exactly_one_new_patient(client: TestClient) -> None:
    first = create(client, glucose(by_fnr(FNR_2)))
    found = patients_with(client, FNR_2)
    assert len(found) == 1
    pid = found[0]["id"]
    assert first["subject"]["reference"] == f"Patient/{pid}"
    assert found[0]["identifier"] == [{"system": FNR, "value": FNR_2}]
    second = create(client, glucose(by_fnr(FNR_2), 6.0))
    assert second["subject"]["reference"] == f"Patient/{pid}"
    assert count(client, "Patient") == 1
    assert search_ids(client, "Observation", {"subject": f"Patient/{pid}"}) == {first["id"], second["id"]}


def test_different_people_get_different_patients(client: TestClient) -> None:
    a = create(client, glucose(by_fnr(FNR_1)))["subject"]["reference"]
    b = create(client, glucose(by_fnr(FNR_2)))["subject"]["reference"]
    assert a != b
    assert count(client, "Patient") == 2


def test_d_number_person(client: TestClient) -> None:
    obs = create(client, glucose(by_fnr(DNR_1, DNR)))
    found = patients_with(client, DNR_1, DNR)
    assert len(found) == 1
    assert obs["subject"]["reference"] == f"Patient/{found[0]['id']}"
    assert patients_with(client, DNR_1, FNR) == []


def test_fnr_naming_system_uri_is_the_same_person(client: TestClient) -> None:
    pid = create(client, patient(FNR_1))["id"]
    obs = create(client, glucose(by_fnr(FNR_1, URI_FNR)))
    assert obs["subject"]["reference"] == f"Patient/{pid}"
    assert count(client, "Patient") == 1


def test_explicit_reference_is_left_alone(client: TestClient) -> None:
    pid = create(client, patient(FNR_1))["id"]
    other = create(client, patient(FNR_2))["id"]
    subject = {"reference": f"Patient/{other}", "identifier": {"system": FNR, "value": FNR_1}}
    obs = create(client, glucose(subject))
    assert obs["subject"]["reference"] == f"Patient/{other}"
    assert pid != other
    assert count(client, "Patient") == 2


def test_non_person_identifiers_are_not_resolved_to_patients(client: TestClient) -> None:
    obs = glucose(by_fnr())
    obs["performer"] = [{"identifier": {"system": HPR, "value": HPR_1}}]
    created = create(client, obs)
    assert created["performer"] == [{"identifier": {"system": HPR, "value": HPR_1}}]
    assert count(client, "Patient") == 1
    assert count(client, "Practitioner") == 0


def test_update_resolves_too(client: TestClient) -> None:
    obs = create(client, glucose(None))
    r = client.put(f"/fhir/Observation/{obs['id']}", json={**obs, "subject": by_fnr(FNR_2)})
    assert r.status_code == 200, r.text
    (p,) = patients_with(client, FNR_2)
    assert r.json()["subject"]["reference"] == f"Patient/{p['id']}"
    # sending the same identifier-only body again changes nothing
    again = client.put(f"/fhir/Observation/{obs['id']}", json={**obs, "subject": by_fnr(FNR_2)})
    assert again.headers["etag"] == r.headers["etag"]
    assert count(client, "Patient") == 1


def _tx(*resources: dict[str, Any], kind: str = "transaction") -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": kind,
        "entry": [{"resource": r, "request": {"method": "POST", "url": r["resourceType"]}} for r in resources],
    }


def _subjects(client: TestClient) -> set[str]:
    return {o["subject"]["reference"] for o in matches(search(client, "Observation", {"_count": "100"}))}


def test_transaction_with_several_resources_for_one_new_person(client: TestClient) -> None:
    condition = {
        "resourceType": "Condition",
        "subject": by_fnr(FNR_2),
        "code": {"text": "Diabetes type 2"},
    }
    r = client.post("/fhir", json=_tx(glucose(by_fnr(FNR_2)), glucose(by_fnr(FNR_2), 6.3), condition))
    assert r.status_code == 200, r.text
    found = patients_with(client, FNR_2)
    assert len(found) == 1
    assert count(client, "Patient") == 1
    pid = found[0]["id"]
    assert _subjects(client) == {f"Patient/{pid}"}
    cond = matches(search(client, "Condition"))[0]
    assert cond["subject"]["reference"] == f"Patient/{pid}"


def test_transaction_with_the_patient_and_its_data(client: TestClient) -> None:
    r = client.post("/fhir", json=_tx(patient(FNR_2, "Berg", "Åse"), glucose(by_fnr(FNR_2))))
    assert r.status_code == 200, r.text
    found = patients_with(client, FNR_2)
    assert len(found) == 1
    assert found[0]["name"][0]["family"] == "Berg"
    assert _subjects(client) == {f"Patient/{found[0]['id']}"}


def test_transaction_with_data_before_its_patient(client: TestClient) -> None:
    """Entry order must not matter: the bundle's own Patient is the person, not a second one."""
    r = client.post("/fhir", json=_tx(glucose(by_fnr(FNR_2)), patient(FNR_2, "Berg", "Åse")))
    assert r.status_code == 200, r.text
    found = patients_with(client, FNR_2)
    assert len(found) == 1, [p["id"] for p in found]
    assert _subjects(client) == {f"Patient/{found[0]['id']}"}


def test_failed_transaction_creates_no_patient(client: TestClient) -> None:
    bad = glucose(by_fnr(FNR_2))
    bad["status"] = "ferdig"  # not a code
    bad["effectiveDateTime"] = "2024-02-30"
    r = client.post("/fhir", json=_tx(glucose(by_fnr(FNR_2)), bad))
    assert 400 <= r.status_code < 500, r.text
    assert count(client, "Patient") == 0
    assert count(client, "Observation") == 0


def test_batch_with_several_resources_for_one_new_person(client: TestClient) -> None:
    r = client.post("/fhir", json=_tx(glucose(by_fnr(FNR_1)), glucose(by_fnr(FNR_1), 4.9), kind="batch"))
    assert r.status_code == 200, r.text
    assert [e["response"]["status"][:3] for e in r.json()["entry"]] == ["201", "201"]
    assert len(patients_with(client, FNR_1)) == 1
    assert len(_subjects(client)) == 1


def test_resolved_patient_is_found_by_identifier_and_by_chain(client: TestClient) -> None:
    obs = create(client, glucose(by_fnr(FNR_1)))
    (p,) = patients_with(client, FNR_1)
    assert ids(search(client, "Patient", {"identifier": FNR_1})) == [p["id"]]
    assert search_ids(client, "Observation", {"subject:Patient.identifier": f"{FNR}|{FNR_1}"}) == {obs["id"]}
    assert search_ids(client, "Observation", {"subject:identifier": f"{FNR}|{FNR_1}"}) == {obs["id"]}
