"""What the Svarrapport and HL7 v2 mappers share: their result, derived keys, conditional updates, the
transaction Bundle they build, and FHIR quantities."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from kjerne.services.provesvar.faults import Fault
from kjerne.services.provesvar.svarrapport_schema import Envelope
from kjerne.services.provesvar.tolerances import Number
from kjerne.services.provesvar.units import UCUM, Unit

# How far a date may lie after the reception time before it counts as in the future.
CLOCK_SKEW = dt.timedelta(minutes=10)
INTERNAL_ERROR = "the message could not be mapped (internal error)"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"


@dataclass
class MappingResult:
    ok: bool
    bundle: dict[str, Any] | None
    warnings: list[str]
    errors: list[str]
    msg_id: str | None = None  # the id an AppRec answers: MsgHead/MsgInfo/MsgId, else Message/MsgId
    sender: dict[str, str] = field(default_factory=dict)  # orgnr / herid / name
    version: str = ""  # "1.3" | "1.4"
    service_type: str = ""  # ServReport/ServType (kodeverk 7309): N, M, C, A, H
    report_ids: list[str] = field(default_factory=list)
    issued: str | None = None  # Message/GenDate as FHIR instant
    warning_faults: list[Fault] = field(default_factory=list)
    error_faults: list[Fault] = field(default_factory=list)
    envelope: Envelope | None = None
    message_type: str | None = None  # Message/Type V (e.g. SVAR_LAB)
    gen_date: str | None = None  # GenDate as written (for the AppRec's OriginalMsgId/IssueDate)


def received_time(received_at: dt.datetime | None) -> dt.datetime:
    """The reception time, now when not given; a naive time is UTC."""
    received = received_at or dt.datetime.now(dt.UTC)
    if received.tzinfo is None:
        received = received.replace(tzinfo=dt.UTC)
    return received


class KeySpace:
    """Derived keys of one mapper: name-based UUIDs in a namespace of its own, written under `<base>:key`."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.system = f"{base}:key"
        self.namespace = uuid.uuid5(uuid.NAMESPACE_URL, base)

    def uuid(self, *parts: str) -> str:
        return str(uuid.uuid5(self.namespace, "|".join(parts)))

    def full_url(self, resource_type: str, key: str) -> str:
        return f"urn:uuid:{self.uuid(resource_type, key)}"

    def ident(self, value: str) -> dict[str, str]:
        return {"use": "secondary", "system": self.system, "value": value}


def conditional(resource_type: str, system: str, value: str) -> dict[str, str]:
    """A conditional update on one identifier."""
    return {"method": "PUT", "url": f"{resource_type}?identifier={quote(system, safe=':/')}|{quote(value, safe='')}"}


class BundleEntries:
    """Transaction entries by fullUrl, in the order first added; a second resource for a fullUrl is dropped."""

    def __init__(self) -> None:
        self.by_url: dict[str, dict[str, Any]] = {}

    def add(self, resource: dict[str, Any], full_url: str, request: dict[str, str]) -> None:
        if full_url not in self.by_url:
            self.by_url[full_url] = {"fullUrl": full_url, "resource": resource, "request": request}

    def resource(self, full_url: str) -> dict[str, Any]:
        return self.by_url[full_url]["resource"]

    def bundle(self, identifier: dict[str, str] | None, timestamp: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {"resourceType": "Bundle", "type": "transaction"}
        if identifier:
            out["identifier"] = identifier
        if timestamp:
            out["timestamp"] = timestamp
        out["entry"] = list(self.by_url.values())
        return out


def quantity(number: Number, unit: Unit) -> dict[str, Any]:
    q: dict[str, Any] = {"value": number.as_json()}
    if unit.code is not None:
        q["unit"] = unit.original.strip() or unit.code
        q["system"] = UCUM
        q["code"] = unit.code
    return q


def with_comparator(q: dict[str, Any], comparator: str) -> dict[str, Any]:
    """The quantity with a comparator, which FHIR places after the value."""
    return {"value": q["value"], "comparator": comparator, **{k: v for k, v in q.items() if k != "value"}}
