"""The append-only, hash-chained audit log.

Appends take the chain head row for update (PostgreSQL) or run inside SQLite's single writer, so the
chain is one sequence: hash(n) = sha256(hash(n-1) || content(n)). `verify` walks it and reports the
first row whose stored hash or link does not match.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, LargeBinary, bindparam, insert, select, text, update

from kjerne.access.context import AccessRecord
from kjerne.audit.events import Actor, audit_event
from kjerne.audit.schema import GENESIS, audit_head
from kjerne.audit.schema import audit_event as audit_table
from kjerne.store.clock import now_us


def link_hash(prev: str, content: bytes) -> str:
    return hashlib.sha256(prev.encode("ascii") + b"\n" + content).hexdigest()


# Built once: constructing them per append cost more than the SQLite statements themselves.
_HEAD = select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)
_HEAD_LOCKED = _HEAD.with_for_update()
_INSERT = insert(audit_table)
_MOVE_HEAD = update(audit_head).where(audit_head.c.id == 1).values(seq=bindparam("new_seq"), hash=bindparam("new_hash"))


def _head(conn: Connection) -> tuple[int, str]:
    q = _HEAD_LOCKED if conn.dialect.name == "postgresql" else _HEAD
    row = conn.execute(q).first()
    if row is None:
        conn.execute(insert(audit_head).values(id=1, seq=0, hash=GENESIS))
        if conn.dialect.name == "postgresql":
            row = conn.execute(q).first()
            assert row is not None
            return int(row.seq), str(row.hash)
        return 0, GENESIS
    return int(row.seq), str(row.hash)


# One round trip on PostgreSQL: lock the head, link and insert the entry, move the head. The hash is
# the same as link_hash's: sha256 over the previous hash, a newline and the content.
_APPEND_PG = text(
    """
    WITH head AS (SELECT hash FROM audit_head WHERE id = 1 FOR UPDATE),
    mode AS (SELECT CASE WHEN :relaxed THEN set_config('synchronous_commit', 'off', true) END),
    entry AS (
        INSERT INTO audit_event (recorded, patient, agent_kind, agent_hpr, agent_pid, agent_org, action,
                                 outcome, purpose, access_basis, override, content, prev_hash, hash)
        SELECT :recorded, :patient, :agent_kind, :agent_hpr, :agent_pid, :agent_org, :action, :outcome,
               :purpose, :access_basis, :override, :content, head.hash,
               encode(sha256(convert_to(head.hash, 'UTF8') || '\\x0a'::bytea || :content), 'hex')
        FROM head, mode
        RETURNING seq, hash
    )
    UPDATE audit_head SET seq = entry.seq, hash = entry.hash FROM entry WHERE audit_head.id = 1
    RETURNING entry.seq
    """
).bindparams(bindparam("content", type_=LargeBinary))


def append(conn: Connection, actor: Actor, rec: AccessRecord) -> list[int]:
    """Append one entry per patient touched (one without a patient when none was)."""
    recorded = now_us()
    patients: list[str | None] = list(rec.patients) or [None]
    if conn.dialect.name == "postgresql" and len(patients) == 1:
        event = audit_event(actor, rec, patients[0], recorded, rec.override)
        row = conn.execute(
            _APPEND_PG,
            {
                "relaxed": bool(conn.info.get("relaxed_commit")),
                "recorded": recorded,
                "patient": patients[0],
                "agent_kind": actor.kind,
                "agent_hpr": actor.hpr,
                "agent_pid": actor.pid,
                "agent_org": actor.org,
                "action": rec.action,
                "outcome": rec.outcome,
                "purpose": actor.purpose,
                "access_basis": actor.access_basis,
                "override": rec.override,
                "content": orjson.dumps(event, option=orjson.OPT_SORT_KEYS),
            },
        ).first()
        if row is not None:
            return [int(row[0])]
        # No head row yet: the first entry ever takes the general path, which creates it.
    _, prev = _head(conn)
    seqs: list[int] = []
    seq = 0
    for patient in patients:
        event = audit_event(actor, rec, patient, recorded, rec.override)
        content = orjson.dumps(event, option=orjson.OPT_SORT_KEYS)
        digest = link_hash(prev, content)
        seq = conn.execute(
            _INSERT,
            {
                "recorded": recorded,
                "patient": patient,
                "agent_kind": actor.kind,
                "agent_hpr": actor.hpr,
                "agent_pid": actor.pid,
                "agent_org": actor.org,
                "action": rec.action,
                "outcome": rec.outcome,
                "purpose": actor.purpose,
                "access_basis": actor.access_basis,
                "override": rec.override,
                "content": content,
                "prev_hash": prev,
                "hash": digest,
            },
        ).inserted_primary_key[0]
        seqs.append(seq)
        prev = digest
    conn.execute(_MOVE_HEAD, {"new_seq": seq, "new_hash": prev})
    return seqs


@dataclass(slots=True)
class Verification:
    checked: int
    broken_at: int | None  # seq of the first broken link
    reason: str | None

    @property
    def ok(self) -> bool:
        return self.broken_at is None


def verify(engine: Engine, batch: int = 5000) -> Verification:
    prev = GENESIS
    checked = 0
    last_seq = 0
    with engine.connect() as conn:
        while True:
            rows = conn.execute(
                select(audit_table.c.seq, audit_table.c.content, audit_table.c.prev_hash, audit_table.c.hash)
                .where(audit_table.c.seq > last_seq)
                .order_by(audit_table.c.seq)
                .limit(batch)
            ).all()
            if not rows:
                break
            for row in rows:
                if row.prev_hash != prev:
                    return Verification(checked, row.seq, "the link to the previous entry does not match")
                if link_hash(prev, bytes(row.content)) != row.hash:
                    return Verification(checked, row.seq, "the entry's content does not match its hash")
                prev = row.hash
                checked += 1
                last_seq = row.seq
        head = conn.execute(select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)).first()
        if head is not None and (head.hash != prev or head.seq != last_seq):
            return Verification(checked, last_seq + 1, "entries after the last one were removed")
    return Verification(checked, None, None)


def citizen_view(event: dict[str, Any]) -> dict[str, Any]:
    """What a citizen may see of an entry: never the health worker's national id (it is not stored in
    the event), never free-text search parameters that might name other people."""
    out = dict(event)
    out["entity"] = [e for e in event.get("entity", []) if e.get("type", {}).get("code") != "2"]
    if not out["entity"]:
        out.pop("entity")
    return out
