"""Who is using a portal, and the access engine bound to them.

A portal user is a token in the session cookie. In development the portal mints that token for a demo
persona with the development issuer; in production it comes from the OpenID Connect provider. Either way
it is verified on every request by the same TokenVerifier the API uses, and every page then reads through
an AccessPolicy and a Repository exactly like an API request, with channel "portal".
"""

from __future__ import annotations

import base64
import binascii
import time
import zlib
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from sqlalchemy import Engine
from starlette.requests import Request

from kjerne.access.devissuer import DevIssuer
from kjerne.access.policy import AccessPolicy, RequestInfo
from kjerne.access.principal import Principal
from kjerne.access.tokens import AuthError, TokenVerifier
from kjerne.config import Settings
from kjerne.fhir.identifiers import is_valid_orgnr
from kjerne.store.repository import Repository
from kjerne.web.common import NotLoggedIn, fresh_session
from kjerne.web.oidc import OidcClient, OidcConfig

CITIZEN = "citizen"
PRACTITIONER = "practitioner"


@dataclass
class Web:
    """Everything the page handlers need, built once when the routes are made."""

    settings: Settings
    engine: Engine
    verifier: TokenVerifier
    dev: DevIssuer | None = None
    oidc: OidcClient | None = None
    _times: dict[str, float] = field(default_factory=dict)

    def verifier_for(self, request: Request) -> TokenVerifier:
        gate = getattr(request.app.state, "gate", None)
        return gate.verifier if gate is not None else self.verifier

    def principal(self, request: Request, kind: str) -> Principal:
        packed = request.session.get("token")
        if not isinstance(packed, str) or not packed:
            raise NotLoggedIn()
        try:
            principal = self.verifier_for(request).verify("Bearer " + unpack_token(packed))
        except (AuthError, ValueError):
            fresh_session(request)
            raise NotLoggedIn("utlopt") from None
        if principal.kind != kind:
            fresh_session(request)
            raise NotLoggedIn()
        return principal

    def repository(
        self,
        principal: Principal,
        *,
        basis: str | None = None,
        person_id: str | None = None,
        reason: str | None = None,
    ) -> Repository:
        """A Repository bound to one AccessPolicy for this page, as the API builds one per request."""
        policy = AccessPolicy(
            self.engine,
            principal,
            RequestInfo(access_basis=basis, person_id=person_id, reason=reason, channel="portal"),
        )
        return Repository(self.engine, policy, base_url=self.settings.fhir_base())


def pack_token(token: str) -> str:
    """The token in fewer bytes, for the session cookie (browsers keep at most 4 KB per cookie). A JWT's
    payload is base64url of JSON; kept as compressed JSON it is about half the size, and it is encoded
    again exactly as it was when the token is unpacked."""
    parts = token.split(".")
    if len(parts) == 3:
        try:
            raw = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        except (binascii.Error, ValueError):
            raw = None
        if raw is not None and _b64(raw) == parts[1]:
            blob = zlib.compress(f"{parts[0]}.{parts[2]}".encode("ascii") + b"\n" + raw, 9)
            return "z:" + base64.urlsafe_b64encode(blob).decode("ascii")
    return "t:" + token


def unpack_token(packed: str) -> str:
    if packed.startswith("t:"):
        return packed[2:]
    if not packed.startswith("z:"):
        raise ValueError("not a packed token")
    try:
        blob = zlib.decompress(base64.urlsafe_b64decode(packed[2:]))
        head, raw = blob.split(b"\n", 1)
        header, signature = head.decode("ascii").split(".")
    except (binascii.Error, ValueError, zlib.error) as exc:
        raise ValueError("not a packed token") from exc
    return f"{header}.{_b64(raw)}.{signature}"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def build(settings: Settings, engine: Engine) -> Web:
    from kjerne.api.auth import build_verifier, dev_issuer

    config = OidcConfig.from_env()
    return Web(
        settings=settings,
        engine=engine,
        verifier=build_verifier(settings),
        dev=dev_issuer(settings) if settings.dev else None,
        oidc=OidcClient(config) if config else None,
    )


# -- demo personas (development log-in) --------------------------------------------------------------


@cache
def _personas() -> dict[str, Any]:
    from kjerne.demo.personas import personas

    return personas()


def citizen_personas() -> list[dict[str, Any]]:
    return list(_personas()["citizens"])


def practitioner_personas() -> list[dict[str, Any]]:
    return list(_personas()["practitioners"])


def citizen_persona(key: str) -> dict[str, Any] | None:
    return next((p for p in citizen_personas() if p["key"] == key), None)


def practitioner_persona(key: str) -> dict[str, Any] | None:
    return next((p for p in practitioner_personas() if p["key"] == key), None)


def citizen_token(dev: DevIssuer, persona: dict[str, Any]) -> str:
    return dev.citizen_token(persona["fnr"], name=persona["name"])


def practitioner_token(dev: DevIssuer, persona: dict[str, Any], patients: list[str], purpose: str = "TREAT") -> str:
    """A HelseID-like token whose attestation names `patients`, minted when a patient is looked up."""
    legal = persona.get("legal_entity_org_number") or persona["org_number"]
    unit = persona["org_number"]
    child = unit if unit != legal and is_valid_orgnr(unit) else None
    return dev.practitioner_token(
        hpr=persona["hpr"],
        pid=persona["fnr"],
        org=legal,
        child_org=child,
        purpose=purpose,
        patients=patients,
        name=persona["name"],
        org_name=persona.get("legal_entity_name") or persona.get("org_name"),
        child_org_name=persona.get("org_name") if child else None,
        authorization_code=persona.get("role") or "LE",
        toa=int(time.time()),
    )
