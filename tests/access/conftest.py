"""Fixtures for the access-engine tests: the real app (token gate, access policy, audit log) on
SQLite and on PostgreSQL, with the development token issuer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import Api, World
from sqlalchemy import Engine
from starlette.testclient import TestClient

from kjerne.api.auth import dev_issuer
from kjerne.app import create_app
from kjerne.config import Settings


@pytest.fixture
def api(engine: Engine, db_url: str, tmp_path: Path) -> Iterator[Api]:
    settings = Settings(db_url=db_url, dev=True, var_dir=tmp_path, base_url="http://testserver")
    app = create_app(settings, engine=engine)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield Api(client, dev_issuer(settings), engine, engine.dialect.name)


@pytest.fixture
def world(api: Api) -> World:
    return World(api)
