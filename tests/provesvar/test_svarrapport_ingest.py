"""Svarrapport through POST /ingest/svarrapport: receipts, storage, lifecycle and producer statistics,
on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from starlette.testclient import TestClient

from kjerne.api.auth import dev_issuer
from kjerne.app import create_app
from kjerne.config import Settings
from kjerne.store.schema import ingest_log, resource

EXAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "svarrapport" / "examples"
V14 = EXAMPLES / "Svarrapport-v-1-4"
LAB = "974760673"
RAD_PATIENT = "15076500565"  # the patient of the radiology examples


@pytest.fixture
def api(engine: Engine, db_url: str, tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str], Engine]]:
    settings = Settings(db_url=db_url, dev=True, var_dir=tmp_path, base_url="http://testserver")
    dev = dev_issuer(settings)
    tokens = {
        "lab": dev.system_token(org=LAB, scope="system/*.write"),
        "operator": dev.system_token(org="987654325", scope="system/AuditEvent.read"),
        "hp": dev.practitioner_token(
            hpr="9144889", pid="12057900499", org="987654325", patients=["13116900216", RAD_PATIENT], purpose="TREAT"
        ),
        "citizen": dev.citizen_token("13116900216"),
        "rad_citizen": dev.citizen_token(RAD_PATIENT),
    }
    with TestClient(create_app(settings, engine=engine)) as client:
        yield client, tokens, engine


def send(client: TestClient, token: str, xml: bytes) -> tuple[int, str]:
    r = client.post(
        "/ingest/svarrapport",
        content=xml,
        headers={"authorization": f"Bearer {token}", "content-type": "application/xml"},
    )
    status = re.search(rb'<Status V="(\d)"', r.content)
    return r.status_code, status.group(1).decode() if status else r.text


def count(engine: Engine, res_type: str) -> int:
    with engine.connect() as conn:
        return conn.execute(
            select(func.count()).select_from(resource).where(resource.c.res_type == res_type)
        ).scalar_one()


def reports(client: TestClient, token: str, fnr: str = "13116900216") -> list[dict]:
    r = client.post(
        "/fhir/DiagnosticReport/_search",
        content="_count=50",
        headers={
            "authorization": f"Bearer {token}",
            "person-id": fnr,
            "content-type": "application/x-www-form-urlencoded",
        },
    )
    assert r.status_code == 200, r.text
    return [e["resource"] for e in r.json().get("entry", []) if e["resource"]["resourceType"] == "DiagnosticReport"]


def test_new_report_is_stored_and_readable_by_health_personnel(api) -> None:
    client, tok, _engine = api
    assert send(client, tok["lab"], (V14 / "Svar_biokjemi_v1-4_Ny.xml").read_bytes()) == (200, "1")
    found = reports(client, tok["hp"])
    assert [r["status"] for r in found] == ["final"]
    obs = client.post(
        "/fhir/Observation/_search",
        content="code=urn:oid:2.16.578.1.12.4.1.1.7280|NPU02593",
        headers={
            "authorization": f"Bearer {tok['hp']}",
            "person-id": "13116900216",
            "content-type": "application/x-www-form-urlencoded",
        },
    ).json()
    assert obs["total"] == 1  # B-Leukocytter


def test_same_message_twice_is_stored_once(api) -> None:
    client, tok, engine = api
    xml = (V14 / "Svar_biokjemi_v1-4_Ny.xml").read_bytes()
    send(client, tok["lab"], xml)
    before = (count(engine, "Observation"), count(engine, "DiagnosticReport"))
    assert send(client, tok["lab"], xml) == (200, "1")
    assert (count(engine, "Observation"), count(engine, "DiagnosticReport")) == before
    with engine.connect() as conn:
        statuses = [r[0] for r in conn.execute(select(ingest_log.c.status).order_by(ingest_log.c.id))]
    assert statuses == ["ok", "duplicate"]


def test_change_supersedes_and_history_is_kept(api) -> None:
    client, tok, _engine = api
    send(client, tok["lab"], (V14 / "Svar_biokjemi_v1-4_Ny.xml").read_bytes())
    send(client, tok["lab"], (V14 / "Svar_biokjemi_v1-4_Endring.xml").read_bytes())
    (report,) = reports(client, tok["hp"])
    assert report["status"] == "amended"  # the visible 'corrected' mark
    history = client.get(
        f"/fhir/DiagnosticReport/{report['id']}/_history", headers={"authorization": f"Bearer {tok['hp']}"}
    ).json()
    assert [e["resource"]["status"] for e in history["entry"]] == ["amended", "final"]


def test_cancellation_removes_results_from_current_views(api) -> None:
    client, tok, _engine = api
    for name in ("Svar_biokjemi_v1-4_Ny.xml", "Svar_biokjemi_v1-4_Kansellering.xml"):
        send(client, tok["lab"], (V14 / name).read_bytes())
    (report,) = reports(client, tok["hp"])
    assert report["status"] == "cancelled"
    current = client.post(
        "/fhir/Observation/_search",
        content="status:not=cancelled",
        headers={
            "authorization": f"Bearer {tok['hp']}",
            "person-id": "13116900216",
            "content-type": "application/x-www-form-urlencoded",
        },
    ).json()
    assert current["total"] == 0
    history = client.get(
        f"/fhir/DiagnosticReport/{report['id']}/_history", headers={"authorization": f"Bearer {tok['hp']}"}
    ).json()
    assert "final" in [e["resource"]["status"] for e in history["entry"]]


def test_change_arriving_before_new_ends_in_the_changed_state(api) -> None:
    client, tok, engine = api
    send(client, tok["lab"], (V14 / "Svar_radiologi_v1-4_Endring.xml").read_bytes())
    assert send(client, tok["lab"], (V14 / "Svar_radiologi_v1-4_Ny.xml").read_bytes()) == (200, "1")
    (report,) = reports(client, tok["hp"], RAD_PATIENT)
    assert report["status"] == "amended"
    with engine.connect() as conn:
        statuses = [r[0] for r in conn.execute(select(ingest_log.c.status).order_by(ingest_log.c.id))]
    assert statuses == ["ok", "superseded"]


def test_radiology_is_under_default_utsatt_innsyn_for_the_citizen(api) -> None:
    client, tok, _engine = api
    xml = (V14 / "Svar_radiologi_v1-4_Ny.xml").read_bytes()
    send(client, tok["lab"], xml)
    assert len(reports(client, tok["hp"], RAD_PATIENT)) == 1
    citizen = client.get("/fhir/DiagnosticReport", headers={"authorization": f"Bearer {tok['rad_citizen']}"}).json()
    # The example was issued years ago: the default 7-day delay has passed, so the citizen sees it.
    assert citizen["total"] == 1
    (report,) = reports(client, tok["hp"], RAD_PATIENT)
    assert any(c["code"] == "utsatt-innsyn" for c in report["meta"]["security"])


def test_rejected_message_stores_nothing_and_is_counted(api) -> None:
    client, tok, engine = api
    xml = (V14 / "Svar_biokjemi_v1-4_Ny.xml").read_bytes().replace(b"13116900216", b"13116900217")
    status, apprec_status = send(client, tok["lab"], xml)
    assert (status, apprec_status) == (400, "2")
    assert count(engine, "DiagnosticReport") == count(engine, "Observation") == count(engine, "Patient") == 0
    stats = client.get("/stats/producers", headers={"authorization": f"Bearer {tok['operator']}"}).json()
    (producer,) = stats["producers"]
    assert producer["rejected_count"] == 1 and producer["delivered"] == 0


def test_not_xml_gets_an_error_receipt(api) -> None:
    client, tok, engine = api
    assert send(client, tok["lab"], b"<Message><unclosed>") == (400, "2")
    assert count(engine, "DiagnosticReport") == 0


def test_only_producers_may_deliver(api) -> None:
    client, tok, engine = api
    xml = (V14 / "Svar_biokjemi_v1-4_Ny.xml").read_bytes()
    assert send(client, tok["hp"], xml)[0] == 403
    r = client.post("/ingest/svarrapport", content=xml, headers={"content-type": "application/xml"})
    assert r.status_code == 401
    assert count(engine, "DiagnosticReport") == 0


def test_producer_statistics(api) -> None:
    client, tok, _engine = api
    for name in ("Svar_biokjemi_v1-4_Ny.xml", "Svar_immunologi_v1-4_Ny.xml"):
        send(client, tok["lab"], (V14 / name).read_bytes())
    assert client.get("/stats/producers", headers={"authorization": f"Bearer {tok['lab']}"}).status_code == 403
    stats = client.get("/stats/producers", headers={"authorization": f"Bearer {tok['operator']}"}).json()
    (producer,) = stats["producers"]
    assert producer["producer"] == LAB
    assert sum(producer["reports_per_day"].values()) == 2
    assert producer["lag_seconds"]["median"] > 0


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*/*.xml")), ids=lambda p: p.name)
def test_every_example_imports(sqlite_template: Path, tmp_path: Path, path: Path) -> None:
    """The sweep over all official examples runs on SQLite; the lifecycle tests cover both databases."""
    import shutil

    from kjerne.access.context import UNRESTRICTED
    from kjerne.services.provesvar.ingest import ingest_svarrapport
    from kjerne.store.db import make_engine
    from kjerne.store.repository import Repository

    shutil.copy(sqlite_template, tmp_path / "k.db")
    engine = make_engine(f"sqlite:///{tmp_path / 'k.db'}")
    receipt = ingest_svarrapport(Repository(engine, UNRESTRICTED), path.read_bytes(), LAB)
    assert receipt.status in ("ok", "warning"), receipt.reasons
    assert count(engine, "DiagnosticReport") == 1
