"""Bearer token verification: from an ``Authorization`` header to a ``Principal``, or a 401.

A token is accepted when

1. it is a compact JWS signed with RS256 or ES256 (``none``, HMAC and everything else are refused,
   so a token can never be "signed" with a public key used as an HMAC secret);
2. its ``iss`` is one of the configured issuers and the signature verifies with a key from that
   issuer's JWKS (a file, re-read when it changes, or a URL, cached for ``jwks_ttl`` seconds and
   re-fetched early once when a token names an unknown ``kid``, which is how issuers rotate keys);
3. ``aud`` names one of the issuer's accepted audiences, ``exp`` lies in the future, and ``nbf`` and
   ``iat`` are not in the future, each with 30 seconds of leeway for clock skew;
4. its claims describe one of three callers (see ``Principal``):

   * health personnel: HelseID ``pid`` + ``hpr_number`` at security level 4, with a tillitsrammeverk
     attestation that is at most an hour old and names the same person;
   * a citizen: ``pid`` at security level 4 and no HPR number;
   * a system: no ``pid``, an organisation number and at least one ``system/`` scope.

Every failure raises ``AuthError``; its message is written for the client and says what was wrong
without echoing token contents.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from joserfc import jws
from joserfc.errors import ClaimError, ExpiredTokenError, JoseError, MissingClaimError
from joserfc.jwk import ECKey, JWKRegistry, Key, RSAKey
from joserfc.jwt import JWTClaimsRegistry

from kjerne.access.attestation import (
    MAX_AGE_SECONDS,
    AttestationError,
    check_attestation,
    find_attestation,
    parse_attestation,
)
from kjerne.access.principal import Attestation, Principal
from kjerne.access.scopes import Scopes

log = logging.getLogger(__name__)

ALLOWED_ALGORITHMS: tuple[str, ...] = ("RS256", "ES256")
LEEWAY_SECONDS = 30
REQUIRED_SECURITY_LEVEL = "4"

CLAIM_PID = "helseid://claims/identity/pid"
CLAIM_HPR = "helseid://claims/hpr/hpr_number"
CLAIM_SECURITY_LEVEL = "helseid://claims/identity/security_level"
CLAIM_ORGNR_PARENT = "helseid://claims/client/claims/orgnr_parent"
CLAIM_ORGNR_CHILD = "helseid://claims/client/claims/orgnr_child"
CLAIM_CLIENT_NAME = "helseid://claims/client/client_name"

# ID-porten and older OIDC providers express level 4 ("high") in their own words.
_SECURITY_LEVEL_ALIASES = {
    "level4": "4",
    "idporten-loa-high": "4",
    "high": "4",
    "level3": "3",
    "idporten-loa-substantial": "3",
    "substantial": "3",
}
VERIFIED_CACHE_SIZE = 10_000  # tokens remembered as verified, least recently used dropped first
_JWKS_RETRY_SECONDS = 30.0  # least time between two fetches of a JWKS URL, whatever the reason
_JWKS_FETCH_TIMEOUT = 5.0
_MAX_TOKEN_LENGTH = 16_384


@dataclass
class IssuerConfig:
    """A trusted token issuer. Exactly one key source: ``jwks_path``, ``jwks_url`` or an inline ``jwks``."""

    issuer: str
    audiences: tuple[str, ...]
    jwks_path: str | None = None
    jwks_url: str | None = None
    jwks: dict[str, Any] | None = None
    jwks_ttl: float = 300.0  # seconds a JWKS fetched from jwks_url is trusted before it is fetched again

    def __post_init__(self) -> None:
        if isinstance(self.audiences, str):
            self.audiences = (self.audiences,)
        self.audiences = tuple(self.audiences)
        if not self.issuer:
            raise ValueError("issuer must not be empty")
        if not self.audiences:
            raise ValueError(f"issuer {self.issuer}: at least one audience is required")
        sources = [s for s in (self.jwks_path, self.jwks_url, self.jwks) if s is not None]
        if len(sources) != 1:
            raise ValueError(f"issuer {self.issuer}: give exactly one of jwks_path, jwks_url, jwks")


def load_issuers(path: str | Path) -> list[IssuerConfig]:
    """Issuers from a JSON file: a list of ``{"issuer", "audiences", "jwks_path" | "jwks_url" | "jwks",
    "jwks_ttl"?}``. A relative ``jwks_path`` is taken relative to the file."""
    source = Path(path)
    data = json.loads(source.read_text(encoding="utf-8"))
    if not isinstance(data, list):
        raise ValueError(f"{source}: expected a JSON list of issuers")
    configs: list[IssuerConfig] = []
    for entry in data:
        if not isinstance(entry, dict):
            raise ValueError(f"{source}: each issuer must be a JSON object")
        unknown = set(entry) - {"issuer", "audiences", "jwks_path", "jwks_url", "jwks", "jwks_ttl"}
        if unknown:
            raise ValueError(f"{source}: unknown issuer settings {sorted(unknown)}")
        audiences = entry.get("audiences", ())
        jwks_path = entry.get("jwks_path")
        if jwks_path is not None and not Path(jwks_path).is_absolute():
            jwks_path = str(source.parent / jwks_path)
        configs.append(
            IssuerConfig(
                issuer=entry.get("issuer", ""),
                audiences=(audiences,) if isinstance(audiences, str) else tuple(audiences),
                jwks_path=jwks_path,
                jwks_url=entry.get("jwks_url"),
                jwks=entry.get("jwks"),
                jwks_ttl=float(entry.get("jwks_ttl", 300.0)),
            )
        )
    return configs


@dataclass(eq=False)  # exceptions stay hashable and compare by identity
class AuthError(Exception):
    """Authentication failed. ``message`` is safe to show to the client."""

    status: int = 401
    message: str = "authentication required"
    error: str | None = "invalid_token"  # RFC 6750 error code; None when no token was presented

    def __str__(self) -> str:
        return self.message

    @property
    def www_authenticate(self) -> str:
        """Value for the ``WWW-Authenticate`` response header (RFC 6750)."""
        if not self.error:
            return 'Bearer realm="kjerne"'
        description = self.message.replace("\\", "").replace('"', "'")
        return f'Bearer realm="kjerne", error="{self.error}", error_description="{description}"'


def _reject(message: str, status: int = 401) -> AuthError:
    return AuthError(status=status, message=message)


class JwksSource:
    """The verification keys of one issuer, loaded on demand and kept up to date."""

    def __init__(self, config: IssuerConfig, clock: Callable[[], float], http: httpx.Client | None = None):
        self.config = config
        self._clock = clock
        self._http = http
        self._keys: list[Key] = []
        self._file_stamp: tuple[int, int] | None = None
        self._next_fetch = -math.inf  # when the URL may (TTL) or must be fetched again
        self._last_fetch = -math.inf
        self._lock = threading.Lock()
        if config.jwks is not None:
            self._keys = _import_jwks(config.jwks, config.issuer)

    def keys(self, *, refresh: bool = False) -> list[Key]:
        """Current keys. ``refresh`` asks a URL source to fetch again early (rate-limited)."""
        with self._lock:
            if self.config.jwks_path is not None:
                self._load_file(Path(self.config.jwks_path))
            elif self.config.jwks_url is not None:
                now = self._clock()
                early = refresh and now - self._last_fetch >= _JWKS_RETRY_SECONDS
                if now >= self._next_fetch or early:
                    self._fetch(self.config.jwks_url, now)
            if not self._keys:
                raise _reject("the token issuer's keys are not available", status=503)
            return list(self._keys)

    def _load_file(self, path: Path) -> None:
        try:
            stat = path.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
            if stamp == self._file_stamp:
                return
            keys = _import_jwks(json.loads(path.read_text(encoding="utf-8")), self.config.issuer)
        except (OSError, ValueError) as error:
            log.error("cannot read JWKS %s for issuer %s: %s", path, self.config.issuer, error)
            return  # keep what we had, if anything
        self._keys, self._file_stamp = keys, stamp

    def _fetch(self, url: str, now: float) -> None:
        self._last_fetch = now
        try:
            if self._http is not None:
                response = self._http.get(url, timeout=_JWKS_FETCH_TIMEOUT)
            else:
                response = httpx.get(url, timeout=_JWKS_FETCH_TIMEOUT)
            response.raise_for_status()
            keys = _import_jwks(response.json(), self.config.issuer)
        except (httpx.HTTPError, ValueError) as error:
            log.warning("cannot fetch JWKS %s for issuer %s: %s", url, self.config.issuer, error)
            self._next_fetch = now + _JWKS_RETRY_SECONDS
            return  # keep serving the keys we have until the issuer answers again
        self._keys = keys
        self._next_fetch = now + self.config.jwks_ttl


def _import_jwks(data: object, issuer: str) -> list[Key]:
    """The RSA and EC signature keys of a JWKS document; other keys are skipped."""
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise ValueError("not a JWKS document")
    keys: list[Key] = []
    for entry in data["keys"]:
        if not isinstance(entry, dict) or entry.get("kty") not in ("RSA", "EC") or entry.get("use") == "enc":
            continue
        public = {k: v for k, v in entry.items() if k not in ("d", "p", "q", "dp", "dq", "qi", "oth")}
        try:
            keys.append(JWKRegistry.import_key(public))
        except (JoseError, ValueError, TypeError) as error:
            log.warning("skipping unusable key %s from issuer %s: %s", entry.get("kid"), issuer, error)
    return keys


def _candidates(keys: list[Key], alg: str, kid: str | None) -> list[Key]:
    out: list[Key] = []
    for key in keys:
        if kid is not None and key.kid != kid:
            continue
        if key.get("alg") not in (None, alg):
            continue
        if _fits(key, alg):
            out.append(key)
    return out


def _fits(key: Key, alg: str) -> bool:
    if alg == "RS256":
        return isinstance(key, RSAKey)
    return alg == "ES256" and isinstance(key, ECKey) and key.curve_name == "P-256"


class TokenVerifier:
    """Verifies bearer tokens against the configured issuers and builds the ``Principal``."""

    def __init__(
        self,
        issuers: list[IssuerConfig],
        clock: Callable[[], float] = time.time,
        attestation_max_age: int = MAX_AGE_SECONDS,
        *,
        require_attestation: bool = True,
        http: httpx.Client | None = None,
    ):
        self._clock = clock
        self._attestation_max_age = attestation_max_age
        self._require_attestation = require_attestation
        self._registry = jws.JWSRegistry(algorithms=list(ALLOWED_ALGORITHMS), strict_check_header=False)
        self._issuers: dict[str, tuple[IssuerConfig, JwksSource]] = {}
        for config in issuers:
            if config.issuer in self._issuers:
                raise ValueError(f"issuer {config.issuer} is configured twice")
            self._issuers[config.issuer] = (config, JwksSource(config, clock, http))
        # Tokens whose signature was verified, with the key that verified it. A client sends the same
        # token for minutes; checking an RS256/ES256 signature costs more than the rest of a read. A hit
        # counts only while that very key is still published (a rotated JWKS imports new key objects),
        # and expiry, audience and the attestation are checked anew on every request.
        self._verified: OrderedDict[str, tuple[Key, bytes, IssuerConfig]] = OrderedDict()
        self._verified_lock = threading.Lock()

    @property
    def issuers(self) -> list[IssuerConfig]:
        return [config for config, _ in self._issuers.values()]

    def verify(self, authorization_header: str | None) -> Principal:
        """The caller behind ``Authorization: Bearer <jwt>``; raises ``AuthError`` otherwise."""
        token = _bearer_token(authorization_header)
        claims = self._verified_claims(token)
        return self._principal(claims)

    # -- signature and registered claims ----------------------------------------------------------

    def _verified_claims(self, token: str) -> dict[str, Any]:
        hit = self._verified_signature(token)
        if hit is not None:
            claims, config = hit
            self._check_registered_claims(claims, config)
            return claims
        try:
            obj = jws.extract_compact(token.encode("ascii"), registry=self._registry)
        except (JoseError, ValueError, UnicodeError):
            raise _reject("the bearer token is not a well-formed signed JWT") from None
        header = obj.headers()
        alg = header.get("alg")
        if alg not in ALLOWED_ALGORITHMS:
            raise _reject("the token must be signed with RS256 or ES256")
        if "crit" in header or "b64" in header:
            raise _reject("the token uses unsupported header parameters")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise _reject("the token's key id (kid) is malformed")
        try:
            unverified = json.loads(obj.payload)
        except ValueError:
            unverified = None
        if not isinstance(unverified, dict):
            raise _reject("the token's payload is not a JSON object")

        issuer = unverified.get("iss")
        entry = self._issuers.get(issuer) if isinstance(issuer, str) else None
        if entry is None:
            raise _reject("the token's issuer is not trusted")
        config, source = entry

        key = self._check_signature(obj, source, alg, kid)
        self._check_registered_claims(unverified, config)
        self._remember(token, key, obj.payload, config)
        return unverified

    def _verified_signature(self, token: str) -> tuple[dict[str, Any], IssuerConfig] | None:
        with self._verified_lock:
            hit = self._verified.get(token)
            if hit is None:
                return None
            self._verified.move_to_end(token)
        key, payload, config = hit
        published = self._issuers[config.issuer][1].keys()
        if not any(k is key for k in published):
            with self._verified_lock:
                self._verified.pop(token, None)
            return None
        return json.loads(payload), config  # a fresh copy: callers may not alter what is remembered

    def _remember(self, token: str, key: Key, payload: bytes, config: IssuerConfig) -> None:
        with self._verified_lock:
            self._verified[token] = (key, payload, config)
            while len(self._verified) > VERIFIED_CACHE_SIZE:
                self._verified.popitem(last=False)

    def _check_signature(self, obj: jws.CompactSignature, source: JwksSource, alg: str, kid: str | None) -> Key:
        candidates = _candidates(source.keys(), alg, kid)
        if not candidates and kid is not None:
            candidates = _candidates(source.keys(refresh=True), alg, kid)
        if not candidates:
            raise _reject("the token is signed with a key the issuer does not publish")
        for key in candidates:
            try:
                if jws.validate_compact(obj, key, registry=self._registry):
                    return key
            except (JoseError, ValueError):
                continue
        raise _reject("the token's signature is not valid")

    def _check_registered_claims(self, claims: dict[str, Any], config: IssuerConfig) -> None:
        registry = JWTClaimsRegistry(
            now=int(self._clock()),
            leeway=LEEWAY_SECONDS,
            iss={"essential": True, "value": config.issuer},
            aud={"essential": True, "values": list(config.audiences)},
            exp={"essential": True},
        )
        try:
            registry.validate(claims)
        except ExpiredTokenError:
            raise _reject("the token has expired") from None
        except MissingClaimError as error:
            raise _reject(f"the token lacks required claims: {error.claim}") from None
        except ClaimError as error:
            message = _CLAIM_MESSAGES.get(error.claim, f"the token's '{error.claim}' claim is not valid")
            raise _reject(message) from None

    # -- who is asking ----------------------------------------------------------------------------

    def _principal(self, claims: dict[str, Any]) -> Principal:
        pid = _string(claims, CLAIM_PID) or _string(claims, "pid")
        hpr = _string(claims, CLAIM_HPR)
        try:
            attestation_data = find_attestation(claims)
        except AttestationError as error:
            raise _reject(str(error)) from None
        scopes = Scopes.parse(_scope_claim(claims))
        common: dict[str, Any] = {
            "child_org": _string(claims, CLAIM_ORGNR_CHILD),
            "scopes": scopes,
            "token_id": _string(claims, "jti"),
            "issuer": claims["iss"],
        }
        if hpr is not None or attestation_data is not None:
            return self._practitioner(claims, pid, hpr, attestation_data, common)
        if pid is not None:
            level = _require_level_4(claims)
            return Principal(
                kind="citizen",
                subject=pid,
                pid=pid,
                hpr=None,
                name=_person_name(claims),
                org=None,
                security_level=level,
                attestation=None,
                **common,
            )
        return self._system(claims, scopes, common)

    def _practitioner(
        self,
        claims: dict[str, Any],
        pid: str | None,
        hpr: str | None,
        attestation_data: dict[str, Any] | None,
        common: dict[str, Any],
    ) -> Principal:
        if pid is None:
            raise _reject(f"the token lacks required claims: {CLAIM_PID}")
        if hpr is None:
            raise _reject(f"the token lacks required claims: {CLAIM_HPR}")
        level = _require_level_4(claims)
        attestation: Attestation | None = None
        if attestation_data is not None:
            try:
                attestation = parse_attestation(attestation_data)
                check_attestation(
                    attestation,
                    pid=pid,
                    hpr=hpr,
                    now=self._clock(),
                    max_age=self._attestation_max_age,
                    leeway=LEEWAY_SECONDS,
                )
            except AttestationError as error:
                raise _reject(str(error)) from None
        elif self._require_attestation:
            raise _reject("health personnel tokens must carry a tillitsrammeverk attestation")
        org = _string(claims, CLAIM_ORGNR_PARENT) or (attestation.legal_entity if attestation else None)
        if org is None:
            raise _reject(f"the token lacks required claims: {CLAIM_ORGNR_PARENT}")
        return Principal(
            kind="practitioner",
            subject=pid,
            pid=pid,
            hpr=hpr,
            name=_person_name(claims) or (attestation.name if attestation else None),
            org=org,
            security_level=level,
            attestation=attestation,
            **common,
        )

    def _system(self, claims: dict[str, Any], scopes: Scopes, common: dict[str, Any]) -> Principal:
        org = _string(claims, CLAIM_ORGNR_PARENT) or _string(claims, "orgnr")
        if org is None:
            raise _reject("the token identifies neither a person (pid) nor an organisation (orgnr)")
        if "system" not in scopes.contexts:
            raise _reject("a system token needs at least one system/ scope")
        return Principal(
            kind="system",
            subject=org,
            pid=None,
            hpr=None,
            name=_string(claims, CLAIM_CLIENT_NAME) or _string(claims, "client_name"),
            org=org,
            security_level=None,
            attestation=None,
            **common,
        )


_CLAIM_MESSAGES = {
    "iss": "the token's issuer is not trusted",
    "aud": "the token is not meant for this service (audience)",
    "exp": "the token's expiry (exp) is not valid",
    "nbf": "the token is not valid yet",
    "iat": "the token's issue time (iat) lies in the future",
}


def _bearer_token(header: str | None) -> str:
    if header is None or not header.strip():
        raise AuthError(status=401, message="an Authorization: Bearer token is required", error=None)
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise AuthError(
            status=401, message="the Authorization header must be 'Bearer <token>'", error="invalid_request"
        )
    if len(token) > _MAX_TOKEN_LENGTH:
        raise _reject("the bearer token is too long")
    return token


def _string(claims: Mapping[str, Any], name: str) -> str | None:
    value = claims.get(name)
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | str):
        text = str(value).strip()
        return text or None
    return None


def _scope_claim(claims: Mapping[str, Any]) -> str | list[str] | None:
    value = claims.get("scope", claims.get("scp"))
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return None


def _security_level(claims: Mapping[str, Any]) -> str | None:
    for name in (CLAIM_SECURITY_LEVEL, "security_level", "acr"):
        value = _string(claims, name)
        if value is not None:
            return _SECURITY_LEVEL_ALIASES.get(value.lower(), value)
    return None


def _require_level_4(claims: Mapping[str, Any]) -> str:
    level = _security_level(claims)
    if level is None:
        raise _reject(f"the token lacks required claims: {CLAIM_SECURITY_LEVEL}")
    if level != REQUIRED_SECURITY_LEVEL:
        raise _reject("the login must be at security level 4 (high)")
    return level


def _person_name(claims: Mapping[str, Any]) -> str | None:
    name = _string(claims, "name")
    if name:
        return name
    parts = [_string(claims, part) for part in ("given_name", "middle_name", "family_name")]
    joined = " ".join(p for p in parts if p)
    return joined or None
