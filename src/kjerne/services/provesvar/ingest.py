"""Receiving a result message (Svarrapport or HL7 v2): map, apply the result lifecycle, store, log,
and answer (AppRec or ACK).

Lifecycle: a change (M) or addendum (A) supersedes the report it names and keeps the history; a
cancellation (C) marks the report and its results cancelled, so current views drop it while history
keeps it. The same message twice is stored once. A message older (by issue time) than what is stored
for its report is acknowledged but does not overwrite the newer state, so out-of-order delivery ends in
the right current state.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kjerne.fhir.outcome import FhirError
from kjerne.services.ingest_log import Delivery, accepted_before, record, record_alone
from kjerne.services.provesvar.apprec import apprec
from kjerne.services.provesvar.faults import Fault
from kjerne.services.provesvar.svarrapport_map import MappingResult, map_svarrapport
from kjerne.store.bundles import BundleProcessor
from kjerne.store.indexing import date_range
from kjerne.store.records import Stored
from kjerne.store.repository import Repository
from kjerne.store.writer import Writer

CANCELLED = ("cancelled", "entered-in-error")


@dataclass(slots=True)
class Receipt:
    status: str  # ok | warning | superseded | duplicate | rejected
    body: bytes  # the AppRec
    http_status: int
    reasons: list[str]


def _instant(value: str | None) -> int | None:
    if not value:
        return None
    try:
        return date_range(value)[0]
    except ValueError:
        return None


def _report_entry(bundle: dict[str, Any]) -> dict[str, Any] | None:
    for e in bundle.get("entry", []):
        if e.get("resource", {}).get("resourceType") == "DiagnosticReport":
            return e
    return None


def _stored_report(repo: Repository, url: str) -> Stored | None:
    with repo.read_tx() as conn:
        found = repo._match(conn, "DiagnosticReport", url.split("?", 1)[1], lock=False)
    return found[0] if found else None


def _cancel_orphans(writer: Writer, previous_results: list[str], written: list[Stored], cancel_all: bool) -> None:
    """Results of the earlier version that the new version no longer lists (all of them on a
    cancellation) are marked cancelled, so no stale value stays current."""
    kept = {f"Observation/{s.res_id}" for s in written if s.res_type == "Observation"}
    for ref in previous_results:
        if not cancel_all and ref in kept:
            continue
        res_type, res_id = ref.split("/", 1)
        stored = writer.current(res_type, res_id)
        if stored is None or stored.deleted:
            continue
        res = stored.resource()
        if res.get("status") in CANCELLED:
            continue
        res["status"] = "cancelled"
        writer.put(res, res_id, guarded=False)
        for child in res.get("hasMember", []):
            child_ref = child.get("reference", "")
            if child_ref.startswith("Observation/"):
                _cancel_orphans(writer, [child_ref], [], True)


Mapper = Callable[..., MappingResult]
Answer = Callable[[MappingResult, bytes], bytes]


def _apprec(result: MappingResult, raw: bytes) -> bytes:
    return apprec(result, raw)


def _hl7_ack(result: MappingResult, raw: bytes) -> bytes:
    from kjerne.services.provesvar.hl7v2 import ack

    return ack(raw, result).encode("utf-8")


def ingest_svarrapport(
    repo: Repository, xml: bytes, producer: str, *, received_at: dt.datetime | None = None
) -> Receipt:
    return ingest_result_message(repo, xml, producer, "svarrapport", map_svarrapport, _apprec, received_at=received_at)


def ingest_hl7v2(repo: Repository, message: bytes, producer: str, *, received_at: dt.datetime | None = None) -> Receipt:
    from kjerne.services.provesvar.hl7v2 import map_oru

    return ingest_result_message(repo, message, producer, "hl7v2", map_oru, _hl7_ack, received_at=received_at)


def ingest_result_message(
    repo: Repository,
    xml: bytes,
    producer: str,
    fmt: str,
    mapper: Mapper,
    answer: Answer,
    *,
    received_at: dt.datetime | None = None,
) -> Receipt:
    """One result message in any producer format: map, apply the lifecycle, store, log, answer."""
    received_at = received_at or dt.datetime.now(dt.UTC)
    result: MappingResult = mapper(xml, received_at=received_at)
    sender = result.sender or {}
    delivery = Delivery(
        producer=producer,
        producer_name=sender.get("name"),
        sender=sender.get("herid") or sender.get("orgnr"),
        format=fmt,
        status="rejected",
        msg_id=result.msg_id,
        issued=_instant(result.issued),
    )
    if not result.ok or result.bundle is None:
        return _rejected(repo, result, xml, delivery, result.errors, answer)

    with repo.read_tx() as conn:
        earlier = accepted_before(conn, producer, result.msg_id)
    if earlier is not None:
        delivery.status, delivery.receipt = "duplicate", earlier
        record_alone(repo.engine, delivery)
        return Receipt("duplicate", earlier, 200, [])

    entry = _report_entry(result.bundle)
    existing = _stored_report(repo, entry["request"]["url"]) if entry else None
    if existing is not None and entry is not None:
        stored_issued = _instant(existing.resource().get("issued"))
        incoming_issued = _instant(entry["resource"].get("issued"))
        if stored_issued and incoming_issued and incoming_issued < stored_issued:
            result.warnings.append(
                "a later message for this report is already stored; this one is kept in the log only"
            )
            return _accepted(repo, result, xml, delivery, "superseded", answer)
    previous_results = [r.get("reference", "") for r in (existing.resource().get("result", []) if existing else [])]
    previous_results = [r for r in previous_results if r.startswith("Observation/")]
    cancel_all = result.service_type == "C"

    def lifecycle(writer: Writer, written: list[Stored]) -> None:
        if existing is not None:
            _cancel_orphans(writer, previous_results, written, cancel_all)
        delivery.reports = sum(1 for s in written if s.res_type == "DiagnosticReport") or 1
        delivery.status = "warning" if result.warnings else "ok"
        delivery.receipt = answer(result, xml)
        record(writer.conn, delivery)

    try:
        BundleProcessor(repo, minimal=True).transaction(result.bundle, after=lifecycle)
    except FhirError as err:
        return _rejected(
            repo, result, xml, delivery, [f"the result could not be stored: {i.diagnostics}" for i in err.issues]
        )
    assert delivery.receipt is not None
    return Receipt(delivery.status, delivery.receipt, 200, result.warnings)


def _accepted(
    repo: Repository, result: MappingResult, xml: bytes, delivery: Delivery, status: str, answer: Answer
) -> Receipt:
    delivery.status = status
    delivery.reasons = list(result.warnings)
    delivery.receipt = answer(result, xml)
    record_alone(repo.engine, delivery)
    return Receipt(status, delivery.receipt, 200, result.warnings)


def _rejected(
    repo: Repository, result: MappingResult, xml: bytes, delivery: Delivery, reasons: list[str], answer: Answer
) -> Receipt:
    result.ok = False
    result.bundle = None
    if reasons is not result.errors:
        result.errors.extend(reasons)
        code = "X99" if answer is _apprec else "207"  # kodeverk 8221 / HL7 table 0357: application error
        result.error_faults.extend(Fault(code, "Message", reason) for reason in reasons)
    body = answer(result, xml)
    delivery.status, delivery.reasons, delivery.receipt = "rejected", list(result.errors), body
    record_alone(repo.engine, delivery)
    return Receipt("rejected", body, 400, list(result.errors))
