"""Bearer token verification: good tokens give the right principal, every bad kind gives 401."""

from __future__ import annotations

import base64
import datetime as dt
import json
import stat
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey, RSAKey

from kjerne.access.devissuer import DevIssuer
from kjerne.access.principal import Principal
from kjerne.access.tokens import (
    CLAIM_HPR,
    CLAIM_ORGNR_PARENT,
    CLAIM_PID,
    CLAIM_SECURITY_LEVEL,
    AuthError,
    IssuerConfig,
    TokenVerifier,
    load_issuers,
)
from kjerne.fhir.identifiers import make_orgnr, make_synthetic_fnr


def person(born: dt.date, individ: int) -> str:
    """A synthetic fødselsnummer; individual numbers that give check digit 10 are skipped."""
    while (fnr := make_synthetic_fnr(born, individ)) is None:
        individ += 1
    return fnr


def organisation(prefix: int) -> str:
    while (orgnr := make_orgnr(prefix)) is None:
        prefix += 1
    return orgnr


NOW = 1_760_000_000.0
ISSUER = "https://helseid-sts.test.example/"
AUDIENCE = "kjerne"

CITIZEN = person(dt.date(1985, 3, 14), 123)
DOCTOR = person(dt.date(1970, 11, 3), 211)
PATIENT = person(dt.date(1990, 6, 1), 318)
HPR = "9144900"
ORG = organisation(98_765_432)
LAB = organisation(97_412_345)


def clock() -> float:
    return NOW


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> DevIssuer:
    return DevIssuer(tmp_path_factory.mktemp("keys"), issuer=ISSUER, audience=AUDIENCE, clock=clock)


@pytest.fixture(scope="module")
def verifier(issuer: DevIssuer) -> TokenVerifier:
    return TokenVerifier([issuer.issuer_config()], clock=clock)


def bearer(token: str) -> str:
    return f"Bearer {token}"


def reject(verifier: TokenVerifier, header: str | None) -> AuthError:
    with pytest.raises(AuthError) as caught:
        verifier.verify(header)
    assert caught.value.status == 401
    assert caught.value.message
    return caught.value


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def practitioner_claims(issuer: DevIssuer, **overrides: Any) -> dict[str, Any]:
    claims = claims_of(issuer.practitioner_token(hpr=HPR, pid=DOCTOR, org=ORG, patients=[PATIENT]))
    for name in ("iss", "aud", "iat", "nbf", "exp", "jti"):
        del claims[name]
    claims.update(overrides)
    return claims


# -- good tokens ----------------------------------------------------------------------------------


def test_citizen(issuer: DevIssuer, verifier: TokenVerifier) -> None:
    principal = verifier.verify(bearer(issuer.citizen_token(CITIZEN, name="Kari Nordmann")))
    assert principal.kind == "citizen"
    assert principal.subject == principal.pid == CITIZEN
    assert principal.hpr is None and principal.org is None and principal.attestation is None
    assert principal.name == "Kari Nordmann"
    assert principal.security_level == "4"
    assert principal.issuer == ISSUER
    assert principal.token_id
    assert principal.smart_context == "patient"
    assert principal.can("Observation", "read")
    assert principal.can("Consent", "write")
    assert not principal.can("Observation", "write")
    assert not principal.scopes.allows("user", "Observation", "read")


def test_citizen_with_helseid_pid_claim(issuer: DevIssuer, verifier: TokenVerifier) -> None:
    token = issuer.sign_claims(
        {
            CLAIM_PID: CITIZEN,
            CLAIM_SECURITY_LEVEL: "4",
            "scope": "patient/*.read",
            "given_name": "Kari",
            "family_name": "Nordmann",
        }
    )
    principal = verifier.verify(bearer(token))
    assert principal.kind == "citizen"
    assert principal.pid == CITIZEN
    assert principal.name == "Kari Nordmann"


@pytest.mark.parametrize("level_claims", [{"acr": "4"}, {"security_level": 4}, {"acr": "idporten-loa-high"}])
def test_citizen_level_4_spellings(issuer: DevIssuer, verifier: TokenVerifier, level_claims: dict) -> None:
    token = issuer.sign_claims({"pid": CITIZEN, "scope": "patient/*.read", **level_claims})
    assert verifier.verify(bearer(token)).security_level == "4"


