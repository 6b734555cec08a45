"""'Awaiting release': a citizen learns that a report under utsatt innsyn exists, never its content."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import Engine, func, select

from kjerne.access.context import UNRESTRICTED
from kjerne.access.devissuer import DevIssuer
from kjerne.access.policy import AccessPolicy, RequestInfo
from kjerne.access.tokens import TokenVerifier
from kjerne.audit.schema import audit_event
from kjerne.services.provesvar.awaiting import awaiting_release
from kjerne.store.repository import Repository

FNR = "13116900216"


def pathology_report(issued: dt.datetime, *, nektet: bool = False) -> dict:
    report = {
        "resourceType": "DiagnosticReport",
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "PAT"}]}],
        "code": {"text": "Histologi, hudbiopsi"},
        "conclusion": "Malignt melanom",
        "subject": {"identifier": {"system": "urn:oid:2.16.578.1.12.4.1.4.1", "value": FNR}},
        "issued": issued.isoformat(),
    }
    if nektet:
        report["meta"] = {"security": [{"system": "http://kjerne.no/fhir/CodeSystem/restriction", "code": "nekting"}]}
    return report


def repo_for(engine: Engine, tmp_path: Path, token: str) -> Repository:
    dev = DevIssuer(tmp_path / "keys")
    principal = TokenVerifier([dev.issuer_config()]).verify(f"Bearer {token}")
    return Repository(engine, AccessPolicy(engine, principal, RequestInfo(channel="portal")))


def test_citizen_sees_that_a_report_waits_but_not_what_it_says(engine: Engine, tmp_path: Path) -> None:
    platform = Repository(engine, UNRESTRICTED)
    now = dt.datetime.now(dt.UTC)
    platform.create(pathology_report(now))  # default delay: 14 days
    platform.create(pathology_report(now, nektet=True))
    platform.create(pathology_report(now - dt.timedelta(days=30)))  # already released
    dev = DevIssuer(tmp_path / "keys")
    citizen = repo_for(engine, tmp_path, dev.citizen_token(FNR))
    with engine.connect() as conn:
        before = conn.execute(select(func.count()).select_from(audit_event)).scalar_one()
    (item,) = awaiting_release(citizen)
    assert set(item) == {"issued", "release_after", "kind"}
    assert item["kind"] == "pathology"
    assert dt.datetime.fromisoformat(item["release_after"]) > now + dt.timedelta(days=13)
    assert "melanom" not in repr(item).lower()
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(audit_event)).scalar_one() == before + 1
    assert citizen.search("DiagnosticReport", []).page.total == 1  # only the released one is readable


def test_no_one_else_gets_the_list(engine: Engine, tmp_path: Path) -> None:
    Repository(engine, UNRESTRICTED).create(pathology_report(dt.datetime.now(dt.UTC)))
    dev = DevIssuer(tmp_path / "keys")
    hp = repo_for(
        engine, tmp_path, dev.practitioner_token(hpr="9144889", pid="12057900499", org="987654325", patients=[FNR])
    )
    assert awaiting_release(hp) == []
    other = repo_for(engine, tmp_path, dev.citizen_token("12057900499"))
    assert awaiting_release(other) == []
