"""The six restrictions, stored as FHIR Consent resources, plus `meta.security` labels on the one
resource a health-personnel restriction (nekting, utsatt innsyn, skjerming) affects.

Citizen restrictions (reservasjon, sperring, blokkering) are patient-wide and read at request time;
resource labels are indexed, so the access engine can compile both into query predicates.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from kjerne.fhir.identifiers import OID_HPR
from kjerne.services.classify import SERVICE_SYSTEM

KJ = "http://kjerne.no/fhir"
RESTRICTION_SYSTEM = f"{KJ}/CodeSystem/restriction"
RELEASE_EXT = f"{KJ}/StructureDefinition/release-after"
# When a report got utsatt innsyn from the default rules, this keeps the default release time, so that
# health-personnel restrictions coming and going never release it earlier than the rules say.
DEFAULT_RELEASE_EXT = f"{KJ}/StructureDefinition/default-release-after"
CONSENT_SCOPE = {"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}

RESERVASJON = "reservasjon"
SPERRING = "sperring"
BLOKKERING = "blokkering"
NEKTING = "nekting"
UTSATT = "utsatt-innsyn"
SKJERMING = "skjerming"
CITIZEN_SET = (RESERVASJON, SPERRING, BLOKKERING)
PRACTITIONER_SET = (NEKTING, UTSATT, SKJERMING)
LABELS = PRACTITIONER_SET

# Access bases (header nhn-access-basis) and which of them open sperret data.
ACCESS_BASES = ("UNNTAK", "SAMTYKKE", "FORHOYET_SAMTYKKE", "AKUTT", "FORHOYET_AKUTT")
OVERRIDING_BASES = ("FORHOYET_SAMTYKKE", "FORHOYET_AKUTT")
EMERGENCY_BASES = ("AKUTT", "FORHOYET_AKUTT")


@dataclass(frozen=True, slots=True)
class PatientRestriction:
    """A citizen's active reservasjon, sperring or blokkering."""

    kind: str
    consent_id: str
    patient: str
    services: frozenset[str]  # empty: every service
    practitioners: frozenset[str]  # HPR numbers named; empty: all health personnel (sperring)

    def covers_service(self, service: str | None) -> bool:
        return not self.services or (service is not None and service in self.services)

    def names(self, hpr: str | None) -> bool:
        return hpr is not None and hpr in self.practitioners


def consent_category(consent: dict[str, Any]) -> str | None:
    for cat in consent.get("category", []):
        for c in cat.get("coding", []):
            if c.get("system") == RESTRICTION_SYSTEM:
                return str(c.get("code"))
    return None


def _active(consent: dict[str, Any], now: dt.datetime) -> bool:
    if consent.get("status") != "active":
        return False
    period = (consent.get("provision") or {}).get("period") or {}
    start, end = period.get("start"), period.get("end")
    try:
        if start and dt.datetime.fromisoformat(start.replace("Z", "+00:00")).astimezone(dt.UTC) > now:
            return False
        if end and dt.datetime.fromisoformat(end.replace("Z", "+00:00")).astimezone(dt.UTC) < now:
            return False
    except ValueError:
        return False
    return True


def patient_restriction(consent: dict[str, Any], patient: str, now: dt.datetime) -> PatientRestriction | None:
    kind = consent_category(consent)
    if kind not in CITIZEN_SET or not _active(consent, now):
        return None
    provision = consent.get("provision") or {}
    services = frozenset(
        c["code"]
        for concept in provision.get("code", [])
        for c in concept.get("coding", [])
        if c.get("system") == SERVICE_SYSTEM and c.get("code")
    )
    hprs = frozenset(
        a["reference"]["identifier"]["value"]
        for a in provision.get("actor", [])
        if (a.get("reference") or {}).get("identifier", {}).get("system") == OID_HPR
        and (a.get("reference") or {}).get("identifier", {}).get("value")
    )
    return PatientRestriction(kind, str(consent.get("id")), patient, services, hprs)


def target_references(consent: dict[str, Any]) -> list[str]:
    """`Type/id` of the resources a health-personnel restriction applies to."""
    out = []
    for data in (consent.get("provision") or {}).get("data", []):
        ref = (data.get("reference") or {}).get("reference")
        if isinstance(ref, str) and ref.count("/") == 1:
            out.append(ref)
    return out


def release_after(consent: dict[str, Any]) -> str | None:
    """For utsatt innsyn: the end of provision.period is when the citizen may see the data."""
    end = ((consent.get("provision") or {}).get("period") or {}).get("end")
    return str(end) if end else None


def label_codings(kind: str, setter_hpr: str | None) -> list[dict[str, str]]:
    out = [{"system": RESTRICTION_SYSTEM, "code": kind}]
    if kind == SKJERMING and setter_hpr:
        out.append({"system": OID_HPR, "code": setter_hpr})
    return out


@cache
def default_delays() -> dict[str, Any]:
    """Utsatt innsyn defaults per result category (data/utsatt-innsyn.json; see docs/restrictions.md)."""
    text = resources.files("kjerne.data").joinpath("utsatt-innsyn.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def default_delay_days(report: dict[str, Any]) -> int:
    rules = default_delays()
    best = 0
    codes = {
        (c.get("system"), c.get("code"))
        for concept in [*report.get("category", []), report.get("code") or {}]
        for c in concept.get("coding", [])
    }
    for rule in rules.get("rules", []):
        if (rule.get("system"), rule.get("code")) in codes:
            best = max(best, int(rule.get("days", 0)))
    return best