def test_practitioner(issuer: DevIssuer, verifier: TokenVerifier) -> None:
    child = organisation(98_765_500)
    token = issuer.practitioner_token(
        hpr=HPR,
        pid=DOCTOR,
        org=ORG,
        child_org=child,
        purpose="ETREAT",
        patients=[PATIENT, CITIZEN],
        name="Rita Lin",
        org_name="Testsykehuset HF",
    )
    principal = verifier.verify(bearer(token))
    assert principal.kind == "practitioner"
    assert principal.subject == principal.pid == DOCTOR
    assert principal.hpr == HPR
    assert principal.name == "Rita Lin"
    assert principal.org == ORG
    assert principal.child_org == child
    assert principal.security_level == "4"
    assert principal.smart_context == "user"
    assert principal.can("DiagnosticReport", "read")
    attestation = principal.attestation
    assert attestation is not None
    assert attestation.practitioner_pid == DOCTOR
    assert attestation.hpr == HPR
    assert attestation.purpose_of_use == "ETREAT"
    assert attestation.is_emergency
    assert attestation.legal_entity == ORG
    assert attestation.legal_entity_name == "Testsykehuset HF"
    assert attestation.point_of_care == child
    assert attestation.authorization_code == "LE"
    assert attestation.toa == int(NOW)
    assert attestation.covers(PATIENT) and attestation.covers(CITIZEN)
    # fødselsnummer stay out of log lines
    assert DOCTOR not in repr(principal) and PATIENT not in repr(principal)


@pytest.mark.parametrize("where", ["authorization_details", "claim"])
def test_practitioner_attestation_both_ways(issuer: DevIssuer, verifier: TokenVerifier, where: Any) -> None:
    token = issuer.practitioner_token(hpr=HPR, pid=DOCTOR, org=ORG, patients=[PATIENT], attestation_in=where)
    claims = claims_of(token)
    assert ("authorization_details" in claims) == (where == "authorization_details")
    assert ("nhn:tillitsrammeverk:parameters" in claims) == (where == "claim")
    attestation = verifier.verify(bearer(token)).attestation
    assert attestation is not None and attestation.covers(PATIENT) and not attestation.covers(CITIZEN)


def test_practitioner_attestation_as_json_text(issuer: DevIssuer, verifier: TokenVerifier) -> None:
    claims = practitioner_claims(issuer)
    claims["authorization_details"] = json.dumps(claims["authorization_details"])
    principal = verifier.verify(bearer(issuer.sign_claims(claims)))
    assert principal.attestation is not None and principal.attestation.covers(PATIENT)


def test_system(issuer: DevIssuer, verifier: TokenVerifier) -> None:
    principal = verifier.verify(bearer(issuer.system_token(org=LAB, client_name="Fürst lab")))
    assert principal.kind == "system"
    assert principal.subject == principal.org == LAB
    assert principal.pid is None and principal.hpr is None and principal.attestation is None
    assert principal.name == "Fürst lab"
    assert principal.smart_context == "system"
    assert principal.can("Observation", "write")
    assert not principal.can("Observation", "read")


def test_system_with_plain_orgnr_and_scope_list(issuer: DevIssuer, verifier: TokenVerifier) -> None:
    token = issuer.sign_claims({"orgnr": LAB, "scope": ["system/Observation.cu", "system/Bundle.c"]})
    principal = verifier.verify(bearer(token))
    assert principal.kind == "system" and principal.org == LAB
    assert principal.can("Observation", "write")


def test_leeway_on_expiry(issuer: DevIssuer) -> None:
    token = issuer.citizen_token(CITIZEN, lifetime=60)
    assert TokenVerifier([issuer.issuer_config()], clock=lambda: NOW + 60 + 29).verify(bearer(token))
    reject(TokenVerifier([issuer.issuer_config()], clock=lambda: NOW + 60 + 31), bearer(token))


def test_scheme_is_case_insensitive(issuer: DevIssuer, verifier: TokenVerifier) -> None:
    assert verifier.verify("bearer " + issuer.citizen_token(CITIZEN)).kind == "citizen"


# -- bad tokens -----------------------------------------------------------------------------------


