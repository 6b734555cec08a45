"""The portal's own parts that need no browser: OpenID Connect (PKCE, state, the callback's token
exchange), the session key, packed tokens, CSRF, charts and number formatting."""

from __future__ import annotations

import datetime as dt
import json
import stat
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from kjerne.access.devissuer import DevIssuer
from kjerne.web import charts, fmt, oidc
from kjerne.web.auth import pack_token, unpack_token
from kjerne.web.common import check_csrf, csrf_token, local_path, session_key

ISSUER = "https://idp.example.test"


def test_pkce_challenge_matches_rfc_7636_appendix_b() -> None:
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert oidc.code_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_code_verifier_is_long_enough_and_unreserved() -> None:
    v = oidc.code_verifier()
    assert 43 <= len(v) <= 128
    assert set(v) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
    assert oidc.code_verifier() != v


def test_state_must_match_and_be_fresh() -> None:
    flow = oidc.new_flow(now=1000)
    assert oidc.check_state(flow, flow["state"], now=1100) is flow
    with pytest.raises(oidc.OidcError, match="does not belong"):
        oidc.check_state(flow, "other", now=1100)
    with pytest.raises(oidc.OidcError, match="does not belong"):
        oidc.check_state(flow, None, now=1100)
    with pytest.raises(oidc.OidcError, match="no log-in"):
        oidc.check_state(None, flow["state"], now=1100)
    with pytest.raises(oidc.OidcError, match="too long"):
        oidc.check_state(flow, flow["state"], now=1000 + oidc.FLOW_LIFETIME + 1)


def test_config_from_the_environment() -> None:
    assert oidc.OidcConfig.from_env({}) is None
    config = oidc.OidcConfig.from_env(
        {"KJERNE_OIDC_ISSUER": ISSUER + "/", "KJERNE_OIDC_CLIENT_ID": "portal", "KJERNE_OIDC_CLIENT_SECRET": "s"}
    )
    assert config == oidc.OidcConfig(ISSUER, "portal", "s", "openid profile")


