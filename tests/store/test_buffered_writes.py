"""A transaction's new resources and index rows wait in the Writer and go to the database together (on
PostgreSQL in one statement). What comes back must be exactly what was written: the stored JSON byte for
byte, and every kind of index row, so that each search parameter finds the resource."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Engine, func, select

from kjerne.access.context import UNRESTRICTED
from kjerne.store.bundles import BundleProcessor
from kjerne.store.observation_ops import ObsQuery, lastn
from kjerne.store.repository import Repository
from kjerne.store.schema import INDEX_TABLES, idx_obs, patient_code, resource

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
PROFILE = "http://hl7.org/fhir/StructureDefinition/bp"
TRICKY = 'Blodtrykk «hjemme» – "målt" av pasient\\sykepleier\nlinje 2 ✓ 𝄞'


def _bundle() -> dict[str, Any]:
    patient = {
        "resourceType": "Patient",
        "name": [{"family": "Ærlig-Øvrebø", "given": ["Åse"]}],
        "birthDate": "1980-02-29",
        "active": True,
    }
    observation = {
        "resourceType": "Observation",
        "meta": {"profile": [PROFILE]},
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "85354-9"}], "text": TRICKY},
        "subject": {"reference": "urn:uuid:7f1c2a4e-0000-4000-8000-000000000001"},
        "effectiveDateTime": "2026-03-01T08:00:00.123456+01:00",
        "note": [{"text": TRICKY}],
        "component": [
            {
                "code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
                "valueQuantity": {"value": 142.5, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"},
            },
            {
                "code": {"coding": [{"system": LOINC, "code": "8462-4"}]},
                "valueQuantity": {"value": 91, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"},
            },
        ],
    }
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:7f1c2a4e-0000-4000-8000-000000000001",
                "resource": patient,
                "request": {"method": "POST", "url": "Patient"},
            },
            {"resource": observation, "request": {"method": "POST", "url": "Observation"}},
        ],
    }


def test_buffered_resources_are_stored_byte_for_byte_and_fully_indexed(engine: Engine) -> None:
    repo = Repository(engine, UNRESTRICTED)
    response = BundleProcessor(repo).process(_bundle())
    ids = [e["response"]["location"].split("/")[1] for e in response["entry"]]
    patient_id, obs_id = ids[0], ids[1]

    with engine.connect() as conn:
        rows = {r.res_type: r for r in conn.execute(select(resource).where(resource.c.res_id.in_(ids)))}
        counts = {
            name: conn.execute(select(func.count()).select_from(table)).scalar_one()
            for name, table in {**INDEX_TABLES, "obs": idx_obs, "codes": patient_code}.items()
        }

    stored = orjson.loads(rows["Observation"].content)
    assert stored["code"]["text"] == TRICKY and stored["note"][0]["text"] == TRICKY
    assert stored["subject"] == {"reference": f"Patient/{patient_id}"}
    assert stored["component"][0]["valueQuantity"]["value"] == 142.5
    # The row holds the JSON exactly as serialised, not a re-encoding of it.
    assert bytes(rows["Observation"].content) == orjson.dumps(stored)
    assert bytes(rows["Patient"].content) == orjson.dumps(orjson.loads(rows["Patient"].content))
    assert rows["Observation"].patient == patient_id and rows["Observation"].version == 1
    assert rows["Observation"].deleted is False
    assert repo.read("Observation", obs_id).content == bytes(rows["Observation"].content)

    for kind in ("token", "string", "date", "reference", "quantity", "uri", "obs", "codes"):
        assert counts[kind] > 0, kind

    def found(res_type: str, *pairs: tuple[str, str]) -> set[str]:
        return {s.res_id for s in repo.search(res_type, list(pairs)).page.rows}

    assert found("Observation", ("code", f"{LOINC}|85354-9")) == {obs_id}
    assert found("Observation", ("component-code", "8462-4")) == {obs_id}
    assert found("Observation", ("component-value-quantity", "gt142")) == {obs_id}
    assert found("Observation", ("component-value-quantity", "gt143")) == set()
    assert found("Observation", ("date", "eq2026-03-01")) == {obs_id}
    assert found("Observation", ("subject", f"Patient/{patient_id}")) == {obs_id}
    assert found("Observation", ("_profile", PROFILE)) == {obs_id}
    assert found("Patient", ("family", "ærlig")) == {patient_id}
    assert found("Patient", ("birthdate", "1980-02-29")) == {patient_id}
    # $lastn over every code starts from the patient_code rows
    assert [s.res_id for s in lastn(repo, ObsQuery([patient_id]), 1)] == [obs_id]