@pytest.mark.parametrize("header", [None, "", "   ", "Basic dXNlcjpwYXNz", "Bearer", "Bearer a b", "Token abc"])
def test_missing_or_malformed_header(verifier: TokenVerifier, header: str | None) -> None:
    error = reject(verifier, header)
    assert "Bearer" in error.www_authenticate


@pytest.mark.parametrize("token", ["not-a-jwt", "a.b.c", "a.b.c.d.e", "eyJhbGciOiJFUzI1NiJ9..", "ÆØÅ.x.y"])
def test_garbage_token(verifier: TokenVerifier, token: str) -> None:
    reject(verifier, bearer(token))


def test_forged_with_unknown_key(issuer: DevIssuer, verifier: TokenVerifier, tmp_path: Path) -> None:
    forger = DevIssuer(tmp_path, issuer=ISSUER, audience=AUDIENCE, clock=clock)
    error = reject(verifier, bearer(forger.citizen_token(CITIZEN)))
    assert "key" in error.message


def test_forged_with_the_right_kid(issuer: DevIssuer, verifier: TokenVerifier) -> None:
    other = ECKey.generate_key("P-256")
    claims = claims_of(issuer.citizen_token(CITIZEN))
    token = jwt.encode({"alg": "ES256", "kid": issuer.kid}, claims, other, algorithms=["ES256"])
    error = reject(verifier, bearer(token))
    assert "signature" in error.message


def test_expired(issuer: DevIssuer) -> None:
    token = issuer.citizen_token(CITIZEN, lifetime=300)
    error = reject(TokenVerifier([issuer.issuer_config()], clock=lambda: NOW + 3600), bearer(token))
    assert "expired" in error.message


def test_not_yet_valid(issuer: DevIssuer) -> None:
    token = issuer.citizen_token(CITIZEN)
    reject(TokenVerifier([issuer.issuer_config()], clock=lambda: NOW - 300), bearer(token))


def test_issued_in_the_future(issuer: DevIssuer, verifier: TokenVerifier) -> None:
    reject(verifier, bearer(issuer.sign_claims({"pid": CITIZEN, "acr": "4", "iat": int(NOW) + 600, "nbf": None})))


def test_alg_none(issuer: DevIssuer, verifier: TokenVerifier) -> None:
    claims = claims_of(issuer.citizen_token(CITIZEN))
    token = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."
    error = reject(verifier, bearer(token))
    assert "RS256 or ES256" in error.message
    # also with a signature segment left in place
    real = issuer.citizen_token(CITIZEN)
    reject(verifier, bearer(f"{b64({'alg': 'none'})}.{real.split('.')[1]}.{real.split('.')[2]}"))


def test_hs256_even_with_the_public_key_as_secret(issuer: DevIssuer, verifier: TokenVerifier) -> None:
    claims = claims_of(issuer.citizen_token(CITIZEN))
    secret = OctKey.import_key(json.dumps(issuer.jwks()).encode())
    token = jwt.encode({"alg": "HS256", "kid": issuer.kid}, claims, secret, algorithms=["HS256"])
    reject(verifier, bearer(token))


@pytest.mark.parametrize("alg", ["ES384", "RS512", "PS256", "EdDSA"])
def test_other_algorithms_refused(issuer: DevIssuer, verifier: TokenVerifier, alg: str) -> None:
    claims = claims_of(issuer.citizen_token(CITIZEN))
    token = f"{b64({'alg': alg, 'kid': issuer.kid})}.{b64(claims)}.c2lnbmF0dXJl"
    reject(verifier, bearer(token))


def test_wrong_audience(tmp_path: Path) -> None:
    other = DevIssuer(tmp_path, issuer=ISSUER, audience="nhn:pps", clock=clock)
    config = other.issuer_config()
    config.audiences = (AUDIENCE,)
    error = reject(TokenVerifier([config], clock=clock), bearer(other.citizen_token(CITIZEN)))
    assert "audience" in error.message


def test_audience_list(issuer: DevIssuer, verifier: TokenVerifier) -> None:
    ok = issuer.sign_claims({"pid": CITIZEN, "acr": "4", "aud": ["nhn:pps", AUDIENCE]})
    assert verifier.verify(bearer(ok)).kind == "citizen"
    reject(verifier, bearer(issuer.sign_claims({"pid": CITIZEN, "acr": "4", "aud": ["nhn:pps"]})))


