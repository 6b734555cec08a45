"""The tillitsrammeverk attestation: where it is found, how it is read, when it is refused."""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from kjerne.access.attestation import (
    ATTESTATION_TYPE,
    AttestationError,
    check_attestation,
    find_attestation,
    parse_attestation,
)
from kjerne.access.devissuer import DevIssuer, build_attestation
from kjerne.access.tokens import AuthError, TokenVerifier
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


NOW = 1_760_000_000
DOCTOR = person(dt.date(1970, 11, 3), 211)
NURSE = person(dt.date(1975, 2, 20), 101)
PATIENT = person(dt.date(1990, 6, 1), 318)
OTHER_PATIENT = person(dt.date(2001, 9, 9), 512)
ORG = organisation(98_765_432)
HPR = "9144900"


def example(**changes: Any) -> dict[str, Any]:
    """An attestation in the documented shape, with every optional part filled in."""
    data: dict[str, Any] = {
        "type": ATTESTATION_TYPE,
        "practitioner": {
            "identifier": {"id": DOCTOR, "name": "Rita Lin", "system": "urn:oid:2.16.578.1.12.4.1.4.1"},
            "hpr_nr": {"id": HPR, "system": "urn:oid:2.16.578.1.12.4.1.4.4"},
            "authorization": {"code": "LE", "text": "Lege", "system": "urn:oid:2.16.578.1.12.4.1.1.9060"},
            "legal_entity": {"id": ORG, "name": "Testkommunen"},
            "point_of_care": {"id": "987654321", "name": "Testkommunen legevakt"},
            "department": {"id": "705592", "name": "Legevakt", "system": "urn:oid:2.16.578.1.12.4.1.4.102"},
        },
        "care_relationship": {
            "healthcare_service": {"code": "S03", "system": "urn:oid:2.16.578.1.12.4.1.1.8655"},
            "purpose_of_use": {"code": "TREAT", "system": "urn:oid:2.16.840.1.113883.1.11.20448"},
            "purpose_of_use_details": {
                "code": "BEHANDLER",
                "system": "urn:AuditEventHL7Norway/CodeSystem/carerelation",
            },
            "decision_ref": {"id": "d-1", "user_selected": True},
        },
        "patients": [
            {
                "identifier": {"id": PATIENT, "system": "urn:oid:2.16.578.1.12.4.1.4.1"},
                "point_of_care": {"id": ORG},
            },
            {"identifier": {"id": OTHER_PATIENT}},
        ],
        "toa": NOW - 120,
    }
    data.update(changes)
    return data


def test_parse_full_example() -> None:
    attestation = parse_attestation(example())
    assert attestation.practitioner_pid == DOCTOR
    assert attestation.hpr == HPR
    assert attestation.name == "Rita Lin"
    assert attestation.legal_entity == ORG
    assert attestation.legal_entity_name == "Testkommunen"
    assert attestation.point_of_care == "987654321"
    assert attestation.point_of_care_name == "Testkommunen legevakt"
    assert attestation.department == "705592"
    assert attestation.authorization_code == "LE"
    assert attestation.purpose_of_use == "TREAT"
    assert attestation.purpose_details == ("BEHANDLER",)
    assert attestation.patients == (PATIENT, OTHER_PATIENT)
    assert attestation.toa == NOW - 120
    assert attestation.raw["care_relationship"]["decision_ref"]["id"] == "d-1"
    assert attestation.covers(PATIENT)
    assert attestation.covers(f" {OTHER_PATIENT} ")
    assert not attestation.covers(NURSE)
    assert not attestation.is_emergency


def test_raw_does_not_take_part_in_equality() -> None:
    a = parse_attestation(example())
    b = parse_attestation({**example(), "extra": "ignored"})
    assert a == b


def test_hyphenated_draft_spelling() -> None:
    data = example()
    practitioner = data["practitioner"]
    practitioner["hpr-nr"] = practitioner.pop("hpr_nr")
    practitioner["legal-entity"] = practitioner.pop("legal_entity")
    practitioner["point-of-care"] = practitioner.pop("point_of_care")
    care = data.pop("care_relationship")
    care["purpose-of-use"] = care.pop("purpose_of_use")
    data["care-relation"] = care
    attestation = parse_attestation(data)
    assert attestation.hpr == HPR
    assert attestation.legal_entity == ORG
    assert attestation.point_of_care == "987654321"
    assert attestation.purpose_of_use == "TREAT"


