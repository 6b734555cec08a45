"""KITH Svarrapport v1.3/v1.4 -> FHIR R4 transaction Bundle, following Norsk helsenett's NILAR mapping.

One call maps one message (bare `Message` or inside a MsgHead envelope). Each ServReport becomes a
DiagnosticReport with its Observations (nested ResultItems and microbiology isolate/resistance links become
`hasMember` hierarchies), ServiceRequests, Specimens and the PractitionerRoles they reference. Nothing is
stored here: the Bundle uses `urn:uuid:` fullUrls and conditional updates keyed on identifiers, so the same
message mapped twice gives the same Bundle and the store can apply it idempotently.

Identifiers
    Report, request, specimen and result ids in a Svarrapport are only unique within the laboratory that
    issued them. Kjerne therefore puts the producer in the identifier system:
    `urn:kjerne:labsvar:<producer>:<kind>` where <producer> is `orgnr-<n>`, `herid-<n>`, `resh-<n>` or
    `hpr-<n>` (the ServProvider) and <kind> is a code from NILAR's identifier-source code system
    (MsgId, ServReportId, ServReqId, ServReqIdByServProvider, AnalysedSubjectId,
    AnalysedSubjectIdByRequester, ResultItemId); `identifier.type` carries the same code. The
    DiagnosticReport is updated on its ServReportId (ServProvId), or on ServReqId when the report has no
    ServProvId; that identifier stays the same across new, changed, cancelled and appended versions.
    Observations, Specimens and ServiceRequests are updated on a derived key (`urn:kjerne:labsvar:key`), a
    UUID computed from the report identifier and the element's place in the report (for a result: its
    parent's key, its analysis code and its occurrence among siblings with that code), because the message
    gives them no stable id of their own; a changed report therefore updates the same resources. A
    PractitionerRole's key is computed from the HPR number / organisation identifiers it names (from the
    names within the report when it has no identifier).

Lifecycle
    The store applies versions. Each DiagnosticReport carries what it needs: the stable report identifier,
    `issued` = Message/GenDate (the version date), `meta.tag` with ServType (kodeverk 7309) and report
    Status (7306), and `status` from the NILAR ServType x Status table.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from typing import Any

from kjerne.services.provesvar.faults import Fault, where
from kjerne.services.provesvar.mapping import CLOCK_SKEW, INTERNAL_ERROR, MappingResult, received_time
from kjerne.services.provesvar.svarrapport_context import MessageContext
from kjerne.services.provesvar.svarrapport_fhir import (
    EXT_ACCREDITED,
    EXT_APPROVAL_DATE,
    EXT_COMMENT,
    EXT_DIAGNOSTIC_REPORT_REF,
    EXT_OTHER_INFO,
    EXT_REPORT_DATE,
    ID_BASE,
    IDENTIFIER_SOURCE,
    KEY_SYSTEM,
    NILAR,
)
from kjerne.services.provesvar.svarrapport_parse import scrape_msg_id
from kjerne.services.provesvar.svarrapport_report import Report
from kjerne.services.provesvar.svarrapport_schema import SvarrapportFormatError, locate, parse, validate
from kjerne.services.provesvar.tolerances import review_schema

__all__ = [
    "CLOCK_SKEW",
    "EXT_ACCREDITED",
    "EXT_APPROVAL_DATE",
    "EXT_COMMENT",
    "EXT_DIAGNOSTIC_REPORT_REF",
    "EXT_OTHER_INFO",
    "EXT_REPORT_DATE",
    "IDENTIFIER_SOURCE",
    "ID_BASE",
    "INTERNAL_ERROR",
    "KEY_SYSTEM",
    "NILAR",
    "MappingResult",
    "map_svarrapport",
]

logger = logging.getLogger(__name__)


def map_svarrapport(xml: bytes, *, received_at: dt.datetime | None = None) -> MappingResult:
    """Map one Svarrapport (bare or in MsgHead) to a FHIR transaction Bundle. Never raises on bad input."""
    received = received_time(received_at)
    try:
        tree = parse(xml)
        located = locate(tree)
    except SvarrapportFormatError as exc:
        fault = Fault(exc.code, exc.where, exc.text)
        return MappingResult(
            ok=False,
            bundle=None,
            warnings=[],
            errors=[str(fault)],
            error_faults=[fault],
            msg_id=scrape_msg_id(xml),
        )
    review = review_schema(tree, located.message, validate(tree))
    mapper = _Mapper(located, received)
    try:
        mapper.run()
    except Exception as exc:  # a message the mapper cannot handle is refused, never half-mapped
        logger.exception("Svarrapport mapping failed")
        mapper.errors.append(Fault("X99", "Message", f"{INTERNAL_ERROR}: {type(exc).__name__}"))
    errors = _dedupe(mapper.errors + [f for f in review.errors if f.where not in {e.where for e in mapper.errors}])
    warnings = _dedupe(review.warnings + mapper.warnings)
    ok = not errors
    env = located.envelope
    sender = dict(mapper.sender)
    if env and env.sender:
        sender = {k: v for k, v in env.sender.items() if k in ("orgnr", "herid", "name")} or sender
    return MappingResult(
        ok=ok,
        bundle=mapper.bundle() if ok else None,
        warnings=[str(w) for w in warnings],
        errors=[str(e) for e in errors],
        msg_id=(env.msg_id if env and env.msg_id else mapper.msg_id),
        sender=sender,
        version=located.version,
        service_type=mapper.service_type,
        report_ids=mapper.report_ids,
        issued=mapper.issued,
        warning_faults=warnings,
        error_faults=errors,
        envelope=env,
        message_type=mapper.message_type,
        gen_date=mapper.gen_date_raw,
    )


def _dedupe(faults: Iterable[Fault]) -> list[Fault]:
    seen: set[tuple[str, str, str | None]] = set()
    out = []
    for f in faults:
        key = (f.where, f.text, f.tolerance) if not f.tolerance else (f.where, "", f.tolerance)
        if key not in seen:
            seen.add(key)
            out.append(f)
    return out


class _Mapper(MessageContext):
    def run(self) -> None:
        msg = self.loc.message
        type_el = self.child(msg, "Type")
        self.message_type = (type_el.get("V") or "").strip() or None if type_el is not None else None
        mig = self.text(msg, "MIGversion")
        if mig and not mig.replace("v", "").startswith(self.loc.version):
            self.tolerate(
                "T08-MIGVERSION",
                where(msg, "MIGversion"),
                f"MIGversion '{mig}' in a v{self.loc.version} namespace; read as v{self.loc.version}",
            )
        self.msg_id = self.text(msg, "MsgId")
        if not self.msg_id:
            self.error("E10", where(msg, "MsgId"), "message id missing")
        gen = self.child(msg, "GenDate")
        self.gen_date_raw = gen.get("V") if gen is not None else None
        self.gen_date = self.moment(msg, "GenDate")
        if self.gen_date is None:
            if not any(f.where == where(msg, "GenDate") for f in self.errors):
                self.error("X99", where(msg, "GenDate"), "GenDate missing: the report version cannot be dated")
        elif not self.gen_date.has_time:
            self.warning("X99", where(msg, "GenDate"), "GenDate has no time of day; issued is left out")
        else:
            self.issued = self.gen_date.fhir
        reports = self.kids(msg, "ServReport")
        if not reports:
            self.error("X99", where(msg, "ServReport"), "the message contains no ServReport")
        service_types = []
        for sr in reports:
            Report(self, sr).run()
            st = self.code_v(sr, "ServType")
            if st and st not in service_types:
                service_types.append(st)
        self.service_type = ",".join(service_types)

    def bundle(self) -> dict[str, Any]:
        identifier = None
        if self.msg_id and self.sender_key:
            identifier = {"system": f"{ID_BASE}:{self.sender_key}:MsgId", "value": self.msg_id}
        return self.entries.bundle(identifier, self.issued)
