"""A keep-alive connection is told to close after `keepalive_requests` requests, so clients reconnect
and their connections spread over the server's workers."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from kjerne.app import create_app
from kjerne.config import Settings


@pytest.mark.parametrize(("every", "closing"), [(3, [3, 6]), (0, [])])
def test_every_nth_response_on_a_connection_closes_it(tmp_path: Path, every: int, closing: list[int]) -> None:
    settings = Settings(db_url=f"sqlite:///{tmp_path / 'k.db'}", dev=True, var_dir=tmp_path, keepalive_requests=every)
    with TestClient(create_app(settings)) as client:  # one client address: one connection, as the server sees it
        said = [client.get("/fhir/metadata").headers.get("connection") for _ in range(7)]
    assert [n for n, value in enumerate(said, 1) if value == "close"] == closing
    assert all(value in (None, "close") for value in said)
