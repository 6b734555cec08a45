"""The API's FHIR semantics, tested with the access engine out of the way (it has its own suite):
the repository here is the platform's own, unrestricted one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine
from starlette.testclient import TestClient

from kjerne.access.context import UNRESTRICTED
from kjerne.app import create_app
from kjerne.config import Settings
from kjerne.store.repository import Repository

BASE = "http://testserver/fhir"


@pytest.fixture
def client(engine: Engine, db_url: str) -> Iterator[TestClient]:
    settings = Settings(db_url=db_url, base_url="http://testserver")
    app = create_app(
        settings,
        engine=engine,
        repository_factory=lambda request: Repository(engine, UNRESTRICTED, base_url=BASE),
    )
    with TestClient(app, raise_server_exceptions=False) as c:
        c.headers["content-type"] = "application/fhir+json"
        yield c
