"""The requisition link: a requester's ordered analyses, with and without results yet."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kjerne.fhir.identifiers import OID_HPR
from kjerne.services.provesvar.reading import all_matches
from kjerne.store.repository import Repository


@dataclass(slots=True)
class Requested:
    service_request: dict[str, Any]
    reports: list[dict[str, Any]] = field(default_factory=list)

    @property
    def answered(self) -> bool:
        return any(r.get("status") not in ("registered", "cancelled", "entered-in-error") for r in self.reports)


def requested_by(repo: Repository, hpr: str, patient_ids: list[str] | None = None) -> list[Requested]:
    """ServiceRequests whose requester is (a role of) the practitioner with this HPR number, each with
    the DiagnosticReports based on it. Only what the caller may see is returned."""
    roles = [r["id"] for r in all_matches(repo, "PractitionerRole", [("practitioner:identifier", f"{OID_HPR}|{hpr}")])]
    requesters = [f"PractitionerRole/{r}" for r in roles]
    requesters += [
        f"Practitioner/{p['id']}" for p in all_matches(repo, "Practitioner", [("identifier", f"{OID_HPR}|{hpr}")])
    ]
    if not requesters:
        return []
    pairs = [("requester", ",".join(requesters)), ("_sort", "-authored")]
    if patient_ids:
        pairs.append(("patient", ",".join(f"Patient/{p}" for p in patient_ids)))
    out = {sr["id"]: Requested(sr) for sr in all_matches(repo, "ServiceRequest", pairs)}
    if out:
        refs = ",".join(f"ServiceRequest/{i}" for i in out)
        for report in all_matches(repo, "DiagnosticReport", [("based-on", refs)]):
            for based in report.get("basedOn", []):
                key = based.get("reference", "").removeprefix("ServiceRequest/")
                if key in out:
                    out[key].reports.append(report)
    return list(out.values())
