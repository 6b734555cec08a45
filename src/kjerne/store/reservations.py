"""A reservasjon that starts in the future deletes the patient's data when it comes into force.

A reservasjon in force at once purges when it is set (rules.after_consent). One that names a later
`provision.period.start` hides the data from its start (the access policy reads the period), but the
rows would stay: this sweep deletes them. `kjerne restrictions apply` runs it, and the server runs it
every few minutes. Running it twice deletes nothing more; each deletion is audited as the platform's.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import orjson
from sqlalchemy import Engine, and_, select

from kjerne.access import restrictions as r
from kjerne.access.context import AccessRecord
from kjerne.audit.events import Actor
from kjerne.audit.log import append
from kjerne.store.rules import purge_service_data
from kjerne.store.schema import idx_token, resource

PLATFORM = Actor(kind="platform", name="Kjerne", channel="cli")


@dataclass(frozen=True, slots=True)
class Purged:
    patient: str
    consent_id: str
    resources: int


def _reservations() -> object:
    t = idx_token.c
    ids = select(t.rid).where(
        and_(t.res_type == "Consent", t.param == "category", t.system == r.RESTRICTION_SYSTEM, t.code == r.RESERVASJON)
    )
    return select(resource.c.patient, resource.c.content).where(
        and_(resource.c.rid.in_(ids), resource.c.deleted.is_(False))
    )


def purge_due(engine: Engine, now: dt.datetime | None = None) -> list[Purged]:
    """Carry out every reservasjon with a start date that is now in force."""
    now = now or dt.datetime.now(dt.UTC)
    done: list[Purged] = []
    with engine.begin() as conn:
        for patient, content in conn.execute(_reservations()).all():  # type: ignore[call-overload]
            consent = orjson.loads(bytes(content))
            if not ((consent.get("provision") or {}).get("period") or {}).get("start") or patient is None:
                continue  # purged when it was set
            restriction = r.patient_restriction(consent, patient, now)
            if restriction is None:
                continue
            n = purge_service_data(conn, patient, restriction.services)
            if n:
                detail = f"reservasjon Consent/{restriction.consent_id} in force: {n} resources deleted"
                append(conn, PLATFORM, AccessRecord("delete", None, "allowed", [], [patient], detail))
                done.append(Purged(patient, restriction.consent_id, n))
    return done
