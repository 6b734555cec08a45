"""HL7 v2 ORU^R01 through POST /ingest/hl7v2: ACK on success, NAK naming the fault, and nothing stored
for a refused message."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import hl7
import pytest
from sqlalchemy import Engine, func, select
from starlette.testclient import TestClient

from kjerne.api.auth import dev_issuer
from kjerne.app import create_app
from kjerne.config import Settings
from kjerne.store.schema import resource

HL7 = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "hl7v2"
GLUCOSE = HL7 / "python-hl7" / "GHH-LAB-ORU_R01-glucose.hl7"
ORU = [*sorted((HL7 / "microsoft-fhir-converter").glob("*ORU*.hl7")), GLUCOSE]


@pytest.fixture
def api(engine: Engine, db_url: str, tmp_path: Path) -> Iterator[tuple[TestClient, str, Engine]]:
    settings = Settings(db_url=db_url, dev=True, var_dir=tmp_path, base_url="http://testserver")
    token = dev_issuer(settings).system_token(org="974760673", scope="system/*.write")
    with TestClient(create_app(settings, engine=engine)) as client:
        yield client, token, engine


def post(client: TestClient, token: str, body: bytes, content_type: str = "application/hl7-v2") -> tuple[int, str]:
    r = client.post(
        "/ingest/hl7v2", content=body, headers={"authorization": f"Bearer {token}", "content-type": content_type}
    )
    return r.status_code, r.text


def msa(ack_text: str) -> str:
    message = hl7.parse(ack_text.replace("\n", "\r"))
    return str(message.segment("MSA")[1])


def reports(engine: Engine) -> int:
    with engine.connect() as conn:
        q = select(func.count()).select_from(resource).where(resource.c.res_type == "DiagnosticReport")
        return conn.execute(q).scalar_one()


@pytest.mark.parametrize("path", ORU, ids=lambda p: p.name)
def test_oru_messages_are_acknowledged_and_stored(api, path: Path) -> None:
    client, token, engine = api
    status, text = post(client, token, path.read_bytes())
    assert status == 200, text
    assert msa(text) == "AA"
    assert reports(engine) >= 1
    again_status, again = post(client, token, path.read_bytes())
    assert (again_status, msa(again)) == (200, "AA")


def test_unsupported_message_type_gets_a_nak_and_stores_nothing(api) -> None:
    client, token, engine = api
    status, text = post(client, token, (HL7 / "microsoft-fhir-converter" / "OUL-R22-01.hl7").read_bytes())
    assert status == 400
    assert msa(text) in ("AR", "AE")
    assert "OUL" in text
    assert reports(engine) == 0


def test_not_hl7_gets_a_refusal(api) -> None:
    client, token, engine = api
    status, _ = post(client, token, b"this is not an HL7 message")
    assert status == 400
    assert reports(engine) == 0


def test_media_type_and_token_are_required(api) -> None:
    client, token, engine = api
    assert post(client, token, ORU[0].read_bytes(), "application/json")[0] == 415
    r = client.post("/ingest/hl7v2", content=ORU[0].read_bytes(), headers={"content-type": "application/hl7-v2"})
    assert r.status_code == 401
    assert reports(engine) == 0
