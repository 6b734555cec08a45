"""Observation/$lastn and $stats through the API, on SQLite and PostgreSQL, with the access engine on."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from starlette.testclient import TestClient

from kjerne.access.context import UNRESTRICTED
from kjerne.api.auth import dev_issuer
from kjerne.app import create_app
from kjerne.config import Settings
from kjerne.fhir.identifiers import OID_FNR, OID_HPR
from kjerne.store.repository import Repository

FNR = "13116900216"
OTHER = "12057900499"
HPR, HP_PID, ORG = "9144889", "12057900499", "987654325"
LOINC = "http://loinc.org"


def measurement(fnr: str, code: str, value: float, unit: str, when: dt.datetime) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}
                ]
            }
        ],
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"identifier": {"system": OID_FNR, "value": fnr}},
        "effectiveDateTime": when.isoformat(),
        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
    }


def blood_pressure(fnr: str, sys: float, dia: float, when: dt.datetime) -> dict[str, Any]:
    obs = measurement(fnr, "85354-9", 0, "mm[Hg]", when)
    del obs["valueQuantity"]
    obs["component"] = [
        {
            "code": {"coding": [{"system": LOINC, "code": c}]},
            "valueQuantity": {"value": v, "unit": "mm[Hg]", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"},
        }
        for c, v in (("8480-6", sys), ("8462-4", dia))
    ]
    return obs


START = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)  # a Monday


@pytest.fixture
def api(engine: Engine, db_url: str, tmp_path: Path) -> Iterator[tuple[TestClient, Any, Engine]]:
    repo = Repository(engine, UNRESTRICTED)
    for day in range(14):
        when = START + dt.timedelta(days=day)
        repo.create(measurement(FNR, "8867-4", 60 + day, "/min", when))
        repo.create(blood_pressure(FNR, 120 + day, 80, when))
        if day % 2 == 0:
            repo.create(measurement(FNR, "29463-7", 80 - day / 10, "kg", when))
    repo.create(measurement(OTHER, "8867-4", 99, "/min", START))
    settings = Settings(db_url=db_url, dev=True, var_dir=tmp_path, base_url="http://testserver")
    with TestClient(create_app(settings, engine=engine)) as client:
        yield client, dev_issuer(settings), engine


def hp(dev: Any, basis: dict[str, str] | None = None) -> dict[str, str]:
    tok = dev.practitioner_token(hpr=HPR, pid=HP_PID, org=ORG, patients=[FNR], purpose="TREAT")
    return {"authorization": f"Bearer {tok}", "person-id": FNR, **(basis or {})}


def test_lastn_gives_the_latest_n_per_code(api) -> None:
    client, dev, _ = api
    r = client.get("/fhir/Observation/$lastn?max=3", headers=hp(dev))
    assert r.status_code == 200, r.text
    by_code: dict[str, list[str]] = {}
    for e in r.json()["entry"]:
        res = e["resource"]
        by_code.setdefault(res["code"]["coding"][0]["code"], []).append(res["effectiveDateTime"])
    assert set(by_code) == {"8867-4", "85354-9", "29463-7"}
    assert all(len(v) == 3 for v in by_code.values())
    assert by_code["8867-4"][0].startswith("2026-03-15")  # newest first
    assert by_code["29463-7"][0].startswith("2026-03-14")


def test_lastn_by_code_and_only_for_the_named_patient(api) -> None:
    client, dev, _ = api
    r = client.post(
        "/fhir/Observation/$lastn",
        content="code=http://loinc.org|8867-4&max=1",
        headers={**hp(dev), "content-type": "application/x-www-form-urlencoded"},
    )
    (only,) = r.json()["entry"]
    assert only["resource"]["valueQuantity"]["value"] == 73


def test_stats_min_max_mean_count_last_and_buckets(api) -> None:
    client, dev, _ = api
    r = client.get(
        "/fhir/Observation/$stats?code=http://loinc.org|8867-4&bucket=week&start=2026-03-01", headers=hp(dev)
    )
    assert r.status_code == 200, r.text
    params = r.json()["parameter"]
    (stat,) = [p["resource"] for p in params if p["name"] == "statistic"]
    comp = {c["code"]["coding"][0]["code"]: c for c in stat["component"]}
    assert comp["count"]["valueInteger"] == 14
    assert comp["minimum"]["valueQuantity"]["value"] == 60
    assert comp["maximum"]["valueQuantity"]["value"] == 73
    assert comp["average"]["valueQuantity"]["value"] == pytest.approx(66.5)
    assert comp["last"]["valueQuantity"]["value"] == 73
    weeks = [
        {p["name"]: next(iter(v for k, v in p.items() if k.startswith("value"))) for p in b["part"]}
        for b in params
        if b["name"] == "bucket"
    ]
    assert [w["count"] for w in weeks] == [7, 7]
    assert weeks[0]["start"] == "2026-03-02"


def test_stats_of_a_panel_are_per_component(api) -> None:
    client, dev, _ = api
    r = client.get("/fhir/Observation/$stats?code=http://loinc.org|85354-9", headers=hp(dev))
    stats = {p["resource"]["code"]["coding"][0]["code"]: p["resource"] for p in r.json()["parameter"]}
    assert set(stats) == {"8480-6", "8462-4"}
    systolic = {c["code"]["coding"][0]["code"]: c for c in stats["8480-6"]["component"]}
    assert systolic["maximum"]["valueQuantity"]["value"] == 133


def test_operations_honour_blokkering(api) -> None:
    client, dev, engine = api
    repo = Repository(engine, UNRESTRICTED)
    patient_id = client.get("/fhir/Patient", headers=hp(dev)).json()["entry"][0]["resource"]["id"]
    repo.create(
        {
            "resourceType": "Consent",
            "status": "active",
            "scope": {
                "coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]
            },
            "category": [
                {"coding": [{"system": "http://kjerne.no/fhir/CodeSystem/restriction", "code": "blokkering"}]}
            ],
            "patient": {"reference": f"Patient/{patient_id}"},
            "provision": {
                "type": "deny",
                "actor": [
                    {
                        "role": {
                            "coding": [
                                {"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "PRCP"}
                            ]
                        },
                        "reference": {"identifier": {"system": OID_HPR, "value": HPR}},
                    }
                ],
            },
        }
    )
    emergency = hp(dev, {"nhn-access-basis": "FORHOYET_AKUTT"})
    assert client.get("/fhir/Observation/$lastn?max=5", headers=emergency).json()["total"] == 0
    r = client.get("/fhir/Observation/$stats?code=http://loinc.org|8867-4", headers=emergency)
    assert r.json()["parameter"] == []


def test_operations_refuse_patients_outside_the_attestation(api) -> None:
    client, dev, _ = api
    headers = {**hp(dev), "person-id": OTHER}
    assert client.get("/fhir/Observation/$lastn", headers=headers).status_code == 403
    assert client.get("/fhir/Observation/$stats?code=8867-4", headers=headers).status_code == 403


def test_citizen_reads_own_lastn(api) -> None:
    client, dev, _ = api
    tok = dev.citizen_token(FNR)
    r = client.get(
        "/fhir/Observation/$lastn?max=1&code=8867-4", headers={"authorization": f"Bearer {tok}", "person-id": FNR}
    )
    assert r.json()["total"] == 1


@pytest.mark.parametrize("query", ["max=0", "max=abc", "max=1000", "code=", "start=2026-13-01", "foo=bar"])
def test_bad_parameters_get_400(api, query: str) -> None:
    client, dev, _ = api
    r = client.get(f"/fhir/Observation/$lastn?{query}", headers=hp(dev))
    assert r.status_code == 400, r.text
    assert r.json()["resourceType"] == "OperationOutcome"


def test_lastn_looks_past_newer_measurements_the_reader_may_not_see(api) -> None:
    client, dev, engine = api
    repo = Repository(engine, UNRESTRICTED)
    later = START + dt.timedelta(days=30)
    for minute in range(12):
        obs = measurement(FNR, "8867-4", 150 + minute, "/min", later + dt.timedelta(minutes=minute))
        obs["meta"] = {"security": [{"system": "http://kjerne.no/fhir/CodeSystem/restriction", "code": "nekting"}]}
        repo.create(obs)
    citizen = {"authorization": f"Bearer {dev.citizen_token(FNR)}", "person-id": FNR}
    got = client.get("/fhir/Observation/$lastn?max=2", headers=citizen).json()
    pulses = [
        e["resource"]["valueQuantity"]["value"]
        for e in got["entry"]
        if e["resource"]["code"]["coding"][0]["code"] == "8867-4"
    ]
    assert pulses == [73, 72]
    assert got["total"] == 6
    seen = client.get("/fhir/Observation/$lastn?max=2&code=8867-4", headers=hp(dev)).json()
    assert [e["resource"]["valueQuantity"]["value"] for e in seen["entry"]] == [161, 160]
