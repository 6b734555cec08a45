"""Bad requests get a 4xx with an OperationOutcome, store nothing, and never cause a 500."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from api_helpers import (
    BASE_PATH,
    FNR,
    FNR_1,
    FNR_BAD,
    FORM,
    ORGNR,
    assert_outcome,
    count,
    create,
    expressions,
    glucose,
    organization,
    patient,
    search_ids,
)
from sqlalchemy import Engine
from starlette.testclient import TestClient

from kjerne.access.context import UNRESTRICTED
from kjerne.app import create_app
from kjerne.config import Settings
from kjerne.store.repository import Repository

LIMIT = 2048


def assert_empty(client: TestClient) -> None:
    for res_type in ("Patient", "Observation", "Organization"):
        assert count(client, res_type) == 0, res_type


@pytest.fixture
def small_client(engine: Engine, db_url: str) -> Iterator[TestClient]:
    """An app whose request bodies may be at most LIMIT bytes."""
    settings = Settings(db_url=db_url, base_url="http://testserver", max_body_bytes=LIMIT)
    app = create_app(
        settings,
        engine=engine,
        repository_factory=lambda request: Repository(engine, UNRESTRICTED, base_url=BASE_PATH),
    )
    with TestClient(app, raise_server_exceptions=False) as c:
        c.headers["content-type"] = "application/fhir+json"
        yield c


# -- the body itself -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        '{"resourceType": "Patient", "name": [{"family": "Ås"}]'.encode(),  # truncated
        b"{'resourceType': 'Patient'}",
        b'{"resourceType": "Patient",}',
        b"\xff\xfe{}",
        b"null",
        b'["resourceType", "Patient"]',
        b'"Patient"',
    ],
)
def test_malformed_json_is_400(client: TestClient, body: bytes) -> None:
    for method, url in (("POST", "/fhir/Patient"), ("PUT", "/fhir/Patient/p1"), ("POST", "/fhir")):
        found = assert_outcome(client.request(method, url, content=body), 400)
        assert found[0]["severity"] in ("error", "fatal")
    assert_empty(client)


@pytest.mark.parametrize("body", [b"", b"   ", b"\n"])
def test_empty_body_is_400(client: TestClient, body: bytes) -> None:
    assert_outcome(client.post("/fhir/Patient", content=body), 400)
    assert_outcome(client.put("/fhir/Patient/p1", content=body), 400)
    assert_outcome(client.post("/fhir", content=body), 400)
    assert_empty(client)


@pytest.mark.parametrize("media_type", ["text/plain", "application/xml", "application/fhir+xml", "multipart/form-data"])
def test_wrong_media_type_is_415(client: TestClient, media_type: str) -> None:
    body = json.dumps(patient()).encode()
    assert_outcome(client.post("/fhir/Patient", content=body, headers={"content-type": media_type}), 415)
    assert_outcome(client.put("/fhir/Patient/p1", content=body, headers={"content-type": media_type}), 415)
    assert_outcome(client.post("/fhir", content=body, headers={"content-type": media_type}), 415)
    assert_empty(client)


def test_missing_media_type_is_415(client: TestClient) -> None:
    body = json.dumps(patient()).encode()
    r = client.post("/fhir/Patient", content=body, headers={"content-type": ""})
    assert_outcome(r, 415)
    assert_empty(client)


def test_json_media_type_variants_are_accepted(client: TestClient) -> None:
    body = json.dumps(patient()).encode()
    for media_type in (
        "application/json",
        "application/fhir+json; charset=utf-8",
        "application/fhir+json;fhirVersion=4.0",
    ):
        r = client.post("/fhir/Patient", content=body, headers={"content-type": media_type})
        assert r.status_code == 201, (media_type, r.text)


def test_payload_over_the_limit_is_413(small_client: TestClient) -> None:
    big = patient(FNR_1, "Nordmann", ["Kari"] * 400)
    assert len(json.dumps(big)) > LIMIT
    found = assert_outcome(small_client.post("/fhir/Patient", json=big), 413)
    assert found[0]["code"] in ("too-costly", "too-long")
    assert_outcome(small_client.put("/fhir/Patient/stor", json={**big, "id": "stor"}), 413)
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": big, "request": {"method": "POST", "url": "Patient"}}],
    }
    assert_outcome(small_client.post("/fhir", json=bundle), 413)
    assert_empty(small_client)
    # just under the limit still works
    assert small_client.post("/fhir/Patient", json=patient()).status_code == 201


def test_payload_over_the_limit_without_content_length_is_413(small_client: TestClient) -> None:
    big = json.dumps(patient(FNR_1, "Nordmann", ["Kari"] * 400)).encode()

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(big), 256):
            yield big[i : i + 256]

    r = small_client.post("/fhir/Patient", content=chunks())
    assert "content-length" not in {k.lower() for k in r.request.headers}
    assert_outcome(r, 413)
    assert_empty(small_client)


def test_search_form_over_the_limit_is_413(small_client: TestClient) -> None:
    form = "family=" + "a" * (LIMIT + 10)
    assert_outcome(small_client.post("/fhir/Patient/_search", content=form, headers=FORM), 413)


# -- the resource ---------------------------------------------------------------------------------


def test_unknown_resource_type(client: TestClient) -> None:
    assert_outcome(client.post("/fhir/Pasient", json={"resourceType": "Pasient"}), (400, 404))
    assert_outcome(client.put("/fhir/Pasient/1", json={"resourceType": "Pasient", "id": "1"}), (400, 404))
    assert_outcome(client.post("/fhir/Patient", json={"resourceType": "Pasient"}), 400)
    assert_empty(client)


def test_missing_resource_type(client: TestClient) -> None:
    body = {k: v for k, v in patient().items() if k != "resourceType"}
    assert_outcome(client.post("/fhir/Patient", json=body), 400)
    assert_empty(client)


def test_resource_type_must_match_the_url(client: TestClient) -> None:
    obs = glucose(None)
    found = assert_outcome(client.post("/fhir/Patient", json=obs), 400)
    assert "Observation" in str(found)
    assert_outcome(client.put("/fhir/Patient/p1", json={**obs, "id": "p1"}), 400)
    assert_outcome(client.put(f"/fhir/Patient?identifier={FNR}|{FNR_1}", json=obs), 400)
    assert_empty(client)


def _invalid(client: TestClient, res: dict[str, Any]) -> list[dict[str, Any]]:
    found = assert_outcome(client.post(f"/fhir/{res['resourceType']}", json=res), (400, 422))
    assert all(i["severity"] in ("error", "fatal", "warning", "information") for i in found)
    return found


def test_unknown_element(client: TestClient) -> None:
    found = _invalid(client, patient(skostorrelse=42))
    assert "Patient.skostorrelse" in expressions(found)
    found = _invalid(client, patient(name=[{"family": "Ås", "fornavn": "Bjørn"}]))
    assert "Patient.name[0].fornavn" in expressions(found)
    assert_empty(client)


@pytest.mark.parametrize(
    ("field", "value", "where"),
    [
        ("birthDate", 19691113, "Patient.birthDate"),
        ("active", "ja", "Patient.active"),
        ("gender", ["male"], "Patient.gender"),
        ("name", {"family": "Ås"}, "Patient.name"),
        ("identifier", [{"system": FNR, "value": 13116900216}], "Patient.identifier[0].value"),
        ("multipleBirthInteger", 1.5, "Patient.multipleBirthInteger"),
        ("birthDate", "13.11.1969", "Patient.birthDate"),
        ("gender", "", "Patient.gender"),
    ],
)
def test_wrong_datatypes(client: TestClient, field: str, value: Any, where: str) -> None:
    res = patient()
    res[field] = value
    found = _invalid(client, res)
    assert where in expressions(found), found
    assert_empty(client)


@pytest.mark.parametrize(
    ("res", "where"),
    [
        (patient(birth_date="2023-02-30"), "Patient.birthDate"),
        (patient(birth_date="2023-13-01"), "Patient.birthDate"),
        (patient(birth_date="2023-02-29"), "Patient.birthDate"),
        (glucose(None, effective="2023-02-30T10:00:00+01:00"), "Observation.effectiveDateTime"),
        (glucose(None, effective="2024-03-05T25:00:00Z"), "Observation.effectiveDateTime"),
    ],
)
def test_impossible_dates(client: TestClient, res: dict[str, Any], where: str) -> None:
    found = _invalid(client, res)
    assert where in expressions(found), found
    assert_empty(client)


def test_leap_day_is_a_real_date(client: TestClient) -> None:
    assert client.post("/fhir/Patient", json=patient(birth_date="2024-02-29")).status_code == 201


def test_invalid_fodselsnummer(client: TestClient) -> None:
    found = _invalid(client, patient(FNR_BAD))
    assert "Patient.identifier[0].value" in expressions(found)
    assert FNR_BAD in str(found)
    # also where a person is only named by identifier: no Patient may be created for it
    found = _invalid(client, glucose({"identifier": {"system": FNR, "value": FNR_BAD}}))
    assert any(e.startswith("Observation.subject") for e in expressions(found)), found
    assert_empty(client)


def test_invalid_organisation_number(client: TestClient) -> None:
    found = _invalid(client, organization("987654324"))
    assert "Organization.identifier[0].value" in expressions(found)
    assert_empty(client)
    assert client.post("/fhir/Organization", json=organization("974760673")).status_code == 201
    assert search_ids(client, "Organization", {"identifier": f"{ORGNR}|974760673"})


def test_invalid_update_keeps_the_stored_version(client: TestClient) -> None:
    created = create(client, patient(birth_date="1969-11-13"))
    r = client.put(f"/fhir/Patient/{created['id']}", json={**created, "birthDate": "1969-02-30"})
    found = assert_outcome(r, (400, 422))
    assert "Patient.birthDate" in expressions(found)
    current = client.get(f"/fhir/Patient/{created['id']}")
    assert current.headers["etag"] == 'W/"1"'
    assert current.json()["birthDate"] == "1969-11-13"


def test_invalid_id_in_url(client: TestClient) -> None:
    for bad in ("ugyldig_id!", "a" * 65, "å"):
        r = client.put(f"/fhir/Patient/{bad}", json={**patient(), "id": bad})
        assert_outcome(r, 400)
    assert_empty(client)


def test_malformed_if_match_is_400(client: TestClient) -> None:
    created = create(client, patient())
    r = client.put(f"/fhir/Patient/{created['id']}", json=created, headers={"If-Match": "versjon-1"})
    assert_outcome(r, (400, 412))


def test_invalid_resource_in_a_batch_does_not_fail_the_request(client: TestClient) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"resource": patient(FNR_BAD), "request": {"method": "POST", "url": "Patient"}}],
    }
    r = client.post("/fhir", json=bundle)
    assert r.status_code == 200, r.text
    assert r.json()["entry"][0]["response"]["status"].startswith("400")
    assert_empty(client)


# -- values the database must cope with ------------------------------------------------------------


def test_long_values_are_stored(client: TestClient) -> None:
    """FHIR strings may be long; index columns must not turn them into a server error."""
    long_value = "x" * 300
    res = patient(None, identifier=[{"system": "http://kjerne.test/lang-id", "value": long_value}])
    r = client.post("/fhir/Patient", json=res)
    assert r.status_code == 201, r.text
    assert search_ids(client, "Patient", {"identifier": f"http://kjerne.test/lang-id|{long_value}"}) == {r.json()["id"]}
    obs = glucose(None, unit="millimoles per litre of capillary whole blood, measured at the point of care")
    r = client.post("/fhir/Observation", json=obs)
    assert r.status_code == 201, r.text
    coded = glucose(None, code="c" * 300)
    r = client.post("/fhir/Observation", json=coded)
    assert r.status_code == 201, r.text


def _cursor(payload: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "url",
    [
        "/fhir/Patient?name=%00",
        "/fhir/Patient?_id=%00",
        "/fhir/Patient?identifier=a%00b",
        "/fhir/Patient/%00",
        "/fhir/Patient/a%00b/_history",
        "/fhir/Patient/p1/_history/99999999999999999999",
        "/fhir/Observation?value-quantity=1e400",
        "/fhir/Observation?value-quantity=gt1e400|http://unitsofmeasure.org|mmol/L",
        "/fhir/RiskAssessment?probability=1e400",
        "/fhir/Patient?_count=99999999999999999999999",
        "/fhir/Patient?birthdate=0000",
        "/fhir/Patient?birthdate=9999-12-31",
        "/fhir/Patient?birthdate=gt2024-01-01T10:00:00%2B15:00",
        "/fhir/Patient?_lastUpdated=ap0001",
        "/fhir/Patient/_history?_since=0000-01-01",
        f"/fhir/Patient/_history?_cursor={_cursor([[1], 0, 0, 0, 0])}",
        f"/fhir/Patient/_history?_cursor={_cursor([['x', 'y', 'z'], 0, 0, 0, 0])}",
        f"/fhir/Patient?_cursor={_cursor([['x'], 1, 1, 0, 0])}&_sort=birthdate",
        f"/fhir/Patient?_cursor={_cursor([[], 'x', 1, 0, 0])}",
        f"/fhir/Patient?_cursor={_cursor({'a': 1})}",
        "/fhir/Patient?_cursor=%%%",
    ],
)
def test_odd_requests_never_cause_a_500(client: TestClient, url: str) -> None:
    create(client, patient(rid=None))
    r = client.get(url)
    assert r.status_code < 500, (r.status_code, r.text)
    if r.status_code >= 400:
        assert_outcome(r, r.status_code)


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
def test_odd_ids_in_writes_never_cause_a_500(client: TestClient, method: str) -> None:
    r = client.request(method, "/fhir/Patient/%00", json={**patient(), "id": "\x00"} if method == "PUT" else None)
    assert r.status_code < 500, (r.status_code, r.text)
    assert_empty(client)


def _tx(kind: str, *entries: Any) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


@pytest.mark.parametrize(
    "body",
    [
        {"resourceType": "Bundle", "type": "transaction", "entry": "ikke en liste"},
        {"resourceType": "Bundle"},
        _tx("transaction", None),
        _tx("transaction", {"request": {"method": "POST", "url": "Patient"}}),
        _tx("transaction", {"request": {"method": "PATCH", "url": "Patient/1"}, "resource": patient()}),
        _tx("transaction", {"request": {"method": "GET", "url": "Pasient/1"}}),
        _tx("transaction", {"request": {"method": "GET", "url": "Patient?skostorrelse=1"}}),
        _tx("transaction", {"request": {"method": "DELETE", "url": "Patient"}}),
        _tx("transaction", {"request": {"method": "POST", "url": "Patient"}, "resource": "Patient"}),
        _tx("transaction", {"request": {"method": "POST", "url": 7}, "resource": patient()}),
        _tx("transaction", {"request": {"method": "PUT", "url": "Patient/a/b/c"}, "resource": patient()}),
        _tx("batch", None),
        _tx("batch", {"request": {"method": "GET", "url": "Patient/%00"}}),
        _tx("batch", {"request": {"method": "PUT", "url": "Patient"}, "resource": patient()}),
        _tx("batch", {"request": {"method": "DELETE", "url": "Patient?identifier=x"}}),
        _tx("batch", {"request": {"method": "POST", "url": "Patient"}, "resource": {"resourceType": 1}}),
        _tx("batch", {"request": {"method": "POST", "url": "Patient"}}),
    ],
)
def test_odd_bundles_never_cause_a_500(client: TestClient, body: Any) -> None:
    r = client.post("/fhir", json=body)
    assert r.status_code < 500, (r.status_code, r.text)
    if r.status_code >= 400:
        assert_outcome(r, r.status_code)
    else:
        for entry in r.json().get("entry", []):
            assert not entry["response"]["status"].startswith("5"), entry
    assert_empty(client)
