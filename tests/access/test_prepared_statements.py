"""psycopg drops every prepared statement of a PostgreSQL connection on ROLLBACK. The policy's look-up
of the caller's patients, which runs on a connection of its own before a search, must not end in one:
otherwise the pooled connections never keep a prepared statement, and every request's statements are
parsed and planned afresh."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from helpers import persons
from sqlalchemy import Connection, text

from kjerne.access.policy import AccessPolicy, RequestInfo
from kjerne.api.auth import build_verifier, dev_issuer
from kjerne.config import Settings
from kjerne.store.db import make_engine

(FNR,) = persons(1, start=480)


def _prepared(conn: Connection) -> int:
    return int(conn.execute(text("SELECT count(*) FROM pg_prepared_statements")).scalar_one())


def test_loading_the_callers_patients_keeps_the_connections_prepared_statements(
    pg_cluster: Any, tmp_path: Path
) -> None:
    url = pg_cluster.create_database("ps_" + uuid.uuid4().hex[:12], template="kjerne_template")
    engine = make_engine(url, pool_size=1)  # used one request at a time: the policy gets the same connection
    try:
        with engine.connect() as conn:
            for _ in range(6):
                conn.execute(text("SELECT CAST(:x AS integer) + 1"), {"x": 1}).all()
            conn.commit()
            assert _prepared(conn) >= 1
            conn.commit()
        settings = Settings(dev=True, var_dir=tmp_path, host="127.0.0.1", port=8080)
        token = dev_issuer(settings).practitioner_token(
            hpr="9144889", pid="13116900216", org="974760673", patients=[FNR], purpose="TREAT"
        )
        policy = AccessPolicy(engine, build_verifier(settings).verify(f"Bearer {token}"), RequestInfo(person_id=FNR))
        assert policy.patients_for(FNR) == []  # nobody has that id yet; the look-up ran all the same
        with engine.connect() as conn:
            assert _prepared(conn) >= 1
    finally:
        engine.dispose()
