"""Which national service a resource belongs to. Restrictions (reservasjon, sperring) apply per service,
so every stored resource carries its service as a `meta.tag` set at write time."""

from __future__ import annotations

from typing import Any

SERVICE_SYSTEM = "http://kjerne.no/fhir/CodeSystem/service"
PROVESVAR = "provesvar"
MALEDATA = "maledata"
DOKUMENTER = "dokumenter"
KRITISKINFO = "kritiskinfo"
LEGEMIDDELLISTE = "legemiddelliste"
HELSEKORT_GRAVIDE = "helsekort-gravide"
SERVICES = (PROVESVAR, MALEDATA, DOKUMENTER, KRITISKINFO, LEGEMIDDELLISTE, HELSEKORT_GRAVIDE)

_BY_TYPE = {
    "DiagnosticReport": PROVESVAR,
    "Specimen": PROVESVAR,
    "ServiceRequest": PROVESVAR,
    "ImagingStudy": PROVESVAR,
    "DocumentReference": DOKUMENTER,
    "AllergyIntolerance": KRITISKINFO,
    "Condition": KRITISKINFO,
    "Procedure": KRITISKINFO,
    "Flag": KRITISKINFO,
    "MedicationStatement": LEGEMIDDELLISTE,
    "MedicationRequest": LEGEMIDDELLISTE,
    "MedicationDispense": LEGEMIDDELLISTE,
}
_HOME_CATEGORIES = {"vital-signs", "survey", "activity"}


def service_of(res: dict[str, Any]) -> str | None:
    for tag in (res.get("meta") or {}).get("tag", []):
        if tag.get("system") == SERVICE_SYSTEM and tag.get("code") in SERVICES:
            return str(tag["code"])
    res_type = res.get("resourceType")
    if res_type == "Observation":
        codes = {c.get("code") for cat in res.get("category", []) for c in cat.get("coding", [])}
        return MALEDATA if codes & _HOME_CATEGORIES else PROVESVAR
    return _BY_TYPE.get(str(res_type))


def tag_service(res: dict[str, Any]) -> str | None:
    """Add the service tag when the resource has none; returns the service."""
    service = service_of(res)
    if service is None:
        return None
    meta = res.setdefault("meta", {})
    tags = meta.setdefault("tag", [])
    if not any(t.get("system") == SERVICE_SYSTEM for t in tags):
        tags.append({"system": SERVICE_SYSTEM, "code": service})
    return service
