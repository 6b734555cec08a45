"""A reservasjon with a later start: nothing is deleted before it, everything in its services is deleted
once it is in force, by the sweep, and the deletion is in the audit log."""

from __future__ import annotations

import datetime as dt

from helpers import PROVESVAR, RESERVASJON, World, consent, persons
from sqlalchemy import text

from kjerne.cli import main as cli
from kjerne.store.reservations import purge_due

P1, P2 = persons(2, start=440)


def _rows(world: World, res_id: str) -> int:
    with world.api.engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM resource WHERE res_id = :i"), {"i": res_id}).scalar())


def test_the_sweep_deletes_the_data_when_the_reservasjon_starts(world: World) -> None:
    rep = world.lab_report(P1)
    m = world.measurement(P1)
    kept = world.lab_report(P2)
    start = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
    body = consent(RESERVASJON, rep.patient, services=[PROVESVAR])
    body["provision"]["period"] = {"start": start.isoformat()}
    assert world.citizen(P1).create(body).status_code == 201

    assert _rows(world, rep.id) == 1, "deleted before the reservasjon started"
    assert purge_due(world.api.engine) == [], "nothing is due yet"
    assert _rows(world, rep.id) == 1

    done = purge_due(world.api.engine, now=start + dt.timedelta(minutes=1))
    assert [(d.patient, d.resources) for d in done] == [(rep.patient, 1 + len(rep.results))]
    for res_id in (rep.id, *rep.results):
        assert _rows(world, res_id) == 0
    assert _rows(world, m) == 1, "måledata is outside this reservasjon"
    assert _rows(world, kept.id) == 1, "another patient's data was deleted"
    assert purge_due(world.api.engine, now=start + dt.timedelta(minutes=2)) == [], "a second sweep deletes nothing"

    last = world.audit_rows()[-1]
    assert (last.agent_kind, last.action, last.outcome, last.patient) == ("platform", "delete", "allowed", rep.patient)


def test_the_command_runs_the_sweep(world: World, capsys) -> None:
    assert cli(["restrictions", "apply", "--db", world.api.engine.url.render_as_string(hide_password=False)]) == 0
    assert "0 reservasjon(er) carried out" in capsys.readouterr().out
