"""Union search parameters (combo-code …) keep no rows of their own and still search like their
R4 definitions, on SQLite and PostgreSQL; the migration moves old databases over and back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Engine, func, select, text

from kjerne.access.context import UNRESTRICTED
from kjerne.store.db import make_engine
from kjerne.store.derived_params import stored_as, unions
from kjerne.store.indexing import extract
from kjerne.store.migrate import alembic_config, upgrade
from kjerne.store.repository import Repository
from kjerne.store.schema import idx_quantity, idx_token

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"


def _qty(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def pulse(value: float) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "8867-4"}]},
        "valueQuantity": _qty(value, "/min"),
    }


def pressure(sys: float, dia: float) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "85354-9"}]},
        "component": [
            {"code": {"coding": [{"system": LOINC, "code": c}]}, "valueQuantity": _qty(v, "mm[Hg]")}
            for c, v in (("8480-6", sys), ("8462-4", dia))
        ],
    }


def test_the_unions_follow_from_the_r4_expressions() -> None:
    assert unions("Observation") == {
        "combo-code": ("code", "component-code"),
        "combo-data-absent-reason": ("component-data-absent-reason", "data-absent-reason"),
        "combo-value-concept": ("component-value-concept", "value-concept"),
        "combo-value-quantity": ("component-value-quantity", "value-quantity"),
    }
    assert stored_as("Observation", "code") == ("code",)
    assert not any(unions(t) for t in ("Patient", "DiagnosticReport", "Condition", "MedicationStatement"))


def test_no_rows_are_stored_for_a_union() -> None:
    rows = extract(pressure(140, 90))
    params = {r[0] for r in rows.tokens} | {r[0] for r in rows.quantities}
    assert {"code", "component-code", "component-value-quantity"} <= params
    assert not params & set(unions("Observation"))


def _ids(repo: Repository, query: list[tuple[str, str]]) -> set[str]:
    return {row.res_id for row in repo.search("Observation", query).page.rows}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ([("combo-code", "8867-4")], {"pulse"}),
        ([("combo-code", f"{LOINC}|8480-6")], {"pressure"}),
        ([("combo-code", "85354-9,8867-4")], {"pulse", "pressure"}),
        ([("combo-code:not", "8480-6")], {"pulse"}),
        ([("combo-code:missing", "true")], set()),
        ([("combo-value-quantity", "gt100")], {"pressure"}),
        ([("combo-value-quantity", "lt80")], {"pulse"}),
        ([("combo-value-quantity:missing", "false")], {"pulse", "pressure"}),
        ([("combo-value-concept:missing", "true")], {"pulse", "pressure"}),
        ([("combo-code", "8867-4"), ("_sort", "combo-value-quantity")], {"pulse"}),
    ],
)
def test_a_union_searches_its_parts_rows(engine: Engine, query: list[tuple[str, str]], expected: set[str]) -> None:
    repo = Repository(engine, UNRESTRICTED)
    ids = {"pulse": repo.create(pulse(72)).stored.res_id, "pressure": repo.create(pressure(150, 95)).stored.res_id}
    assert _ids(repo, query) == {ids[k] for k in expected}


def test_sorting_by_a_union_takes_values_from_its_parts(engine: Engine) -> None:
    repo = Repository(engine, UNRESTRICTED)
    low = repo.create(pulse(60)).stored.res_id
    high = repo.create(pressure(150, 95)).stored.res_id
    mid = repo.create(pulse(90)).stored.res_id
    rows = repo.search("Observation", [("_sort", "-combo-value-quantity")]).page.rows
    assert [r.res_id for r in rows] == [high, mid, low]


def test_the_migration_drops_the_copies_and_the_downgrade_restores_them(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    upgrade(url, "0006")
    engine = make_engine(url)
    with engine.begin() as conn:
        for param, code in (("code", "8480-6"), ("component-code", "8462-4"), ("combo-code", "8480-6")):
            conn.execute(idx_token.insert().values(rid=1, res_type="Observation", patient=None, param=param, code=code))
        conn.execute(idx_token.insert().values(rid=1, res_type="Observation", param="combo-code", code="8462-4"))
        conn.execute(idx_quantity.insert().values(rid=1, res_type="Observation", param="value-quantity", value=1.0))
        conn.execute(
            idx_quantity.insert().values(rid=1, res_type="Observation", param="combo-value-quantity", value=1.0)
        )

    def count(table: Any, param: str) -> int:
        with engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(table).where(table.c.param == param)).scalar_one()

    upgrade(url)
    assert count(idx_token, "combo-code") == 0 and count(idx_quantity, "combo-value-quantity") == 0
    assert count(idx_token, "code") == 1
    command.downgrade(alembic_config(url), "0006")
    assert count(idx_token, "combo-code") == 2 and count(idx_quantity, "combo-value-quantity") == 1
    with engine.connect() as conn:
        codes = conn.execute(text("SELECT code FROM idx_token WHERE param = 'combo-code' ORDER BY code")).scalars()
        assert list(codes) == ["8462-4", "8480-6"]
    engine.dispose()