def test_wrong_issuer(issuer: DevIssuer, verifier: TokenVerifier) -> None:
    error = reject(verifier, bearer(issuer.sign_claims({"pid": CITIZEN, "acr": "4", "iss": "https://evil.example/"})))
    assert "issuer" in error.message


@pytest.mark.parametrize("claim", ["exp", "aud", "iss"])
def test_missing_registered_claims(issuer: DevIssuer, verifier: TokenVerifier, claim: str) -> None:
    reject(verifier, bearer(issuer.sign_claims({"pid": CITIZEN, "acr": "4", claim: None})))


def test_tampered_payload(issuer: DevIssuer, verifier: TokenVerifier) -> None:
    header, _, signature = issuer.citizen_token(CITIZEN).split(".")
    claims = claims_of(issuer.citizen_token(CITIZEN))
    claims["pid"] = PATIENT
    error = reject(verifier, bearer(f"{header}.{b64(claims)}.{signature}"))
    assert "signature" in error.message


@pytest.mark.parametrize(
    "drop",
    [CLAIM_PID, CLAIM_HPR, CLAIM_SECURITY_LEVEL],
)
def test_practitioner_missing_claims(issuer: DevIssuer, verifier: TokenVerifier, drop: str) -> None:
    error = reject(verifier, bearer(issuer.sign_claims(practitioner_claims(issuer, **{drop: None}))))
    assert drop in error.message


def test_practitioner_missing_org(issuer: DevIssuer, verifier: TokenVerifier) -> None:
    claims = practitioner_claims(issuer, **{CLAIM_ORGNR_PARENT: None})
    del claims["authorization_details"][0]["practitioner"]["legal_entity"]
    reject(verifier, bearer(issuer.sign_claims(claims)))


def test_practitioner_security_level_3(issuer: DevIssuer, verifier: TokenVerifier) -> None:
    error = reject(verifier, bearer(issuer.sign_claims(practitioner_claims(issuer, **{CLAIM_SECURITY_LEVEL: "3"}))))
    assert "level 4" in error.message


def test_practitioner_without_attestation(issuer: DevIssuer, verifier: TokenVerifier) -> None:
    token = issuer.sign_claims(practitioner_claims(issuer, authorization_details=None))
    error = reject(verifier, bearer(token))
    assert "attestation" in error.message
    lenient = TokenVerifier([issuer.issuer_config()], clock=clock, require_attestation=False)
    principal = lenient.verify(bearer(token))
    assert principal.kind == "practitioner" and principal.attestation is None and principal.org == ORG


@pytest.mark.parametrize(
    "level_claims",
    [
        {"acr": "3"},
        {"security_level": "3"},
        {CLAIM_SECURITY_LEVEL: "3"},
        {"acr": "idporten-loa-substantial"},
        {},
    ],
)
def test_citizen_below_level_4(issuer: DevIssuer, verifier: TokenVerifier, level_claims: dict) -> None:
    reject(verifier, bearer(issuer.sign_claims({"pid": CITIZEN, "scope": "patient/*.read", **level_claims})))


def test_system_without_org(issuer: DevIssuer, verifier: TokenVerifier) -> None:
    reject(verifier, bearer(issuer.sign_claims({"client_id": "x", "scope": "system/*.write"})))


def test_system_without_system_scope(issuer: DevIssuer, verifier: TokenVerifier) -> None:
    reject(verifier, bearer(issuer.sign_claims({CLAIM_ORGNR_PARENT: LAB, "scope": "user/*.read"})))


# -- key sources ----------------------------------------------------------------------------------

RSA_KEY = RSAKey.generate_key(2048, parameters={"kid": "rsa-1", "use": "sig"})


def rs256_token(claims: dict[str, Any], key: RSAKey = RSA_KEY) -> str:
    base = {"iss": ISSUER, "aud": AUDIENCE, "iat": int(NOW), "exp": int(NOW) + 600}
    return jwt.encode({"alg": "RS256", "kid": key.kid}, {**base, **claims}, key, algorithms=["RS256"])


