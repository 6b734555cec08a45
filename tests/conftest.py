from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from kjerne.store.db import make_engine
from kjerne.store.migrate import upgrade
from kjerne.testing.pgcluster import Cluster

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return SHARED


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    with Cluster() as cluster:
        upgrade(cluster.create_database("kjerne_template"))
        yield cluster


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tmpl") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, migrated database of each kind: every test using it runs on SQLite and PostgreSQL."""
    if request.param == "sqlite":
        path = tmp_path / "kjerne.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    cluster: Cluster = request.getfixturevalue("pg_cluster")
    return cluster.create_database("t_" + uuid.uuid4().hex[:12], template="kjerne_template")


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url, pool_size=4)
    yield eng
    eng.dispose()
