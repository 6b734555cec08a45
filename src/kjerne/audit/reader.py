"""Reading the audit log: a citizen's own access log, and the full log for security monitoring."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import and_, select

from kjerne.access.context import AccessRecord
from kjerne.audit.log import citizen_view
from kjerne.audit.schema import audit_event
from kjerne.fhir.outcome import FhirError
from kjerne.store.repository import Repository


def read_log(
    repo: Repository,
    patient_ids: list[str] | None,
    *,
    count: int = 50,
    before_seq: int | None = None,
    since_us: int | None = None,
) -> tuple[list[dict[str, Any]], int | None]:
    """Entries newest first; returns (AuditEvents, seq to continue before)."""
    policy = repo.access
    principal = getattr(policy, "principal", None)
    kind = principal.kind if principal is not None else "platform"
    if kind == "practitioner":
        raise FhirError.of(403, "forbidden", "health personnel cannot read the access log")
    if kind == "system" and not principal.can("AuditEvent", "read"):
        raise FhirError.of(403, "forbidden", "the token's scopes do not allow reading the audit log")
    if kind == "citizen":
        own = list(getattr(policy, "own_patients", []))
        if patient_ids is None:
            patient_ids = own
        if any(p not in own for p in patient_ids):
            raise FhirError.of(403, "forbidden", "citizens can only read their own access log")
        if not patient_ids:
            with repo.audit_tx() as conn:  # nothing to show, but the look is an access all the same
                repo._record(conn, AccessRecord("read", "AuditEvent", "allowed", [], [], detail="access log"))
            return [], None
    conds = []
    if patient_ids is not None:
        conds.append(audit_event.c.patient.in_(patient_ids))
    if before_seq is not None:
        conds.append(audit_event.c.seq < before_seq)
    if since_us is not None:
        conds.append(audit_event.c.recorded >= since_us)
    q = select(audit_event.c.seq, audit_event.c.content).order_by(audit_event.c.seq.desc()).limit(count + 1)
    if conds:
        q = q.where(and_(*conds))
    with repo.audit_tx() as conn:
        rows = conn.execute(q).all()
        repo._record(
            conn,
            AccessRecord("read", "AuditEvent", "allowed", [], sorted(set(patient_ids or [])), detail="access log"),
        )
    more = len(rows) > count
    rows = rows[:count]
    events = []
    for row in rows:
        event = orjson.loads(row.content)
        event["id"] = str(row.seq)
        events.append(citizen_view(event) if kind == "citizen" else event)
    return events, (rows[-1].seq if more else None)
