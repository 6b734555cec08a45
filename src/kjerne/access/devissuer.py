"""The development token issuer behind ``kjerne serve --dev`` and ``kjerne token``.

It stands in for HelseID (health personnel and systems) and for the citizen login, so the whole
service can be tried on one machine. Its tokens carry the same claims the real issuers put in
theirs, and the server verifies them exactly like real tokens: signature, issuer, audience, expiry,
security level and attestation. Only the issuer is different, and it is never trusted unless the
server is started with ``--dev``.

The signing key is an ES256 (P-256) key kept in ``<key_dir>/dev-issuer.jwk`` (mode 0600); its public
half is also written to ``<key_dir>/dev-issuer.jwks.json``, which ``issuer_config()`` points the
verifier at.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import stat
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey

from kjerne.access.attestation import ATTESTATION_TYPE, PURPOSE_OF_USE_SYSTEM
from kjerne.access.principal import PURPOSES_OF_USE
from kjerne.access.scopes import Scopes
from kjerne.access.tokens import (
    CLAIM_CLIENT_NAME,
    CLAIM_HPR,
    CLAIM_ORGNR_CHILD,
    CLAIM_ORGNR_PARENT,
    CLAIM_PID,
    CLAIM_SECURITY_LEVEL,
    IssuerConfig,
)
from kjerne.fhir.identifiers import (
    OID_FNR,
    OID_HPR,
    OID_ORGNR,
    is_valid_fnr,
    is_valid_hpr,
    is_valid_orgnr,
)

KEY_FILE = "dev-issuer.jwk"
JWKS_FILE = "dev-issuer.jwks.json"
DEFAULT_ISSUER = "http://127.0.0.1:8080/dev-issuer"
DEFAULT_AUDIENCE = "kjerne"

OID_HEALTH_PERSONNEL_CATEGORY = "urn:oid:2.16.578.1.12.4.1.1.9060"
_AUTHORIZATION_TEXT = {
    "LE": "Lege",
    "SP": "Sykepleier",
    "JO": "Jordmor",
    "FT": "Fysioterapeut",
    "PS": "Psykolog",
}


def build_attestation(
    *,
    pid: str,
    hpr: str | None,
    org: str,
    patients: list[str],
    purpose: str = "TREAT",
    toa: int,
    name: str | None = None,
    org_name: str | None = None,
    child_org: str | None = None,
    child_org_name: str | None = None,
    authorization_code: str | None = "LE",
    department: str | None = None,
) -> dict[str, Any]:
    """A tillitsrammeverk attestation object (``nhn:tillitsrammeverk:parameters``)."""
    practitioner: dict[str, Any] = {
        "identifier": _identifier(pid, name, OID_FNR, "https://www.skatteetaten.no"),
        "legal_entity": _identifier(org, org_name, OID_ORGNR, "https://www.brreg.no"),
        "point_of_care": _identifier(
            child_org or org,
            child_org_name or (None if child_org else org_name),
            OID_ORGNR,
            "https://www.brreg.no",
        ),
    }
    if hpr:
        practitioner["hpr_nr"] = _identifier(hpr, None, OID_HPR, "https://www.helsedirektoratet.no")
    if authorization_code:
        practitioner["authorization"] = {
            "code": authorization_code,
            "text": _AUTHORIZATION_TEXT.get(authorization_code, authorization_code),
            "system": OID_HEALTH_PERSONNEL_CATEGORY,
            "assigner": "https://www.helsedirektoratet.no",
        }
    if department:
        practitioner["department"] = {"id": department}
    return {
        "type": ATTESTATION_TYPE,
        "practitioner": practitioner,
        "care_relationship": {
            "purpose_of_use": {"code": purpose, "system": PURPOSE_OF_USE_SYSTEM},
            "decision_ref": {"id": uuid.uuid4().hex, "user_selected": False},
        },
        "patients": [{"identifier": {"id": fnr, "system": OID_FNR}} for fnr in patients],
        "toa": toa,
    }


def _identifier(value: str, name: str | None, system: str, authority: str) -> dict[str, Any]:
    out: dict[str, Any] = {"id": value}
    if name:
        out["name"] = name
    out["system"] = system
    out["authority"] = authority
    return out


class DevIssuer:
    """Issues signed development tokens for citizens, health personnel and systems."""

    def __init__(
        self,
        key_dir: Path,
        issuer: str = DEFAULT_ISSUER,
        audience: str = DEFAULT_AUDIENCE,
        *,
        clock: Callable[[], float] = time.time,
    ):
        self.key_dir = Path(key_dir)
        self.issuer = issuer
        self.audience = audience
        self._clock = clock
        self.key_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._key = _load_or_create_key(self.key_dir / KEY_FILE)
        private = self._key.as_dict(private=True)
        self._pseudonym_secret = hashlib.sha256(("kjerne-dev-sub:" + str(private["d"])).encode()).digest()
        self._write_jwks()

    @property
    def key_path(self) -> Path:
        return self.key_dir / KEY_FILE

    @property
    def jwks_path(self) -> Path:
        return self.key_dir / JWKS_FILE

    @property
    def kid(self) -> str:
        return str(self._key.kid)

    def jwks(self) -> dict[str, Any]:
        """The public key set, for serving at the issuer's JWKS endpoint."""
        return {"keys": [self._key.as_dict(private=False)]}

    def issuer_config(self) -> IssuerConfig:
        return IssuerConfig(issuer=self.issuer, audiences=(self.audience,), jwks_path=str(self.jwks_path))

    # -- tokens -----------------------------------------------------------------------------------

    def citizen_token(
        self,
        pid: str,
        *,
        lifetime: int = 3600,
        scope: str = "patient/*.read patient/Consent.write patient/AuditEvent.read",
        name: str | None = None,
    ) -> str:
        """A citizen's token: ``pid`` at security level 4 (as after an ID-porten "high" login)."""
        _require(is_valid_fnr(pid), f"pid {pid!r} is not a valid fødselsnummer or D-nummer")
        claims: dict[str, Any] = {
            "sub": self._pseudonym(pid),
            "client_id": "kjerne-dev-citizen",
            "pid": pid,
            "security_level": "4",
            "acr": "idporten-loa-high",
            "scope": scope,
        }
        if name:
            claims["name"] = name
        return self._sign(claims, lifetime)

    def practitioner_token(
        self,
        *,
        hpr: str,
        pid: str,
        org: str,
        child_org: str | None = None,
        purpose: str = "TREAT",
        patients: list[str],
        name: str | None = None,
        org_name: str | None = None,
        child_org_name: str | None = None,
        scope: str = "user/*.read user/Consent.write",
        lifetime: int = 3600,
        toa: int | None = None,
        attestation_in: Literal["authorization_details", "claim"] = "authorization_details",
        authorization_code: str | None = "LE",
        department: str | None = None,
    ) -> str:
        """A HelseID-style token for health personnel, with a tillitsrammeverk attestation for
        ``patients``. ``toa`` defaults to now; an older one makes a stale attestation."""
        _require(is_valid_hpr(hpr), f"hpr {hpr!r} is not a valid HPR number")
        _require(is_valid_fnr(pid), f"pid {pid!r} is not a valid fødselsnummer or D-nummer")
        _require(is_valid_orgnr(org), f"org {org!r} is not a valid organisation number")
        _require(child_org is None or is_valid_orgnr(child_org), f"child org {child_org!r} is not valid")
        purpose = purpose.upper()
        _require(purpose in PURPOSES_OF_USE, "purpose must be one of TREAT, ETREAT, COC, BTG")
        for fnr in patients:
            _require(is_valid_fnr(fnr), f"patient {fnr!r} is not a valid fødselsnummer or D-nummer")
        _require(
            attestation_in in ("authorization_details", "claim"),
            "attestation_in must be 'authorization_details' or 'claim'",
        )
        attestation = build_attestation(
            pid=pid,
            hpr=hpr,
            org=org,
            patients=list(patients),
            purpose=purpose,
            toa=int(self._clock()) if toa is None else int(toa),
            name=name,
            org_name=org_name,
            child_org=child_org,
            child_org_name=child_org_name,
            authorization_code=authorization_code,
            department=department,
        )
        claims: dict[str, Any] = {
            "sub": self._pseudonym(pid),
            "client_id": "kjerne-dev-epj",
            CLAIM_CLIENT_NAME: "Kjerne utviklings-EPJ",
            CLAIM_PID: pid,
            CLAIM_HPR: hpr,
            CLAIM_SECURITY_LEVEL: "4",
            "helseid://claims/identity/assurance_level": "high",
            CLAIM_ORGNR_PARENT: org,
            "scope": scope,
        }
        if child_org:
            claims[CLAIM_ORGNR_CHILD] = child_org
        if name:
            claims["name"] = name
        if attestation_in == "authorization_details":
            claims["authorization_details"] = [attestation]
        else:
            claims[ATTESTATION_TYPE] = attestation
        return self._sign(claims, lifetime)

    def system_token(
        self,
        *,
        org: str,
        scope: str = "system/*.write",
        lifetime: int = 3600,
        client_name: str | None = None,
    ) -> str:
        """A machine token (client credentials) for organisation ``org``, e.g. a lab delivering results."""
        _require(is_valid_orgnr(org), f"org {org!r} is not a valid organisation number")
        _require("system" in Scopes.parse(scope).contexts, "scope must contain at least one system/ scope")
        client_id = f"kjerne-dev-system-{org}"
        claims: dict[str, Any] = {
            "sub": client_id,
            "client_id": client_id,
            CLAIM_CLIENT_NAME: client_name or f"Utviklingssystem {org}",
            CLAIM_ORGNR_PARENT: org,
            "scope": scope,
        }
        return self._sign(claims, lifetime)

    def sign_claims(self, claims: dict[str, Any], *, lifetime: int = 3600) -> str:
        """A token with arbitrary ``claims`` laid over ``iss``, ``aud``, ``iat``, ``nbf``, ``exp`` and
        ``jti``. For tests that need tokens the other methods refuse to make; a claim set to None
        is left out."""
        return self._sign(claims, lifetime)

    # -- internals --------------------------------------------------------------------------------

    def _sign(self, claims: dict[str, Any], lifetime: int) -> str:
        _require(lifetime > 0, "lifetime must be a positive number of seconds")
        now = int(self._clock())
        payload = {
            "iss": self.issuer,
            "aud": self.audience,
            "iat": now,
            "nbf": now,
            "exp": now + int(lifetime),
            "jti": uuid.uuid4().hex,
            **claims,
        }
        payload = {name: value for name, value in payload.items() if value is not None}
        header = {"alg": "ES256", "kid": self.kid, "typ": "at+jwt"}
        return jwt.encode(header, payload, self._key, algorithms=["ES256"])

    def _pseudonym(self, pid: str) -> str:
        # HelseID and ID-porten give persons a pseudonymous "sub"; keep the fødselsnummer out of it.
        return hmac.new(self._pseudonym_secret, pid.encode(), hashlib.sha256).hexdigest()[:32]

    def _write_jwks(self) -> None:
        text = json.dumps(self.jwks(), indent=2) + "\n"
        path = self.jwks_path
        try:
            if path.read_text(encoding="utf-8") == text:
                return  # unchanged; leave the file (and its mtime) alone
        except OSError:
            pass
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _load_or_create_key(path: Path) -> ECKey:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _load_key(path)
    key = ECKey.generate_key("P-256", parameters={"use": "sig", "alg": "ES256"}, auto_kid=True)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(key.as_dict(private=True), out)
        out.write("\n")
    return key


def _load_key(path: Path) -> ECKey:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        path.chmod(0o600)  # a private key readable by others is tightened rather than trusted as is
    text = path.read_text(encoding="utf-8")
    for _ in range(20):
        if text.strip():
            break
        time.sleep(0.05)  # another process has just created the file and is still writing the key
        text = path.read_text(encoding="utf-8")
    try:
        key = ECKey.import_key(json.loads(text))
    except (JoseError, ValueError) as error:
        raise ValueError(f"{path} does not hold a usable EC key") from error
    if not key.is_private or key.curve_name != "P-256":
        raise ValueError(f"{path} must hold a private P-256 key")
    key.ensure_kid()
    return key