def test_minimal_attestation() -> None:
    attestation = parse_attestation(
        {
            "practitioner": {"identifier": {"id": DOCTOR}},
            "care_relationship": {"purpose_of_use": {"code": "btg"}},
            "toa": str(NOW),
        }
    )
    assert attestation.purpose_of_use == "BTG"
    assert attestation.is_emergency
    assert attestation.patients == ()
    assert attestation.hpr is None and attestation.legal_entity is None
    assert attestation.toa == NOW
    assert not attestation.covers(PATIENT)


def test_toa_as_iso_timestamp() -> None:
    iso = dt.datetime.fromtimestamp(NOW, dt.UTC).isoformat().replace("+00:00", "Z")
    assert parse_attestation(example(toa=iso)).toa == NOW


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"practitioner": {"hpr_nr": {"id": HPR}}}, "practitioner"),
        ({"practitioner": None}, "practitioner"),
        ({"care_relationship": None}, "care_relationship"),
        ({"care_relationship": {"purpose_of_use": {"code": "RESEARCH"}}}, "purpose"),
        ({"care_relationship": {"healthcare_service": {"code": "S03"}}}, "purpose"),
        ({"toa": None}, "toa"),
        ({"toa": "yesterday"}, "toa"),
        ({"toa": True}, "toa"),
        ({"patients": [{"point_of_care": {"id": ORG}}]}, "patient"),
        ({"patients": ["not-an-object"]}, "patient"),
    ],
)
def test_malformed(change: dict[str, Any], message: str) -> None:
    with pytest.raises(AttestationError) as caught:
        parse_attestation(example(**change))
    assert message in str(caught.value)


# -- finding it in the claims ---------------------------------------------------------------------


def test_found_in_authorization_details_among_other_types() -> None:
    claims = {"authorization_details": [{"type": "payment_initiation"}, example()]}
    found = find_attestation(claims)
    assert found is not None and parse_attestation(found).patients == (PATIENT, OTHER_PATIENT)


def test_found_in_authorization_details_object_and_text() -> None:
    assert find_attestation({"authorization_details": example()}) == example()
    assert find_attestation({"authorization_details": json.dumps([example()])}) == example()
    assert find_attestation({"authorization_details": [json.dumps(example())]}) == example()


def test_found_in_named_claim() -> None:
    data = example()
    del data["type"]
    assert find_attestation({ATTESTATION_TYPE: data}) == data
    assert find_attestation({ATTESTATION_TYPE: json.dumps(data)}) == data


def test_value_wrapped_entry() -> None:
    inner = example()
    del inner["type"]
    found = find_attestation({"authorization_details": [{"type": ATTESTATION_TYPE, "version": "1.1", "value": inner}]})
    assert found is not None and parse_attestation(found).practitioner_pid == DOCTOR


def test_authorization_details_wins_over_named_claim() -> None:
    preferred = example(toa=NOW)
    found = find_attestation({"authorization_details": [preferred], ATTESTATION_TYPE: example()})
    assert found == preferred


def test_absent() -> None:
    assert find_attestation({}) is None
    assert find_attestation({"authorization_details": [{"type": "something_else"}]}) is None


@pytest.mark.parametrize(
    "claims",
    [
        {"authorization_details": "{not json"},
        {"authorization_details": [42]},
        {"authorization_details": [example(), example()]},
        {ATTESTATION_TYPE: [example(), example()]},
        {ATTESTATION_TYPE: "[]"},
    ],
)
def test_unusable_claims(claims: dict[str, Any]) -> None:
    with pytest.raises(AttestationError):
        find_attestation(claims)


# -- freshness and identity -----------------------------------------------------------------------


def test_check_accepts_fresh_matching() -> None:
    check_attestation(parse_attestation(example()), pid=DOCTOR, hpr=HPR, now=NOW)
    check_attestation(parse_attestation(example(toa=NOW - 3600)), pid=DOCTOR, hpr=HPR, now=NOW)
    check_attestation(parse_attestation(example(toa=NOW + 20)), pid=DOCTOR, hpr=None, now=NOW)


