"""The CapabilityStatement, generated from what the server really supports."""

from __future__ import annotations

from functools import cache
from typing import Any

from kjerne.fhir.searchparams import registry
from kjerne.store.search.request import MODIFIERS

# The resource types the platform's services serve; every R4 type can be stored, these are advertised.
SERVED_TYPES = (
    "Patient",
    "Practitioner",
    "PractitionerRole",
    "Organization",
    "Observation",
    "DiagnosticReport",
    "ServiceRequest",
    "Specimen",
    "DocumentReference",
    "AllergyIntolerance",
    "Condition",
    "MedicationStatement",
    "Consent",
    "AuditEvent",
    "Device",
    "Composition",
)
_INTERACTIONS = ("read", "vread", "update", "delete", "history-instance", "history-type", "create", "search-type")


@cache
def _resources() -> list[dict[str, Any]]:
    reg = registry()
    out = []
    for res_type in SERVED_TYPES:
        params = []
        for code, p in sorted(reg.for_type(res_type).items()):
            if p.type in ("composite", "special"):
                continue
            params.append({"name": code, "definition": p.url, "type": p.type})
        refs = sorted(c for c, p in reg.for_type(res_type).items() if p.type == "reference")
        out.append(
            {
                "type": res_type,
                "interaction": [{"code": c} for c in _INTERACTIONS],
                "versioning": "versioned-update",
                "readHistory": True,
                "updateCreate": True,
                "conditionalCreate": True,
                "conditionalUpdate": True,
                "conditionalDelete": "not-supported",
                "searchInclude": [f"{res_type}:{c}" for c in refs],
                "searchRevInclude": [f"{res_type}:{c}" for c in refs],
                "searchParam": params,
            }
        )
    return out


def capability_statement(base: str) -> dict[str, Any]:
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-22",
        "publisher": "Kjerne",
        "kind": "instance",
        "software": {"name": "Kjerne", "version": "0.1.0"},
        "implementation": {"description": "Kjerne national sharing services", "url": base},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json"],
        "rest": [
            {
                "mode": "server",
                "documentation": "Search modifiers: "
                + "; ".join(f"{t}: {', '.join(sorted(m))}" for t, m in sorted(MODIFIERS.items())),
                "resource": _resources(),
                "interaction": [{"code": "transaction"}, {"code": "batch"}, {"code": "history-system"}],
                "searchParam": [
                    {"name": "_count", "type": "number"},
                    {"name": "_sort", "type": "string"},
                    {"name": "_total", "type": "token"},
                    {"name": "_summary", "type": "token"},
                    {"name": "_elements", "type": "string"},
                ],
            }
        ],
    }
