"""Måledata through /ingest/maledata and the FHIR API: the batch contract, plausibility, redelivery and
sharing between the organisations that follow a patient, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from starlette.testclient import TestClient

from kjerne.api.auth import dev_issuer
from kjerne.app import create_app
from kjerne.config import Settings
from kjerne.fhir.identifiers import OID_FNR, OID_ORGNR
from kjerne.store.schema import resource

FNR = "13116900216"
MUNICIPALITY = "974760673"  # home-care service delivering the measurements
HOSPITAL, GP = "987654325", "997203194"
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


def obs(
    code: str,
    value: float,
    unit: str,
    *,
    ident: str | None = None,
    when: dt.datetime | None = None,
    snomed: str | None = None,
) -> dict[str, Any]:
    codings = [{"system": "http://loinc.org", "code": code}]
    if snomed:
        codings.append({"system": "http://snomed.info/sct", "code": snomed})
    res: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}
                ]
            }
        ],
        "code": {"coding": codings},
        "subject": {"identifier": {"system": OID_FNR, "value": FNR}},
        "effectiveDateTime": (when or NOW - dt.timedelta(hours=1)).isoformat(),
        "performer": [{"identifier": {"system": OID_ORGNR, "value": MUNICIPALITY}, "display": "Hjemmetjenesten"}],
        "device": {"display": "Pulsoksymeter PX-200"},
        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
    }
    if ident:
        res["identifier"] = [{"system": "urn:kjerne:test:measurement", "value": ident}]
    return res


def bundle(*resources: dict[str, Any], kind: str = "batch", full_urls: bool = True) -> dict[str, Any]:
    entries = []
    for i, r in enumerate(resources):
        e: dict[str, Any] = {"resource": r, "request": {"method": "POST", "url": "Observation"}}
        if full_urls:
            e["fullUrl"] = f"urn:uuid:00000000-0000-4000-8000-{i:012d}"
        entries.append(e)
    return {"resourceType": "Bundle", "type": kind, "entry": entries}


@pytest.fixture
def api(engine: Engine, db_url: str, tmp_path: Path) -> Iterator[tuple[TestClient, Any, Engine]]:
    settings = Settings(db_url=db_url, dev=True, var_dir=tmp_path, base_url="http://testserver")
    with TestClient(create_app(settings, engine=engine)) as client:
        yield client, dev_issuer(settings), engine


def upload(client: TestClient, dev: Any, body: dict[str, Any]) -> Any:
    tok = dev.system_token(org=MUNICIPALITY, scope="system/Observation.write")
    return client.post("/ingest/maledata", json=body, headers={"authorization": f"Bearer {tok}"})


def stored(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(
            select(func.count()).select_from(resource).where(resource.c.res_type == "Observation")
        ).scalar_one()


def test_batch_contract_bad_entries_fail_alone_in_order(api) -> None:
    client, dev, engine = api
    body = bundle(
        obs("8867-4", 72, "/min"),
        obs("2708-6", 104, "%"),  # SpO2 above 100 %
        obs("8867-4", -5, "/min"),  # negative pulse
        obs("2708-6", 96, "kg"),  # unit does not fit the code
        obs("8867-4", 70, "/min", when=NOW + dt.timedelta(days=2)),  # in the future
        obs("2708-6", 97, "%"),
    )
    r = upload(client, dev, body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["type"] == "batch-response"
    statuses = [e["response"]["status"][:3] for e in out["entry"]]
    assert statuses == ["201", "422", "422", "422", "422", "201"]
    assert [e["fullUrl"] for e in out["entry"]] == [e["fullUrl"] for e in body["entry"]]
    for e in out["entry"][1:5]:
        issue = e["response"]["outcome"]["issue"][0]
        assert issue["expression"] and issue["diagnostics"]
    assert stored(engine) == 2


def test_after_a_failed_first_pass_the_person_is_one_patient_and_nothing_is_left_over(api) -> None:
    # The first pass writes everything at once and creates the Patient; the bad last entry undoes it
    # all, and the second pass, entry by entry, creates the Patient again.
    client, dev, engine = api
    out = upload(
        client, dev, bundle(obs("8867-4", 72, "/min"), obs("8867-4", 71, "/min"), obs("2708-6", 101, "%"))
    ).json()
    assert [e["response"]["status"][:3] for e in out["entry"]] == ["201", "201", "422"]
    with engine.connect() as conn:
        rows = conn.execute(select(resource.c.res_type, resource.c.res_id, resource.c.patient)).all()
    patients = [r.res_id for r in rows if r.res_type == "Patient"]
    observations = [r for r in rows if r.res_type == "Observation"]
    assert len(patients) == 1 and len(observations) == 2
    assert {r.patient for r in observations} == {patients[0]}


def test_wrong_bundle_type_or_missing_full_url_gets_400_and_stores_nothing(api) -> None:
    client, dev, engine = api
    r = upload(client, dev, bundle(obs("8867-4", 72, "/min"), kind="transaction"))
    assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"
    r = upload(client, dev, bundle(obs("8867-4", 72, "/min"), full_urls=False))
    assert r.status_code == 400
    assert "fullUrl" in r.text
    assert stored(engine) == 0


def test_redelivery_with_the_same_identifier_creates_no_duplicate(api) -> None:
    client, dev, engine = api
    body = bundle(obs("8867-4", 72, "/min", ident="m-1"), obs("8867-4", 75, "/min", ident="m-2"))
    assert [e["response"]["status"][:3] for e in upload(client, dev, body).json()["entry"]] == ["201", "201"]
    again = upload(client, dev, body).json()
    assert [e["response"]["status"][:3] for e in again["entry"]] == ["200", "200"]
    assert stored(engine) == 2


def test_the_same_identifier_twice_in_one_batch_is_stored_once(api) -> None:
    client, dev, engine = api
    body = bundle(obs("8867-4", 72, "/min", ident="m-1"), obs("8867-4", 72, "/min", ident="m-1"))
    out = upload(client, dev, body).json()
    assert [e["response"]["status"][:3] for e in out["entry"]] == ["201", "200"]
    assert out["entry"][0]["response"]["location"] == out["entry"][1]["response"]["location"]
    assert stored(engine) == 1


def test_a_bad_entry_in_a_batch_with_identifiers_leaves_the_others_and_their_matches(api) -> None:
    client, dev, engine = api
    body = bundle(
        obs("8867-4", 72, "/min", ident="m-1"),
        obs("2708-6", 104, "%", ident="m-2"),  # refused
        obs("8867-4", 72, "/min", ident="m-1"),
        obs("2708-6", 97, "%", ident="m-3"),
    )
    out = upload(client, dev, body).json()
    assert [e["response"]["status"][:3] for e in out["entry"]] == ["201", "422", "200", "201"]
    assert stored(engine) == 2
    again = upload(client, dev, bundle(obs("2708-6", 98, "%", ident="m-2"))).json()
    assert again["entry"][0]["response"]["status"][:3] == "201"


def test_a_batch_is_audited_once_per_patient_naming_every_resource(api) -> None:
    from kjerne.audit.schema import audit_event

    client, dev, engine = api
    with engine.connect() as conn:
        before = conn.execute(select(func.count()).select_from(audit_event)).scalar_one()
    out = upload(client, dev, bundle(*(obs("8867-4", 60 + i, "/min") for i in range(5)))).json()
    with engine.connect() as conn:
        rows = conn.execute(select(audit_event).where(audit_event.c.seq > before)).all()
    assert len(rows) == 1 and rows[0].action == "create" and rows[0].patient
    content = bytes(rows[0].content).decode()
    for e in out["entry"]:
        assert e["response"]["location"].split("/_history")[0] in content


def test_alert_values_are_stored_and_flagged(api) -> None:
    client, dev, _engine = api
    out = upload(client, dev, bundle(obs("2708-6", 88, "%"))).json()
    (entry,) = out["entry"]
    assert entry["response"]["status"].startswith("201")
    codes = [c["code"] for i in entry["resource"]["interpretation"] for c in i["coding"]]
    assert codes == ["L"]


def test_sharing_between_organisations_following_the_patient(api) -> None:
    client, dev, _engine = api
    upload(client, dev, bundle(obs("8867-4", 72, "/min")))
    for org, hpr, pid in ((HOSPITAL, "9144889", "12057900499"), (GP, "5651203", "11847840031")):
        tok = dev.practitioner_token(hpr=hpr, pid=pid, org=org, patients=[FNR], purpose="TREAT")
        found = client.post(
            "/fhir/Observation/_search",
            content="category=vital-signs",
            headers={
                "authorization": f"Bearer {tok}",
                "person-id": FNR,
                "content-type": "application/x-www-form-urlencoded",
            },
        ).json()
        (match,) = [e["resource"] for e in found["entry"] if e["search"]["mode"] == "match"]
        assert match["performer"][0]["identifier"]["value"] == MUNICIPALITY  # the original data controller
        assert match["device"]["display"] == "Pulsoksymeter PX-200"
    citizen = dev.citizen_token(FNR)
    mine = client.get("/fhir/Observation?category=vital-signs", headers={"authorization": f"Bearer {citizen}"}).json()
    assert mine["total"] == 1


def test_a_single_post_is_checked_the_same_way(api) -> None:
    client, dev, engine = api
    tok = dev.system_token(org=MUNICIPALITY, scope="system/Observation.write")
    headers = {"authorization": f"Bearer {tok}", "content-type": "application/fhir+json"}
    assert client.post("/fhir/Observation", json=obs("8867-4", 72, "/min"), headers=headers).status_code == 201
    bad = client.post("/fhir/Observation", json=obs("2708-6", 101, "%"), headers=headers)
    assert bad.status_code == 422 and bad.json()["resourceType"] == "OperationOutcome"
    assert stored(engine) == 1
