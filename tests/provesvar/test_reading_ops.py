"""Reading prøvesvar: the cumulative view, the duplicate-test warning and the requisition link, through
the API with the access engine on, on SQLite and PostgreSQL."""

from __future__ import annotations

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
from kjerne.services.provesvar.ingest import ingest_svarrapport
from kjerne.store.repository import Repository

EXAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "svarrapport" / "examples"
FNR = "13116900216"
REQUESTER_HPR = "9144889"  # the requester named in the biochemistry example
LAB = "974760673"


def haemoglobin(value: float, unit: str, when: str, lab: str, low: float, high: float) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]},
        "subject": {"identifier": {"system": "urn:oid:2.16.578.1.12.4.1.4.1", "value": FNR}},
        "effectiveDateTime": when,
        "performer": [{"display": lab}],
        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
        "referenceRange": [
            {
                "low": {"value": low, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
                "high": {"value": high, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
            }
        ],
    }


@pytest.fixture
def api(engine: Engine, db_url: str, tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str]]]:
    repo = Repository(engine, UNRESTRICTED)
    ingest_svarrapport(repo, (EXAMPLES / "Svarrapport-v-1-4" / "Svar_biokjemi_v1-4_Ny.xml").read_bytes(), LAB)
    repo.create(haemoglobin(13.1, "g/dL", "2026-10-01T08:00:00+02:00", "Nordlys lab", 11.7, 15.3))
    repo.create(haemoglobin(118, "g/L", "2026-11-01T08:00:00+01:00", "Kystlab", 117, 153))
    settings = Settings(db_url=db_url, dev=True, var_dir=tmp_path, base_url="http://testserver")
    dev = dev_issuer(settings)
    headers = {
        "hp": {
            "authorization": "Bearer "
            + dev.practitioner_token(hpr=REQUESTER_HPR, pid="12057900499", org="987654325", patients=[FNR]),
            "person-id": FNR,
        },
        "other_hp": {
            "authorization": "Bearer "
            + dev.practitioner_token(hpr="5651203", pid="11847840031", org="997203194", patients=[FNR]),
            "person-id": FNR,
        },
    }
    with TestClient(create_app(settings, engine=engine)) as client:
        yield client, headers


def parts(p: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in p.get("part", []):
        value = part.get("part", next((v for k, v in part.items() if k.startswith("value") or k == "resource"), None))
        out.setdefault(part["name"], []).append(value)
    return out


def test_cumulative_harmonises_units_across_labs(api) -> None:
    client, h = api
    r = client.get("/fhir/Observation/$cumulative", headers=h["hp"])
    assert r.status_code == 200, r.text
    rows = {parts(p)["key"][0]: parts(p) for p in r.json()["parameter"] if p["name"] == "analysis"}
    hb = rows["haemoglobin"]
    cells = [{q["name"]: next(v for k, v in q.items() if k.startswith("value")) for q in cell} for cell in hb["result"]]
    assert {c["unit"] for c in cells} == {"g/dL"}  # one harmonised unit
    assert sorted(round(c["value"], 2) for c in cells if c.get("lab") in ("Kystlab", "Nordlys lab")) == [11.8, 13.1]
    kystlab = next(c for c in cells if c.get("lab") == "Kystlab")
    assert kystlab["original"] == {"value": 118, "unit": "g/L"}
    assert kystlab["referenceLow"] == pytest.approx(11.7)  # the lab's own interval, converted beside its value
    assert len(rows) >= 4  # the Svarrapport's analyses are there too


def test_duplicate_check_finds_recent_results_of_the_same_analysis(api) -> None:
    client, h = api
    r = client.get("/fhir/ServiceRequest/$duplicate-check?code=http://loinc.org|718-7", headers=h["hp"])
    assert r.status_code == 200, r.text
    (check,) = [parts(p) for p in r.json()["parameter"]]
    assert check["lookbackDays"][0] == 7
    assert check["duplicate"] == [False] and "recent" not in check  # both results are older than a week
    import datetime as dt

    from kjerne.store.db import make_engine

    yesterday = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).isoformat()
    Repository(make_engine(client.app.state.settings.db_url), UNRESTRICTED).create(
        haemoglobin(12.0, "g/dL", yesterday, "Nordlys lab", 11.7, 15.3)
    )
    (check,) = [
        parts(p)
        for p in client.get(
            "/fhir/ServiceRequest/$duplicate-check?code=http://loinc.org|718-7", headers=h["hp"]
        ).json()["parameter"]
    ]
    assert check["duplicate"] == [True] and len(check["recent"]) == 1


def test_requester_lists_own_requisitions(api) -> None:
    client, h = api
    mine = client.get("/fhir/ServiceRequest/$requested", headers=h["hp"]).json()
    assert len(mine["parameter"]) == 1
    (item,) = [parts(p) for p in mine["parameter"]]
    assert item["state"] == ["answered"]
    others = client.get("/fhir/ServiceRequest/$requested", headers=h["other_hp"]).json()
    assert others["parameter"] == []


def test_operations_need_the_patient_in_the_attestation(api) -> None:
    client, h = api
    headers = {**h["hp"], "person-id": "12057900499"}
    assert client.get("/fhir/Observation/$cumulative", headers=headers).status_code == 403
    assert client.get("/fhir/ServiceRequest/$duplicate-check?code=718-7", headers=headers).status_code == 403
