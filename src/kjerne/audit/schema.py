"""The audit log's own tables: append-only rows, hash-chained, with a one-row head for serialising appends."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Index, Integer, LargeBinary, String, Table

from kjerne.store.schema import RowId, metadata

audit_event = Table(
    "audit_event",
    metadata,
    Column("seq", RowId, primary_key=True, autoincrement=True),
    Column("recorded", BigInteger, nullable=False),  # microseconds since the epoch, UTC
    Column("patient", String(64)),  # Patient id whose data was touched, one row per patient
    Column("agent_kind", String(16), nullable=False),  # citizen | practitioner | system | anonymous
    Column("agent_hpr", String(16)),
    Column("agent_pid", String(16)),  # for security monitoring only; never shown to a citizen
    Column("agent_org", String(16)),
    Column("action", String(24), nullable=False),
    Column("outcome", String(8), nullable=False),  # allowed | denied
    Column("purpose", String(16)),
    Column("access_basis", String(24)),
    Column("override", Boolean, nullable=False, default=False),
    Column("content", LargeBinary, nullable=False),  # the AuditEvent as JSON
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)
Index("ix_audit_patient", audit_event.c.patient, audit_event.c.seq)
Index("ix_audit_recorded", audit_event.c.recorded)
Index("ix_audit_agent", audit_event.c.agent_hpr, audit_event.c.recorded)

audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
)

GENESIS = "0" * 64
