"""Pooled PostgreSQL connections are pinged only after they have been idle, a dead one is replaced
before use, and a database that goes away under a request gives that request a 503, not a 500."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError
from starlette.testclient import TestClient

from kjerne.access.context import UNRESTRICTED
from kjerne.app import create_app
from kjerne.config import Settings
from kjerne.store.db import make_engine
from kjerne.store.repository import Repository
from kjerne.testing.pgcluster import Cluster

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_url(pg_cluster: Cluster) -> str:
    import uuid

    return pg_cluster.create_database("p_" + uuid.uuid4().hex[:12], template="kjerne_template")


def _counting_pings(engine: Engine) -> list[int]:
    pings: list[int] = []
    real = engine.dialect.do_ping

    def counted(dbapi_conn: Any) -> bool:
        pings.append(1)
        return real(dbapi_conn)

    engine.dialect.do_ping = counted  # type: ignore[method-assign]
    return pings


def _backend_pid(engine: Engine) -> int:
    with engine.connect() as conn:
        pid = int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())
        conn.commit()
    return pid


def _terminate(url: str, pid: int) -> None:
    other = make_engine(url, pool_size=1)
    try:
        with other.connect() as conn:
            assert conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar_one()
            conn.commit()
    finally:
        other.dispose()
    time.sleep(0.05)  # the backend exits asynchronously


@pytest.mark.parametrize(("window", "expected"), [(60.0, 0), (0.0, 5)])
def test_a_connection_returned_within_the_window_is_not_pinged(pg_url: str, window: float, expected: int) -> None:
    engine = make_engine(pg_url, pool_size=1, ping_after_idle=window)
    try:
        pings = _counting_pings(engine)
        for _ in range(5):
            _backend_pid(engine)
        assert len(pings) == expected
    finally:
        engine.dispose()


def test_a_dead_idle_connection_is_replaced_before_use(pg_url: str) -> None:
    engine = make_engine(pg_url, pool_size=1, ping_after_idle=0.05)
    try:
        first = _backend_pid(engine)
        _terminate(pg_url, first)
        time.sleep(0.1)
        assert _backend_pid(engine) != first
    finally:
        engine.dispose()


@pytest.fixture
def client_and_engine(pg_url: str) -> Iterator[tuple[TestClient, Engine]]:
    engine = make_engine(pg_url, pool_size=1, ping_after_idle=60)
    base = "http://testserver/fhir"
    app = create_app(
        Settings(db_url=pg_url, base_url="http://testserver"),
        engine=engine,
        repository_factory=lambda request: Repository(engine, UNRESTRICTED, base_url=base),
    )
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c, engine
    engine.dispose()


def test_a_database_gone_under_a_request_gives_503_and_the_next_request_recovers(
    client_and_engine: tuple[TestClient, Engine], pg_url: str
) -> None:
    client, engine = client_and_engine
    assert client.get("/fhir/Patient?_count=1").status_code == 200
    _terminate(pg_url, _backend_pid(engine))  # the pooled connection dies within the ping window

    gone = client.get("/fhir/Patient?_count=1")
    assert gone.status_code == 503
    assert gone.headers["retry-after"] == "1"
    body = gone.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == "transient"
    assert "Traceback" not in gone.text and "psycopg" not in gone.text

    assert client.get("/fhir/Patient?_count=1").status_code == 200


def test_a_transaction_left_idle_is_ended_by_the_server_and_the_pool_recovers(pg_url: str) -> None:
    engine = make_engine(pg_url, pool_size=1, idle_in_transaction=0.3)
    try:
        with engine.connect() as conn:
            shown = conn.execute(text("SHOW idle_in_transaction_session_timeout")).scalar_one()
            assert shown == "300ms"
            time.sleep(0.8)  # a client stuck mid-transaction
            with pytest.raises(DBAPIError) as err:
                conn.execute(text("SELECT 1")).all()
            assert "idle-in-transaction" in str(err.value)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT 1")).scalar_one() == 1
    finally:
        engine.dispose()


def test_options_in_the_url_are_kept(pg_url: str) -> None:
    engine = make_engine(pg_url + "?options=-c%20statement_timeout%3D4321")
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SHOW statement_timeout")).scalar_one() == "4321ms"
            assert conn.execute(text("SHOW idle_in_transaction_session_timeout")).scalar_one() == "5min"
    finally:
        engine.dispose()
