"""The state one HL7 v2 mapping builds up, its faults, and the identifier systems scoped to the producer."""

from __future__ import annotations

import datetime as dt
from typing import Any

from kjerne.services.provesvar.faults import Fault
from kjerne.services.provesvar.hl7v2_datatypes import HD, read_ts, token
from kjerne.services.provesvar.hl7v2_parse import Message, Seg
from kjerne.services.provesvar.mapping import CLOCK_SKEW, BundleEntries, KeySpace
from kjerne.services.provesvar.tolerances import Moment, ValueProblem

ID_BASE = "urn:kjerne:hl7v2"
KEYS = KeySpace(ID_BASE)
KEY_SYSTEM = KEYS.system
LOCAL_CODES = f"{ID_BASE}:local"


class MapperBase:
    """What every part of the mapping shares: the message, the faults found, the Bundle entries and the
    producer. Each part is a mixin on this base in a module of its own; `OruMapper` combines them."""

    def __init__(self, msg: Message, received: dt.datetime) -> None:
        self.msg = msg
        self.received = received
        self.errors: list[Fault] = []
        self.warnings: list[Fault] = []
        self.entries = BundleEntries()
        self.sender = ""  # producer token used in identifier and code systems
        self.sender_name: str | None = None
        self.sender_org: dict[str, Any] | None = None
        self.message_time: Moment | None = None
        self.report_ids: list[str] = []
        self.service_types: list[str] = []
        self.report_keys: set[str] = set()
        self.roles: dict[str, str] = {}
        self.specimen_keys: dict[str, str] = {}
        self.warned_systems: set[str] = set()

    def error(self, code: str, where: str, text: str) -> None:
        self.errors.append(Fault(code, where, text))

    def warning(self, code: str, where: str, text: str) -> None:
        self.warnings.append(Fault(code, where, text))

    def moment(self, seg: Seg, n: int, c: int = 1, *, future_ok: bool = False) -> Moment | None:
        raw = seg.v(n, c)
        try:
            m = read_ts(raw)
        except ValueProblem as exc:
            self.error("102", seg.where(n, c if c > 1 else None), str(exc))
            return None
        if m is not None and not future_ok and m.at > self.received + CLOCK_SKEW:
            self.error("102", seg.where(n, c if c > 1 else None), f"date/time {m.fhir} is in the future")
        return m

    def add(self, resource: dict[str, Any], full_url: str, request: dict[str, str]) -> None:
        self.entries.add(resource, full_url, request)

    def bundle(self) -> dict[str, Any]:
        control_id = self.msg.msh.v(10)
        identifier = None
        if control_id and self.sender:
            identifier = {"system": f"{ID_BASE}:{self.sender}:message", "value": control_id}
        timestamp = self.message_time.fhir if self.message_time and self.message_time.has_time else None
        return self.entries.bundle(identifier, timestamp)

    def id_system(self, kind: str, authority: HD | None) -> str:
        if authority is not None and authority.global_system:
            return authority.global_system
        base = f"{ID_BASE}:{self.sender}:{kind}"
        if authority is not None and authority.label:
            return f"{base}:{token(authority.label)}"
        return base
