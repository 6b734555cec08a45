"""Which reads may commit their audit entry without waiting for the disk: ordinary ones may; an
emergency or any other override never does, and neither does a write."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from helpers import World, hpr_numbers, lab_result, persons
from sqlalchemy import event

P1, P2 = persons(2, start=300)
(HP,) = hpr_numbers(1, start=9155001)


@contextmanager
def statements(world: World) -> Iterator[list[str]]:
    seen: list[str] = []

    def note(conn, cursor, statement, params, context, executemany) -> None:
        seen.append(statement)
        if isinstance(params, dict) and params.get("relaxed") is True:
            seen.append("<relaxed>")  # PostgreSQL: the audit append turns synchronous_commit off

    def begin(conn) -> None:
        seen.append("<begin>")

    engine = world.api.engine
    event.listen(engine, "before_cursor_execute", note)
    event.listen(engine, "begin", begin)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", note)
        event.remove(engine, "begin", begin)


def audited_transactions(seen: list[str]) -> list[list[str]]:
    """The statements of each transaction that appended to the audit log."""
    txs: list[list[str]] = []
    opening: list[str] = []  # SQLite's pragma and BEGIN run inside the begin event, before the marker
    for s in seen:
        if s == "<begin>":
            txs.append(opening)
            opening = []
        elif s.startswith(("PRAGMA synchronous", "BEGIN")):
            opening.append(s)
        elif txs:
            txs[-1].append(s)
    return [tx for tx in txs if any("INSERT INTO audit_event" in s for s in tx)]


def relaxed(seen: list[str]) -> bool:
    return any(s == "<relaxed>" or "synchronous=NORMAL" in s for s in seen)


@pytest.mark.parametrize(
    ("purpose", "basis", "expect_relaxed"),
    [("TREAT", None, True), ("BTG", None, False), ("TREAT", "FORHOYET_AKUTT", False), ("TREAT", "AKUTT", False)],
)
def test_only_ordinary_reads_commit_their_audit_entry_asynchronously(
    world: World, purpose: str, basis: str | None, expect_relaxed: bool
) -> None:
    rep = world.lab_report(P1)
    doctor = world.practitioner(HP, [P1], purpose=purpose, basis=basis)
    with statements(world) as seen:
        r = doctor.read(rep.ref)
    assert r.status_code == 200, r.text
    (tx,) = audited_transactions(seen)
    assert relaxed(tx) is expect_relaxed
    with statements(world) as seen:
        found = doctor.search_refs("Observation", {"patient": f"Patient/{rep.patient}"})
    assert found == set(rep.result_refs)
    assert relaxed(seen) is expect_relaxed


def test_writes_and_denials_always_wait_for_the_disk(world: World) -> None:
    rep = world.lab_report(P1)
    stranger = world.practitioner(HP, [P2])
    with statements(world) as seen:
        created = world.producer().create(lab_result(f"Patient/{rep.patient}"))
        assert created.status_code == 201, created.text
        assert stranger.read(rep.ref).status_code in (403, 404)
    txs = audited_transactions(seen)
    assert len(txs) == 2  # the write, and the denied read
    assert not any(relaxed(tx) for tx in txs)


def test_a_write_transaction_appends_its_audit_entry_last(world: World) -> None:
    """The append holds the chain head until commit: nothing else of the transaction may run after it,
    or every other audited request would wait for that work too."""
    pid = world.patient(P1)
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"urn:uuid:0000000{i}-0000-4000-8000-000000000000",
                "resource": lab_result(f"Patient/{pid}", value=5.0 + i),
                "request": {"method": "POST", "url": "Observation"},
            }
            for i in range(3)
        ],
    }
    with statements(world) as seen:
        r = world.producer().post_bundle(bundle)
        assert r.status_code == 200, r.text
    (tx,) = audited_transactions(seen)
    first_audit = min(i for i, s in enumerate(tx) if "audit_" in s)
    writes = ("INSERT INTO idx_", "INSERT INTO resource", "INSERT INTO patient_code", "UPDATE resource", "DELETE FROM")
    assert not [s for s in tx[first_audit:] if s.lstrip().startswith(writes)], tx[first_audit:]
    if world.api.db == "sqlite":  # on PostgreSQL the rows go by COPY, which these events do not see
        assert any(s.startswith("INSERT INTO idx_") for s in tx[:first_audit])
