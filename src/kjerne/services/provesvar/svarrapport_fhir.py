"""FHIR names the Svarrapport mapping writes: NILAR extensions and code systems, and the identifier
systems scoped to the producer (`urn:kjerne:labsvar:<producer>:<kind>`)."""

from __future__ import annotations

from typing import Any

from kjerne.services.provesvar.mapping import KeySpace

NILAR = "http://nhn.no/fhir/nilar"
EXT_REPORT_DATE = f"{NILAR}/StructureDefinition/nilar-report-date"
EXT_APPROVAL_DATE = f"{NILAR}/StructureDefinition/nilar-approval-date"
EXT_COMMENT = f"{NILAR}/StructureDefinition/nilar-comment"
EXT_OTHER_INFO = f"{NILAR}/StructureDefinition/nilar-other-info"
EXT_ACCREDITED = f"{NILAR}/StructureDefinition/nilar-accredited"
EXT_DIAGNOSTIC_REPORT_REF = f"{NILAR}/StructureDefinition/nilar-diagnostic-report-ref"
IDENTIFIER_SOURCE = f"{NILAR}/CodeSystem/identifier-source-cs"

ID_BASE = "urn:kjerne:labsvar"
KEYS = KeySpace(ID_BASE)
KEY_SYSTEM = KEYS.system


def ident(kind: str, system: str, value: str, use: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if use:
        out["use"] = use
    out["type"] = {"coding": [{"system": IDENTIFIER_SOURCE, "code": kind}]}
    out["system"] = system
    out["value"] = value
    return out


def annotation(text: str) -> dict[str, str]:
    return {"text": text}


def other_info(label: str, text: str) -> dict[str, Any]:
    return {"url": EXT_OTHER_INFO, "valueAnnotation": {"text": f"{label}: {text}"}}


def tag(coding: dict[str, str]) -> dict[str, str]:
    return {k: coding[k] for k in ("system", "code", "display") if k in coding}