class FakeProvider:
    """An identity provider in memory: discovery, keys, PAR and the token endpoint."""

    def __init__(self) -> None:
        self.key = RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig", "alg": "RS256"})
        self.nonce = ""
        self.pushed: dict[str, list[str]] = {}
        self.token_form: dict[str, list[str]] = {}

    def handler(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/.well-known/openid-configuration":
            return httpx.Response(
                200,
                json={
                    "issuer": ISSUER,
                    "authorization_endpoint": ISSUER + "/authorize",
                    "token_endpoint": ISSUER + "/token",
                    "jwks_uri": ISSUER + "/jwks",
                    "pushed_authorization_request_endpoint": ISSUER + "/par",
                },
            )
        if path == "/jwks":
            return httpx.Response(200, json={"keys": [self.key.as_dict(private=False)]})
        if path == "/par":
            self.pushed = parse_qs(request.content.decode())
            return httpx.Response(201, json={"request_uri": "urn:par:123", "expires_in": 60})
        if path == "/token":
            self.token_form = parse_qs(request.content.decode())
            now = int(time.time())
            claims = {"iss": ISSUER, "aud": "portal", "sub": "x", "iat": now, "exp": now + 300, "nonce": self.nonce}
            id_token = jwt.encode({"alg": "RS256", "kid": "k1"}, claims, self.key)
            return httpx.Response(200, json={"access_token": "the-access-token", "id_token": id_token})
        return httpx.Response(404)


@pytest.fixture
def provider() -> tuple[FakeProvider, oidc.OidcClient]:
    fake = FakeProvider()
    client = oidc.OidcClient(
        oidc.OidcConfig(ISSUER, "portal", "secret"), http=httpx.Client(transport=httpx.MockTransport(fake.handler))
    )
    return fake, client


def test_authorization_url_carries_pkce_state_and_nonce(provider: tuple[FakeProvider, oidc.OidcClient]) -> None:
    _fake, client = provider
    flow = oidc.new_flow()
    url = client.authorization_url(flow, "https://portal.test/innbygger/oidc/callback")
    q = parse_qs(urlsplit(url).query)
    assert url.startswith(ISSUER + "/authorize?")
    assert q["code_challenge"] == [oidc.code_challenge(flow["verifier"])]
    assert q["code_challenge_method"] == ["S256"]
    assert q["state"] == [flow["state"]] and q["nonce"] == [flow["nonce"]]
    assert "code_verifier" not in q


def test_a_patient_lookup_is_pushed_so_the_national_id_is_never_in_a_url(
    provider: tuple[FakeProvider, oidc.OidcClient],
) -> None:
    fake, client = provider
    details = oidc.attestation_request(["13116900216"], "TREAT")
    url = client.authorization_url(oidc.new_flow(), "https://portal.test/cb", {"authorization_details": details})
    assert "13116900216" not in url
    assert parse_qs(urlsplit(url).query)["request_uri"] == ["urn:par:123"]
    assert json.loads(fake.pushed["authorization_details"][0])[0]["patients"][0]["identifier"]["id"] == "13116900216"


def test_the_code_is_exchanged_with_the_verifier_and_the_id_token_checked(
    provider: tuple[FakeProvider, oidc.OidcClient],
) -> None:
    fake, client = provider
    flow = oidc.new_flow()
    fake.nonce = flow["nonce"]
    tokens = client.exchange(flow, "the-code", "https://portal.test/cb")
    assert tokens["access_token"] == "the-access-token"
    assert fake.token_form["code_verifier"] == [flow["verifier"]]
    assert fake.token_form["grant_type"] == ["authorization_code"]
    fake.nonce = "someone else's"
    with pytest.raises(oidc.OidcError, match="does not belong"):
        client.exchange(flow, "the-code", "https://portal.test/cb")


def test_the_session_key_is_created_once_and_private(tmp_path: Path) -> None:
    key = session_key(tmp_path)
    path = tmp_path / "keys" / "session.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(key) >= 64 and session_key(tmp_path) == key


def test_a_packed_token_unpacks_to_the_same_token_and_is_smaller(tmp_path: Path) -> None:
    dev = DevIssuer(tmp_path)
    token = dev.practitioner_token(
        hpr="5651203", pid="11847840031", org="997203194", patients=["13116900216"], name="Siri Holmen"
    )
    packed = pack_token(token)
    assert unpack_token(packed) == token
    assert len(packed) < len(token) * 0.75
    assert unpack_token(pack_token("not.a-jwt")) == "not.a-jwt"
    with pytest.raises(ValueError):
        unpack_token("z:garbage")


def test_csrf_token_is_checked() -> None:
    async def form(request: Request) -> PlainTextResponse:
        if request.method == "GET":
            return PlainTextResponse(csrf_token(request))
        check_csrf(request, await request.form())
        return PlainTextResponse("ok")

    app = Starlette(
        routes=[Route("/", form, methods=["GET", "POST"])],
        middleware=[Middleware(SessionMiddleware, secret_key="k" * 32, same_site="strict")],
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        token = client.get("/").text
        assert client.post("/", data={"csrf": token}).text == "ok"
        assert client.post("/", data={"csrf": token + "x"}).status_code == 403
        assert client.post("/", data={}).status_code == 403


@pytest.mark.parametrize(
    ("target", "expected"),
    [("/innbygger/", "/innbygger/"), ("//evil.test/", "/"), ("https://evil.test/", "/"), (None, "/"), ("/\\x", "/")],
)
def test_redirect_targets_stay_on_the_site(target: str | None, expected: str) -> None:
    assert local_path(target, "/") == expected


def test_a_chart_has_bands_points_and_a_text_alternative() -> None:
    start = dt.datetime(2026, 1, 1, tzinfo=fmt.OSLO)
    points = [(start + dt.timedelta(days=i), 60.0 + i) for i in range(10)]
    svg = str(
        charts.line_chart(
            "Puls <test>",
            "Ti målinger",
            [charts.Series("Puls", points, flagged={9})],
            start=start,
            end=start + dt.timedelta(days=10),
            bands=[charts.Band(None, 40, "low", "band-critical"), charts.Band(65, None, "high")],
            unit="/min",
        )
    )
    assert svg.startswith("<svg") and 'role="img"' in svg
    assert "Puls &lt;test&gt;" in svg and "<desc" in svg
    assert svg.count("<circle") == 10 and svg.count("flagged") == 1
    assert 'class="band-alert"' in svg
    assert "<polyline" in svg


def test_ticks_are_round_numbers() -> None:
    assert charts.nice_ticks(0, 100) == [0, 20, 40, 60, 80, 100]
    assert charts.nice_ticks(3.2, 4.1)[0] >= 3.2


@pytest.mark.parametrize(
    ("value", "text"), [(13.4, "13,4"), (135, "135"), (0.5, "0,5"), (1e-7, "0"), (None, ""), (2.0, "2")]
)
def test_numbers_are_written_the_norwegian_way(value: Any, text: str) -> None:
    assert fmt.number(value) == text


def test_flags_from_interpretation_and_range() -> None:
    obs = {"valueQuantity": {"value": 150}, "referenceRange": [{"low": {"value": 117}, "high": {"value": 140}}]}
    assert fmt.flag(obs) == "high"
    obs["interpretation"] = [{"coding": [{"code": "L"}]}]
    assert fmt.flag(obs) == "low"
    assert fmt.flag({"valueQuantity": {"value": 120}, "referenceRange": obs["referenceRange"]}) is None