def test_rs256_from_jwks_file(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [RSA_KEY.as_dict(private=False), {"kty": "oct", "k": "c2VjcmV0"}]}))
    verifier = TokenVerifier([IssuerConfig(ISSUER, (AUDIENCE,), jwks_path=str(path))], clock=clock)
    principal = verifier.verify(bearer(rs256_token({CLAIM_ORGNR_PARENT: LAB, "scope": "system/*.write"})))
    assert principal.kind == "system"


def test_jwks_file_is_reread_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    first = ECKey.generate_key("P-256", auto_kid=True)
    path.write_text(json.dumps({"keys": [first.as_dict(private=False)]}))
    verifier = TokenVerifier([IssuerConfig(ISSUER, (AUDIENCE,), jwks_path=str(path))], clock=clock)
    claims = {"iss": ISSUER, "aud": AUDIENCE, "exp": int(NOW) + 600, "pid": CITIZEN, "acr": "4"}
    reject(verifier, bearer(rs256_token({"pid": CITIZEN, "acr": "4"})))
    path.write_text(json.dumps({"keys": [first.as_dict(private=False), RSA_KEY.as_dict(private=False)]}))
    assert verifier.verify(bearer(rs256_token({"pid": CITIZEN, "acr": "4"}))).kind == "citizen"
    es = jwt.encode({"alg": "ES256", "kid": first.kid}, claims, first, algorithms=["ES256"])
    assert verifier.verify(bearer(es)).kind == "citizen"


def test_rs256_token_against_ec_only_jwks(issuer: DevIssuer, verifier: TokenVerifier) -> None:
    reject(verifier, bearer(rs256_token({"pid": CITIZEN, "acr": "4"})))


def test_jwks_url_is_cached_and_refreshed_for_new_kid() -> None:
    rotated = RSAKey.generate_key(2048, parameters={"kid": "rsa-2", "use": "sig"})
    published = {"keys": [RSA_KEY.as_dict(private=False)]}
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        return httpx.Response(200, json=published)

    now = [NOW]
    http = httpx.Client(transport=httpx.MockTransport(handler))
    config = IssuerConfig(ISSUER, (AUDIENCE,), jwks_url="https://sts.example/jwks", jwks_ttl=600)
    verifier = TokenVerifier([config], clock=lambda: now[0], http=http)
    claims = {"pid": CITIZEN, "acr": "4", "exp": int(NOW) + 7200}

    assert verifier.verify(bearer(rs256_token(claims))).kind == "citizen"
    assert verifier.verify(bearer(rs256_token(claims))).kind == "citizen"
    assert calls == ["https://sts.example/jwks"]

    # the issuer rotates its key; a token with the new kid triggers one early fetch
    published = {"keys": [RSA_KEY.as_dict(private=False), rotated.as_dict(private=False)]}
    now[0] += 60
    assert verifier.verify(bearer(rs256_token(claims, rotated))).kind == "citizen"
    assert len(calls) == 2

    # unknown kids cannot make the verifier hammer the issuer
    stranger = RSAKey.generate_key(2048, parameters={"kid": "rsa-x", "use": "sig"})
    reject(verifier, bearer(rs256_token(claims, stranger)))
    reject(verifier, bearer(rs256_token(claims, stranger)))
    assert len(calls) == 2

    # after the TTL the set is fetched again
    now[0] += 601
    verifier.verify(bearer(rs256_token(claims)))
    assert len(calls) == 3


def test_jwks_url_unreachable_is_503() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500)

    http = httpx.Client(transport=httpx.MockTransport(handler))
    config = IssuerConfig(ISSUER, (AUDIENCE,), jwks_url="https://sts.example/jwks")
    verifier = TokenVerifier([config], clock=clock, http=http)
    with pytest.raises(AuthError) as caught:
        verifier.verify(bearer(rs256_token({"pid": CITIZEN, "acr": "4"})))
    assert caught.value.status == 503


