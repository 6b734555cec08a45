"""Log-in through an OpenID Connect provider: authorization code flow with PKCE (RFC 7636, S256).

Configured from the environment: `KJERNE_OIDC_ISSUER`, `KJERNE_OIDC_CLIENT_ID`, `KJERNE_OIDC_CLIENT_SECRET`
(and optionally `KJERNE_OIDC_SCOPE`). The provider's endpoints come from its discovery document. The
access token the provider returns is what the portal sends to the access engine; the engine only trusts
it when its issuer is also listed in `KJERNE_ISSUERS`, exactly as for the API. See docs/portals.md.

The flow keeps `state`, `nonce` and the PKCE verifier in the signed session cookie between the redirect
and the callback, and accepts a callback only once and only within ten minutes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

FLOW_LIFETIME = 600  # seconds between the redirect to the provider and the callback


class OidcError(Exception):
    """The log-in could not be completed; the message is safe to show."""


@dataclass(frozen=True, slots=True)
class OidcConfig:
    issuer: str
    client_id: str
    client_secret: str | None
    scope: str = "openid profile"

    @classmethod
    def from_env(cls, environ: Any = None) -> OidcConfig | None:
        env = os.environ if environ is None else environ
        issuer = (env.get("KJERNE_OIDC_ISSUER") or "").strip().rstrip("/")
        client_id = (env.get("KJERNE_OIDC_CLIENT_ID") or "").strip()
        if not issuer or not client_id:
            return None
        return cls(
            issuer=issuer,
            client_id=client_id,
            client_secret=(env.get("KJERNE_OIDC_CLIENT_SECRET") or None),
            scope=(env.get("KJERNE_OIDC_SCOPE") or "openid profile").strip(),
        )


def code_verifier() -> str:
    """43-128 characters from the unreserved set; 32 random bytes give 43."""
    return secrets.token_urlsafe(32)


def code_challenge(verifier: str) -> str:
    """S256: base64url(sha256(verifier)) without padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def new_flow(now: float | None = None) -> dict[str, Any]:
    """What the session keeps between the redirect and the callback."""
    return {
        "state": secrets.token_urlsafe(24),
        "nonce": secrets.token_urlsafe(24),
        "verifier": code_verifier(),
        "started": int(now if now is not None else time.time()),
    }


def check_state(flow: dict[str, Any] | None, state: str | None, now: float | None = None) -> dict[str, Any]:
    """The flow a callback belongs to; raises OidcError for a missing, wrong or stale state."""
    if not flow or not isinstance(flow.get("state"), str):
        raise OidcError("no log-in was started in this browser")
    if not state or not hmac.compare_digest(flow["state"], state):
        raise OidcError("the log-in answer does not belong to this browser's log-in")
    started = flow.get("started")
    current = now if now is not None else time.time()
    if not isinstance(started, int) or current - started > FLOW_LIFETIME or current < started - 60:
        raise OidcError("the log-in took too long; start again")
    return flow


