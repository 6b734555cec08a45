"""The policy leaves out the exclusions a patient's state shows cannot apply (restriction_state): these
tests hold each exclusion to its job when its trigger comes by another route than the usual one."""

from __future__ import annotations

from types import SimpleNamespace

from helpers import RESTRICTION_SYSTEM, SKJERMING, SPERRING, World, consent, hpr_numbers, lab_result, persons
from sqlalchemy.dialects import sqlite

from kjerne.access.policy import AccessPolicy, PatientView
from kjerne.store.schema import resource

P1, P2 = persons(2, start=420)
HP1, HP2 = hpr_numbers(2, start=9145001)


def _ids(caller, res_type: str = "Observation", person: str | bool = True) -> set[str]:
    return caller.search_refs(res_type, person_id=person)


def test_a_skjerming_label_delivered_without_a_consent_still_hides_the_result(world: World) -> None:
    pid = world.patient(P1)
    shielded = lab_result(f"Patient/{pid}")
    shielded["meta"] = {"security": [{"system": RESTRICTION_SYSTEM, "code": SKJERMING}]}
    hidden = world.observation(shielded)
    shown = world.observation(lab_result(f"Patient/{pid}", code="2345-7"))
    other = world.practitioner(HP2, [P1])
    assert _ids(other) == {f"Observation/{shown}"}
    assert other.read(f"Observation/{hidden}").status_code == 404


def test_a_patient_with_restrictions_beside_one_without(world: World) -> None:
    """One attestation, two patients: the sperring of one must not spill onto the other, nor be lost
    because the other needs no exclusions."""
    free = world.lab_report(P2)
    blocked = world.lab_report(P1)
    citizen = world.citizen(P1)
    assert citizen.create(consent(SPERRING, blocked.patient)).status_code == 201
    hp = world.practitioner(HP1, [P1, P2])
    assert _ids(hp, person=P2) | _ids(hp, "DiagnosticReport", P2) == free.all_refs
    assert _ids(hp, person=P1) | _ids(hp, "DiagnosticReport", P1) == set()
    assert hp.search_refs("Consent", person_id=P1) == set()
    for ref in blocked.all_refs:
        assert hp.read(ref).status_code == 404


def _sql(view: PatientView) -> str:
    policy = AccessPolicy.__new__(AccessPolicy)
    policy.principal = SimpleNamespace(kind="practitioner", hpr=HP1, can=lambda *_: True)
    policy._views, policy._loaded = {view.patient: view}, True
    cond = policy.read_filter("Observation", resource)
    return str(cond.compile(dialect=sqlite.dialect()))


def test_an_unrestricted_patient_is_read_with_a_plain_patient_filter() -> None:
    plain = _sql(PatientView("p1", consent_kinds=set(), shielded=False))
    assert "SELECT" not in plain
    unknown = _sql(PatientView("p1"))  # state not loaded: every exclusion stays
    assert unknown.count("SELECT") >= 4
    shielded = _sql(PatientView("p1", consent_kinds=set(), shielded=True))
    assert "SELECT" in shielded and shielded.count("SELECT") < unknown.count("SELECT")