def test_issuer_config_validation() -> None:
    with pytest.raises(ValueError):
        IssuerConfig(ISSUER, (AUDIENCE,))
    with pytest.raises(ValueError):
        IssuerConfig(ISSUER, (AUDIENCE,), jwks_path="a", jwks_url="b")
    with pytest.raises(ValueError):
        IssuerConfig(ISSUER, ())
    assert IssuerConfig(ISSUER, AUDIENCE, jwks={"keys": []}).audiences == (AUDIENCE,)  # type: ignore[arg-type]


def test_load_issuers(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "helseid.json").write_text(json.dumps({"keys": [RSA_KEY.as_dict(private=False)]}))
    config_file = tmp_path / "issuers.json"
    config_file.write_text(
        json.dumps(
            [
                {"issuer": ISSUER, "audiences": [AUDIENCE, "nhn:pps"], "jwks_path": "keys/helseid.json"},
                {
                    "issuer": "https://idp.example/",
                    "audiences": "kjerne",
                    "jwks_url": "https://idp.example/jwks",
                    "jwks_ttl": 60,
                },
            ]
        )
    )
    helseid, idp = load_issuers(config_file)
    assert helseid.audiences == (AUDIENCE, "nhn:pps")
    assert helseid.jwks_path == str(tmp_path / "keys" / "helseid.json")
    assert idp.audiences == ("kjerne",) and idp.jwks_ttl == 60
    verifier = TokenVerifier([helseid, idp], clock=clock)
    assert verifier.verify(bearer(rs256_token({"pid": CITIZEN, "acr": "4"}))).kind == "citizen"
    config_file.write_text(json.dumps([{"issuer": ISSUER, "audiences": [AUDIENCE], "jwks_file": "x"}]))
    with pytest.raises(ValueError):
        load_issuers(config_file)


def test_two_issuers(issuer: DevIssuer, tmp_path: Path) -> None:
    other = DevIssuer(tmp_path, issuer="https://idporten.example/", audience=AUDIENCE, clock=clock)
    verifier = TokenVerifier([issuer.issuer_config(), other.issuer_config()], clock=clock)
    assert verifier.verify(bearer(other.citizen_token(CITIZEN))).issuer == "https://idporten.example/"
    assert verifier.verify(bearer(issuer.citizen_token(CITIZEN))).issuer == ISSUER


# -- the development issuer -----------------------------------------------------------------------


def test_dev_issuer_key_is_private_and_reused(tmp_path: Path) -> None:
    first = DevIssuer(tmp_path / "keys")
    key_file = tmp_path / "keys" / "dev-issuer.jwk"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert "d" in json.loads(key_file.read_text())
    assert all("d" not in key for key in first.jwks()["keys"])
    second = DevIssuer(tmp_path / "keys")
    assert second.kid == first.kid
    token = first.citizen_token(CITIZEN)
    assert TokenVerifier([second.issuer_config()]).verify(bearer(token)).pid == CITIZEN
    assert first.issuer_config().issuer == "http://127.0.0.1:8080/dev-issuer"
    assert first.issuer_config().audiences == ("kjerne",)


def test_dev_issuer_tightens_a_loose_key_file(tmp_path: Path) -> None:
    DevIssuer(tmp_path)
    (tmp_path / "dev-issuer.jwk").chmod(0o644)
    DevIssuer(tmp_path)
    assert stat.S_IMODE((tmp_path / "dev-issuer.jwk").stat().st_mode) == 0o600


def test_dev_issuer_refuses_bad_input(issuer: DevIssuer) -> None:
    with pytest.raises(ValueError):
        issuer.citizen_token("12345678901")
    with pytest.raises(ValueError):
        issuer.practitioner_token(hpr=HPR, pid=DOCTOR, org=ORG, patients=[PATIENT], purpose="CURIOSITY")
    with pytest.raises(ValueError):
        issuer.practitioner_token(hpr=HPR, pid=DOCTOR, org="123", patients=[PATIENT])
    with pytest.raises(ValueError):
        issuer.system_token(org=LAB, scope="user/*.read")
    with pytest.raises(ValueError):
        issuer.citizen_token(CITIZEN, lifetime=0)


def test_principal_is_frozen(issuer: DevIssuer, verifier: TokenVerifier) -> None:
    principal: Principal = verifier.verify(bearer(issuer.citizen_token(CITIZEN)))
    with pytest.raises(AttributeError):
        principal.pid = PATIENT  # type: ignore[misc]