class OidcClient:
    def __init__(self, config: OidcConfig, *, http: httpx.Client | None = None) -> None:
        self.config = config
        self.http = http or httpx.Client(timeout=10)
        self._discovery: dict[str, Any] | None = None
        self._jwks: KeySet | None = None

    def discovery(self) -> dict[str, Any]:
        if self._discovery is None:
            url = self.config.issuer + "/.well-known/openid-configuration"
            try:
                r = self.http.get(url)
                r.raise_for_status()
                doc = r.json()
            except (httpx.HTTPError, ValueError) as exc:
                raise OidcError(f"the identity provider cannot be reached ({type(exc).__name__})") from None
            if doc.get("issuer", "").rstrip("/") != self.config.issuer:
                raise OidcError("the identity provider's discovery document names another issuer")
            self._discovery = doc
        return self._discovery

    def authorization_url(self, flow: dict[str, Any], redirect_uri: str, extra: dict[str, str] | None = None) -> str:
        endpoint = self.discovery()["authorization_endpoint"]
        params = {
            "response_type": "code",
            "client_id": self.config.client_id,
            "redirect_uri": redirect_uri,
            "scope": self.config.scope,
            "state": flow["state"],
            "nonce": flow["nonce"],
            "code_challenge": code_challenge(flow["verifier"]),
            "code_challenge_method": "S256",
            **(extra or {}),
        }
        if extra and "authorization_details" in extra:
            # The details name patients by national id, which must not travel in a URL: push them.
            params = self._pushed(params)
        return endpoint + ("&" if "?" in endpoint else "?") + urlencode(params)

    def _pushed(self, params: dict[str, str]) -> dict[str, str]:
        """Pushed authorization request (RFC 9126): the parameters go to the provider in a POST body, and
        the browser is redirected with only the `request_uri` the provider hands back."""
        par = self.discovery().get("pushed_authorization_request_endpoint")
        if not par:
            raise OidcError("the identity provider does not take pushed authorization requests")
        auth = (self.config.client_id, self.config.client_secret) if self.config.client_secret else None
        try:
            r = self.http.post(par, data=params, auth=auth)
        except httpx.HTTPError as exc:
            raise OidcError(f"the identity provider cannot be reached ({type(exc).__name__})") from None
        body = r.json() if r.status_code in (200, 201) else {}
        if not isinstance(body, dict) or not isinstance(body.get("request_uri"), str):
            raise OidcError(f"the identity provider refused the log-in request ({r.status_code})")
        return {"client_id": self.config.client_id, "request_uri": body["request_uri"]}

    def exchange(self, flow: dict[str, Any], code: str, redirect_uri: str) -> dict[str, Any]:
        """Trade the code for tokens; checks the ID token's signature, issuer, audience and nonce."""
        doc = self.discovery()
        data = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": flow["verifier"],
            "client_id": self.config.client_id,
        }
        auth = (self.config.client_id, self.config.client_secret) if self.config.client_secret else None
        try:
            r = self.http.post(doc["token_endpoint"], data=data, auth=auth)
        except httpx.HTTPError as exc:
            raise OidcError(f"the identity provider cannot be reached ({type(exc).__name__})") from None
        if r.status_code != 200:
            raise OidcError(f"the identity provider refused the log-in ({r.status_code})")
        try:
            tokens = r.json()
        except ValueError:
            raise OidcError("the identity provider's answer is not JSON") from None
        if not isinstance(tokens, dict) or not isinstance(tokens.get("access_token"), str):
            raise OidcError("the identity provider sent no access token")
        if tokens.get("id_token"):
            self.check_id_token(tokens["id_token"], flow["nonce"])
        return tokens

    def keys(self) -> KeySet:
        if self._jwks is None:
            try:
                r = self.http.get(self.discovery()["jwks_uri"])
                r.raise_for_status()
                self._jwks = KeySet.import_key_set(r.json())
            except (httpx.HTTPError, ValueError, KeyError, JoseError) as exc:
                raise OidcError(f"the identity provider's keys cannot be read ({type(exc).__name__})") from None
        return self._jwks

    def check_id_token(self, id_token: str, nonce: str, now: float | None = None) -> dict[str, Any]:
        try:
            token = jwt.decode(id_token, self.keys(), algorithms=["RS256", "ES256", "PS256"])
        except (JoseError, ValueError) as exc:
            raise OidcError(f"the ID token is not valid ({type(exc).__name__})") from None
        claims = dict(token.claims)
        current = now if now is not None else time.time()
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if str(claims.get("iss", "")).rstrip("/") != self.config.issuer:
            raise OidcError("the ID token is from another issuer")
        if self.config.client_id not in audiences:
            raise OidcError("the ID token is for another client")
        if not isinstance(claims.get("exp"), int | float) or claims["exp"] < current - 30:
            raise OidcError("the ID token has expired")
        if not isinstance(claims.get("nonce"), str) or not hmac.compare_digest(claims["nonce"], nonce):
            raise OidcError("the ID token does not belong to this log-in")
        return claims


def attestation_request(patients: list[str], purpose: str) -> str:
    """`authorization_details` (RFC 9396) asking the provider for an attestation naming `patients`, as a
    practitioner's log-in does when a patient is looked up. The provider fills in the practitioner."""
    return json.dumps(
        [
            {
                "type": "nhn:tillitsrammeverk:parameters",
                "care_relationship": {"purpose_of_use": {"code": purpose}},
                "patients": [{"identifier": {"id": p}} for p in patients],
            }
        ],
        separators=(",", ":"),
    )
