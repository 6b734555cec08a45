"""HL7 v2.x ORU^R01 (laboratory results) -> FHIR R4 transaction Bundle, and the ACK that answers the message.

`map_oru` reads one message (v2.3 to v2.9; segments separated by CR, LF or CRLF; an optional UTF-8 byte order
mark) and returns the same `MappingResult` as the Svarrapport mapper: a transaction Bundle when the message
can be mapped, otherwise the faults that refuse it. Nothing is stored here. `ack` builds the original-mode
acknowledgement (MSA AA, or AE/AR with one ERR per fault) in the message's own separators and version.

Structure
    The message is read as ORU^R01 groups: PID (one patient, v2.7+ patient observations), then order groups
    ORC?/OBR with their NTE, OBX (+NTE) and SPM (+OBX). Segments that carry no result (PD1, PV1, PRT, TQ1,
    CTD, FT1, CTI, TXA, SFT, Z-segments ...) are skipped. Each OBR becomes a DiagnosticReport, a
    ServiceRequest, the Specimens of its SPM segments (or OBR-15 in older versions) and one Observation per
    OBX. OBX values of type ED and RP (documents, pointers) are not results: they become attachments in
    `DiagnosticReport.presentedForm`.

Identifiers
    The producer is the sending facility (MSH-4, else the sending application MSH-3). An identifier whose
    assigning authority carries an ISO OID (or a UUID) keeps it as the system (`urn:oid:...`). Namespace ids
    are local by definition, so identifiers with only a namespace, or none, are scoped to the producer:
    `urn:kjerne:hl7v2:<producer>:<kind>[:<namespace>]` with <kind> one of patient, filler-order,
    placer-order, placer-group, specimen, observation, practitioner, organization. Two labs' "MR 123" can
    therefore never name the same Patient. Norwegian national identity numbers (identifier type FNR, DNR,
    FHN or NNNOR, or the Volven OIDs as assigning authority) are checked and referenced by identifier only
    (`{"type": "Patient", "identifier": ...}`): the store resolves them to its Patient. Other patients are
    written as a Patient resource, updated conditionally on the first PID-3 identifier and referenced by its
    `urn:uuid:` fullUrl.

    The DiagnosticReport is updated on its filler order number (OBR-3/ORC-3, else the placer number), which
    stays the same across preliminary, final and corrected versions. Observations, Specimens,
    ServiceRequests and PractitionerRoles are updated on a derived key (`urn:kjerne:hl7v2:key`): a UUID made
    from the report identifier and the element's place in it (for a result: its code, OBX-4 sub-id and
    occurrence), from the specimen id, or from the practitioner's identifier. The same message mapped twice
    gives the same Bundle.

Codes
    Coding systems are read from the coded element's coding-system component (CWE-3/6, or the OID in
    CWE-14/17): LN -> http://loinc.org, SCT -> http://snomed.info/sct, HL7nnnn -> the v2 table's code system,
    NPU, NLK, ICD-10, ATC and UCUM by their canonical URIs, an OID as `urn:oid:`. Local codes (L, 99zzz and
    names Kjerne does not know) are scoped to the producer: `urn:kjerne:hl7v2:local:<producer>[:<name>]`.
    Units (OBX-6) are mapped to UCUM by `units.to_ucum`; a unit that cannot be read is a fault.
"""

from __future__ import annotations

import datetime as dt
import logging

from kjerne.services.provesvar.faults import Fault
from kjerne.services.provesvar.hl7v2_ack import ERROR_CODES, REJECT_CODES, ack
from kjerne.services.provesvar.hl7v2_context import ID_BASE, KEY_SYSTEM, LOCAL_CODES
from kjerne.services.provesvar.hl7v2_datatypes import read_ts, read_unit
from kjerne.services.provesvar.hl7v2_message import OruMapper
from kjerne.services.provesvar.hl7v2_parse import NotHL7v2, normalise, read_message
from kjerne.services.provesvar.mapping import INTERNAL_ERROR, MappingResult, received_time

__all__ = [
    "ERROR_CODES",
    "ID_BASE",
    "KEY_SYSTEM",
    "LOCAL_CODES",
    "REJECT_CODES",
    "MappingResult",
    "NotHL7v2",
    "ack",
    "map_oru",
    "normalise",
    "read_message",
    "read_ts",
    "read_unit",
]

logger = logging.getLogger(__name__)


def map_oru(message: bytes | str, *, received_at: dt.datetime | None = None) -> MappingResult:
    """Map one HL7 v2 ORU^R01 message to a FHIR transaction Bundle. Never raises on bad input."""
    received = received_time(received_at)
    try:
        msg, notes = read_message(message)
    except NotHL7v2 as exc:
        fault = Fault("200", "message", str(exc))
        return MappingResult(ok=False, bundle=None, warnings=[], errors=[str(fault)], error_faults=[fault])
    mapper = OruMapper(msg, received)
    for note in notes:
        mapper.warning("102", "message", note)
    try:
        mapper.run()
    except Exception as exc:  # a message the mapper cannot handle is refused, never half-mapped
        logger.exception("HL7 v2 mapping failed")
        mapper.errors.append(Fault("207", "message", f"{INTERNAL_ERROR}: {type(exc).__name__}"))
    errors = _dedupe(mapper.errors)
    warnings = _dedupe(mapper.warnings)
    ok = not errors
    msh = msg.msh
    return MappingResult(
        ok=ok,
        bundle=mapper.bundle() if ok else None,
        warnings=[str(w) for w in warnings],
        errors=[str(e) for e in errors],
        msg_id=msh.v(10) or None,
        sender={k: v for k, v in (("name", mapper.sender_name), ("id", mapper.sender)) if v},
        version=msh.v(12),
        service_type=",".join(dict.fromkeys(mapper.service_types)),
        report_ids=mapper.report_ids,
        issued=mapper.message_time.fhir if mapper.message_time and mapper.message_time.has_time else None,
        warning_faults=warnings,
        error_faults=errors,
        message_type="^".join(p for p in (msh.v(9, 1), msh.v(9, 2)) if p) or None,
        gen_date=msh.v(7) or None,
    )


def _dedupe(faults: list[Fault]) -> list[Fault]:
    seen: set[tuple[str, str, str]] = set()
    out = []
    for f in faults:
        if (f.code, f.where, f.text) not in seen:
            seen.add((f.code, f.where, f.text))
            out.append(f)
    return out
