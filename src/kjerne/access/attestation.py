"""The tillitsrammeverk attestation: reading it out of a verified token and checking it.

The attestation travels inside the access token, so the token signature already protects it; this
module only interprets it. It may arrive

* as an entry of the RFC 9396 ``authorization_details`` claim with ``type`` set to
  ``nhn:tillitsrammeverk:parameters`` (either flat, or with the fields wrapped in ``value``), or
* as a claim named ``nhn:tillitsrammeverk:parameters``.

Issuers sometimes serialise structured claims as JSON text, so a string holding a JSON object is
accepted wherever an object is. Attribute names are read both in the current spelling
(``legal_entity``, ``care_relationship``) and the hyphenated one of earlier drafts (``legal-entity``,
``care-relation``).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

from kjerne.access.principal import PURPOSES_OF_USE, Attestation

ATTESTATION_TYPE = "nhn:tillitsrammeverk:parameters"
PURPOSE_OF_USE_SYSTEM = "urn:oid:2.16.840.1.113883.1.11.20448"  # HL7 v3 PurposeOfUse
MAX_AGE_SECONDS = 3600  # tillitsrammeverk: an attestation is valid for at most 60 minutes


class AttestationError(ValueError):
    """The attestation is missing, malformed or not acceptable. The message is safe to show a client."""


def find_attestation(claims: Mapping[str, Any]) -> dict[str, Any] | None:
    """The attestation object from verified token claims, or None when the token carries none."""
    details = claims.get("authorization_details")
    if details is not None:
        found = [entry for entry in _objects(details, "authorization_details") if entry.get("type") == ATTESTATION_TYPE]
        if len(found) > 1:
            raise AttestationError("the token carries more than one tillitsrammeverk attestation")
        if found:
            return _unwrap(found[0])
    claim = claims.get(ATTESTATION_TYPE)
    if claim is None:
        return None
    objects = _objects(claim, ATTESTATION_TYPE)
    if len(objects) != 1:
        raise AttestationError("the tillitsrammeverk attestation claim must hold one object")
    return _unwrap(objects[0])


def parse_attestation(data: Mapping[str, Any]) -> Attestation:
    """An ``Attestation`` from the attestation object; raises ``AttestationError`` when required parts
    (practitioner identifier, purpose of use, time of attestation) are missing or malformed."""
    practitioner = _object(_get(data, "practitioner"), "practitioner")
    identifier = _get(practitioner, "identifier")
    practitioner_pid = _identifier(identifier)
    if not practitioner_pid:
        raise AttestationError("the attestation does not identify the practitioner")
    legal_entity = _get(practitioner, "legal_entity")
    point_of_care = _get(practitioner, "point_of_care")

    care = _object(_get(data, "care_relationship") or _get(data, "care_relation"), "care_relationship")
    purpose = _code(_get(care, "purpose_of_use"))
    if purpose is None:
        raise AttestationError("the attestation states no purpose of use")
    purpose = purpose.upper()
    if purpose not in PURPOSES_OF_USE:
        raise AttestationError("the attestation's purpose of use must be TREAT, ETREAT, COC or BTG")

    return Attestation(
        practitioner_pid=practitioner_pid,
        hpr=_identifier(_get(practitioner, "hpr_nr")),
        name=_name(identifier),
        legal_entity=_identifier(legal_entity),
        legal_entity_name=_name(legal_entity),
        point_of_care=_identifier(point_of_care),
        point_of_care_name=_name(point_of_care),
        department=_identifier(_get(practitioner, "department")),
        authorization_code=_code(_get(practitioner, "authorization")),
        purpose_of_use=purpose,
        purpose_details=_codes(_get(care, "purpose_of_use_details")),
        patients=_patients(data),
        toa=_toa(data.get("toa")),
        raw=dict(data),
    )


def check_attestation(
    attestation: Attestation,
    *,
    pid: str,
    hpr: str | None,
    now: float,
    max_age: int = MAX_AGE_SECONDS,
    leeway: int = 30,
) -> None:
    """Raise ``AttestationError`` unless the attestation is fresh and names the authenticated user."""
    if attestation.toa > now + leeway:
        raise AttestationError("the attestation is dated in the future")
    if now - attestation.toa > max_age:
        raise AttestationError(f"the attestation is older than {max_age // 60} minutes")
    if attestation.practitioner_pid != pid or (attestation.hpr and hpr and attestation.hpr != hpr):
        raise AttestationError("the attestation names another practitioner than the authenticated user")


# -- reading the loosely typed JSON -------------------------------------------------------------


def _get(obj: Mapping[str, Any], name: str) -> Any:
    value = obj.get(name)
    if value is None:
        value = obj.get(name.replace("_", "-"))
    return value


def _decode(value: Any, where: str) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            raise AttestationError(f"the {where} claim is not valid JSON") from None
    return value


def _objects(value: Any, where: str) -> list[dict[str, Any]]:
    value = _decode(value, where)
    items = value if isinstance(value, list) else [value]
    out: list[dict[str, Any]] = []
    for item in items:
        item = _decode(item, where)
        if not isinstance(item, dict):
            raise AttestationError(f"the {where} claim must hold JSON objects")
        out.append(item)
    return out


def _unwrap(entry: dict[str, Any]) -> dict[str, Any]:
    # RFC 9396 leaves the shape of a type's fields open; some issuers nest them under "value".
    if "practitioner" not in entry and entry.get("value") is not None:
        inner = _decode(entry["value"], ATTESTATION_TYPE)
        if not isinstance(inner, dict):
            raise AttestationError("the attestation's value must be a JSON object")
        return {**inner, "type": entry.get("type", ATTESTATION_TYPE)}
    return entry


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise AttestationError(f"the attestation lacks '{where}'")
    return value


def _text(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | str):
        text = str(value).strip()
        return text or None
    return None


def _identifier(value: Any) -> str | None:
    """The ``id`` of an identifier structure ({id, name, system, authority}), or a bare value."""
    if isinstance(value, dict):
        return _text(value.get("id", value.get("value")))
    return _text(value)


def _name(value: Any) -> str | None:
    return _text(value.get("name")) if isinstance(value, dict) else None


def _code(value: Any) -> str | None:
    """The ``code`` of a code structure ({code, text, system, assigner}), or a bare value."""
    if isinstance(value, dict):
        return _text(value.get("code"))
    return _text(value)


def _codes(value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    return tuple(code for code in map(_code, items) if code)


def _patients(data: Mapping[str, Any]) -> tuple[str, ...]:
    value = data.get("patients")
    if value is None:
        value = data.get("patient")  # single-patient form of earlier drafts
    if value is None:
        return ()
    items = value if isinstance(value, list) else [value]
    out: list[str] = []
    for item in items:
        if not isinstance(item, dict):
            raise AttestationError("each attested patient must be a JSON object")
        fnr = _identifier(item.get("identifier")) or _text(item.get("patient_id")) or _text(item.get("pid"))
        if not fnr:
            raise AttestationError("an attested patient has no identifier")
        if fnr not in out:
            out.append(fnr)
    return tuple(out)


def _toa(value: Any) -> int:
    """Time of attestation: Unix seconds, also accepted as a digit string or an ISO 8601 timestamp."""
    if isinstance(value, bool) or value is None:
        raise AttestationError("the attestation has no time of attestation (toa)")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value == value and abs(value) < 1e12:
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return int(text)
        try:
            moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            if moment.tzinfo is not None:
                return int(moment.timestamp())
    raise AttestationError("the attestation's time of attestation (toa) is not a valid time")