@pytest.mark.parametrize(
    ("toa", "pid", "hpr", "message"),
    [
        (NOW - 3601, DOCTOR, HPR, "older than 60 minutes"),
        (NOW + 600, DOCTOR, HPR, "future"),
        (NOW, NURSE, HPR, "another practitioner"),
        (NOW, DOCTOR, "1234567", "another practitioner"),
    ],
)
def test_check_refuses(toa: int, pid: str, hpr: str, message: str) -> None:
    with pytest.raises(AttestationError) as caught:
        check_attestation(parse_attestation(example(toa=toa)), pid=pid, hpr=hpr, now=NOW)
    assert message in str(caught.value)


# -- through the verifier -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> DevIssuer:
    return DevIssuer(tmp_path_factory.mktemp("keys"), clock=lambda: NOW)


@pytest.fixture(scope="module")
def verifier(issuer: DevIssuer) -> TokenVerifier:
    return TokenVerifier([issuer.issuer_config()], clock=lambda: NOW)


def refused(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(AuthError) as caught:
        verifier.verify(f"Bearer {token}")
    assert caught.value.status == 401
    return caught.value.message


@pytest.mark.parametrize("where", ["authorization_details", "claim"])
def test_too_old(issuer: DevIssuer, verifier: TokenVerifier, where: Any) -> None:
    token = issuer.practitioner_token(
        hpr=HPR, pid=DOCTOR, org=ORG, patients=[PATIENT], toa=NOW - 61 * 60, attestation_in=where
    )
    assert "older" in refused(verifier, token)


def test_max_age_is_configurable(issuer: DevIssuer) -> None:
    token = issuer.practitioner_token(hpr=HPR, pid=DOCTOR, org=ORG, patients=[PATIENT], toa=NOW - 600)
    strict = TokenVerifier([issuer.issuer_config()], clock=lambda: NOW, attestation_max_age=300)
    assert "older than 5 minutes" in refused(strict, token)


def test_practitioner_mismatch(issuer: DevIssuer, verifier: TokenVerifier) -> None:
    claims = {
        "helseid://claims/identity/pid": DOCTOR,
        "helseid://claims/hpr/hpr_number": HPR,
        "helseid://claims/identity/security_level": "4",
        "helseid://claims/client/claims/orgnr_parent": ORG,
        "scope": "user/*.read",
        "authorization_details": [build_attestation(pid=NURSE, hpr=None, org=ORG, patients=[PATIENT], toa=NOW)],
    }
    assert "another practitioner" in refused(verifier, issuer.sign_claims(claims))


def test_attestation_modified_after_signing(issuer: DevIssuer, verifier: TokenVerifier) -> None:
    token = issuer.practitioner_token(hpr=HPR, pid=DOCTOR, org=ORG, patients=[PATIENT])
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged = copy.deepcopy(claims)
    forged["authorization_details"][0]["patients"].append({"identifier": {"id": OTHER_PATIENT}})
    forged_payload = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
    assert "signature" in refused(verifier, f"{header}.{forged_payload}.{signature}")


def test_patient_outside_attestation_is_left_to_the_access_engine(issuer: DevIssuer, verifier: TokenVerifier) -> None:
    token = issuer.practitioner_token(hpr=HPR, pid=DOCTOR, org=ORG, patients=[PATIENT])
    attestation = verifier.verify(f"Bearer {token}").attestation
    assert attestation is not None
    assert attestation.covers(PATIENT)
    assert not attestation.covers(OTHER_PATIENT)


def test_malformed_attestation_in_token(issuer: DevIssuer, verifier: TokenVerifier, tmp_path: Path) -> None:
    claims = {
        "helseid://claims/identity/pid": DOCTOR,
        "helseid://claims/hpr/hpr_number": HPR,
        "helseid://claims/identity/security_level": "4",
        "helseid://claims/client/claims/orgnr_parent": ORG,
        ATTESTATION_TYPE: {"practitioner": {"identifier": {"id": DOCTOR}}, "toa": NOW},
    }
    assert "care_relationship" in refused(verifier, issuer.sign_claims(claims))
