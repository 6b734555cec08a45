"""AuditEvent resources for access records, shaped after the Norwegian trust-framework AuditEvent."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kjerne.access.context import AccessRecord
from kjerne.fhir.identifiers import OID_HPR, OID_ORGNR
from kjerne.store.clock import us_to_instant

KJ = "http://kjerne.no/fhir"
OVERRIDE_EXT = f"{KJ}/StructureDefinition/access-override"
REASON_EXT = f"{KJ}/StructureDefinition/access-reason"
ACCESS_BASIS_SYSTEM = f"{KJ}/CodeSystem/access-basis"
PURPOSE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActReason"

_ACTION = {
    "read": ("R", "read"),
    "vread": ("R", "vread"),
    "search": ("E", "search-type"),
    "history": ("R", "history-instance"),
    "create": ("C", "create"),
    "update": ("U", "update"),
    "delete": ("D", "delete"),
    "transaction": ("E", "transaction"),
    "operation": ("E", "operation"),
    "login": ("E", "login"),
    "export": ("R", "read"),
    "page": ("R", "read"),
}


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acted, as the audit log keeps it."""

    kind: str  # citizen | practitioner | system | anonymous | platform
    hpr: str | None = None
    pid: str | None = None
    name: str | None = None
    org: str | None = None
    org_name: str | None = None
    point_of_care: str | None = None
    point_of_care_name: str | None = None
    purpose: str | None = None
    access_basis: str | None = None
    channel: str = "api"  # api | portal | ingest | cli


def audit_event(
    actor: Actor, rec: AccessRecord, patient: str | None, recorded_us: int, override: bool
) -> dict[str, Any]:
    code, interaction = _ACTION.get(rec.action, ("E", rec.action))
    who: dict[str, Any] = {}
    if actor.hpr:
        who["identifier"] = {"system": OID_HPR, "value": actor.hpr}
    elif actor.kind == "system" and actor.org:
        who["identifier"] = {"system": OID_ORGNR, "value": actor.org}
    elif actor.kind == "citizen" and patient:
        who["reference"] = f"Patient/{patient}"
    who["display"] = actor.name or {"citizen": "Innbygger", "system": "Fagsystem"}.get(actor.kind, actor.kind)
    agents: list[dict[str, Any]] = [
        {
            "type": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/extra-security-role-type",
                        "code": "humanuser" if actor.kind in ("practitioner", "citizen") else "dataprocessor",
                    }
                ]
            },
            "who": who,
            "requestor": True,
        }
    ]
    if actor.org:
        agents.append(
            {
                "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleClass", "code": "PROV"}]},
                "who": {
                    "identifier": {"system": OID_ORGNR, "value": actor.org},
                    "display": actor.org_name or actor.org,
                },
                "requestor": False,
            }
        )
    if actor.point_of_care and actor.point_of_care != actor.org:
        agents.append(
            {
                "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleClass", "code": "SDLOC"}]},
                "who": {
                    "identifier": {"system": OID_ORGNR, "value": actor.point_of_care},
                    "display": actor.point_of_care_name or actor.point_of_care,
                },
                "requestor": False,
            }
        )
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest"},
        "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": interaction}],
        "action": code,
        "recorded": us_to_instant(recorded_us),
        "outcome": "0" if rec.outcome == "allowed" else "4",
        "agent": agents,
        "source": {"observer": {"display": f"Kjerne ({actor.channel})"}},
    }
    if rec.outcome != "allowed" and rec.detail:
        event["outcomeDesc"] = rec.detail
    purpose = []
    if actor.purpose:
        purpose.append({"coding": [{"system": PURPOSE_SYSTEM, "code": actor.purpose}]})
    if actor.access_basis:
        purpose.append({"coding": [{"system": ACCESS_BASIS_SYSTEM, "code": actor.access_basis}]})
    if purpose:
        event["purposeOfEvent"] = purpose
    entities: list[dict[str, Any]] = []
    if patient:
        entities.append(
            {
                "what": {"reference": f"Patient/{patient}"},
                "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1"},
                "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1"},
            }
        )
    for ref in rec.resource_ids[:200]:
        entities.append({"what": {"reference": ref}})
    if rec.res_type and rec.action == "search" and rec.detail:
        entities.append(
            {
                "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2"},
                "description": f"{rec.res_type}?{rec.detail}"[:1000],
            }
        )
    if entities:
        event["entity"] = entities
    ext = [{"url": OVERRIDE_EXT, "valueBoolean": override}]
    if rec.withheld:
        ext.append({"url": f"{KJ}/StructureDefinition/withheld", "valueCode": rec.withheld})
    if rec.reason:
        ext.append({"url": REASON_EXT, "valueString": rec.reason[:500]})
    event["extension"] = ext
    return event
