"""A search naming one patient narrows its index lookups to that patient's rows. Whatever else the
search asks (:not, :missing, chains to other resources, several values), the answer must be the
unscoped answer cut down to the patient's resources, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine

from kjerne.access.context import UNRESTRICTED
from kjerne.store.repository import Repository

LOINC = "http://loinc.org"
HPR = "urn:oid:2.16.578.1.12.4.1.4.4"


def _obs(subject: str, code: str, *, performer: str | None = None, value: float | None = None) -> dict[str, Any]:
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "subject": {"reference": subject},
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "effectiveDateTime": "2026-03-01T08:00:00+01:00",
    }
    if performer:
        obs["performer"] = [{"reference": performer}]
    if value is not None:
        obs["valueQuantity"] = {"value": value, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}
    return obs


@pytest.fixture
def seeded(engine: Engine) -> tuple[Repository, dict[str, set[str]]]:
    repo = Repository(engine, UNRESTRICTED)
    for pid in ("p1", "p2"):
        repo.update({"resourceType": "Patient", "id": pid, "name": [{"family": "Nordmann"}]}, pid)
    for pid, hpr in (("lege", "9144900"), ("annen", "9144901")):
        repo.update({"resourceType": "Practitioner", "id": pid, "identifier": [{"system": HPR, "value": hpr}]}, pid)
    owned: dict[str, set[str]] = {"p1": set(), "p2": set()}
    for pid in ("p1", "p2"):
        for obs in (
            _obs(f"Patient/{pid}", "8867-4", performer="Practitioner/lege", value=72),
            _obs(f"Patient/{pid}", "8867-4", performer="Practitioner/annen", value=110),
            _obs(f"Patient/{pid}", "29463-7"),
        ):
            owned[pid].add(repo.create(obs).stored.res_id)
    return repo, owned


QUERIES = [
    [("code", "8867-4")],
    [("code:not", "8867-4")],
    [("code", "8867-4,29463-7")],
    [("value-quantity:missing", "true")],
    [("value-quantity:missing", "false")],
    [("value-quantity", "gt100")],
    [("performer:missing", "true")],
    [("performer:Practitioner.identifier", f"{HPR}|9144900")],
    [("performer:Practitioner.identifier:not", f"{HPR}|9144900")],
    [("date", "ge2026-01-01"), ("code:not", "29463-7")],
]


@pytest.mark.parametrize("query", QUERIES, ids=lambda q: "&".join(f"{k}={v}" for k, v in q))
@pytest.mark.parametrize("scope", ["patient", "subject"])
def test_the_patient_scoped_answer_is_the_unscoped_answer_for_that_patient(
    seeded: tuple[Repository, dict[str, set[str]]], query: list[tuple[str, str]], scope: str
) -> None:
    repo, owned = seeded
    everyone = {r.res_id for r in repo.search("Observation", query).page.rows}
    value = "p1" if scope == "patient" else "Patient/p1"
    scoped = {r.res_id for r in repo.search("Observation", [*query, (scope, value)]).page.rows}
    assert scoped == everyone & owned["p1"]
    assert everyone & owned["p2"], "the query must also match the other patient's rows to mean anything"
