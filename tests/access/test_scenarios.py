"""The restrictions and override rules, one scenario each, through the HTTP API on SQLite and PostgreSQL.

Each test seeds data the way a producer delivers it (system token), sets restrictions the way a
citizen or health worker does (Consent through the API) and then looks at the data as the citizen,
as health personnel and as the producer would. The audit log is checked from the database and from
the citizen's own access log (`GET /fhir/AuditEvent`).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from helpers import (
    ACCESS_BASIS_SYSTEM,
    BLOKKERING,
    MALEDATA,
    NEKTING,
    PROVESVAR,
    PURPOSE_SYSTEM,
    RESERVASJON,
    RESTRICTION_SYSTEM,
    SKJERMING,
    SPERRING,
    UTSATT,
    Api,
    Caller,
    World,
    consent,
    entries,
    event_codes,
    event_patients,
    hpr_numbers,
    instant,
    lab_result,
    measurement,
    next_link,
    organisations,
    override_flag,
    persons,
    pvk_codes,
    refs,
    report,
    security_codes,
)
from sqlalchemy import exc, text

from kjerne.audit.log import verify

P1, P2, P3 = persons(3)
HP1, HP2, HP3 = hpr_numbers(3)
OTHER_LAB = organisations(1)[0]
DATA_TYPES = ("DiagnosticReport", "Observation")
FORM = {"content-type": "application/x-www-form-urlencoded"}


def visible(caller: Caller, person_id: str | None = None) -> set[str]:
    """Every report and observation the caller finds for the patient (person-id header)."""
    out: set[str] = set()
    for res_type in DATA_TYPES:
        out |= caller.search_refs(res_type, person_id=person_id or True)
    return out


def stored_rows(api: Api, res_id: str) -> int:
    """Rows for a resource id in the current table and the history table together."""
    with api.engine.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT (SELECT count(*) FROM resource WHERE res_id = :i)"
                    " + (SELECT count(*) FROM resource_history WHERE res_id = :i)"
                ),
                {"i": res_id},
            ).scalar_one()
        )


def created(r: Any) -> dict[str, Any]:
    assert r.status_code == 201, (r.status_code, r.text)
    return dict(r.json())


def citizen_log(world: World, fnr: str) -> list[dict[str, Any]]:
    """The citizen's whole access log, following next links."""
    caller = world.citizen(fnr)
    r = caller.audit_log({"_count": "100"})
    assert r.status_code == 200, r.text
    bundle = r.json()
    events = entries(bundle)
    while (url := next_link(bundle)) is not None:
        r = caller.get(url)
        assert r.status_code == 200, r.text
        bundle = r.json()
        events += entries(bundle)
    return events


# -- reservasjon ----------------------------------------------------------------------------------------------


def test_reservasjon_deletes_the_service_data_with_history_and_refuses_new_data(world: World) -> None:
    rep = world.lab_report(P1)
    other_patient = world.lab_report(P2)
    m = world.measurement(P1)
    lab = world.producer()
    amended = report(f"Patient/{rep.patient}", rep.result_refs)
    amended.update(id=rep.id, status="amended")
    assert lab.put(amended).status_code == 200  # a second version, so there is history to delete
    assert stored_rows(world.api, rep.id) == 2

    citizen = world.citizen(P1)
    created(citizen.create(consent(RESERVASJON, rep.patient, services=[PROVESVAR])))

    for res_id in (rep.id, *rep.results):
        assert stored_rows(world.api, res_id) == 0, f"{res_id} (prøvesvar) survived the reservasjon"
    assert stored_rows(world.api, m) == 1, "a reservasjon against prøvesvar must not touch måledata"
    assert stored_rows(world.api, other_patient.id) == 1, "another patient's data was deleted"

    refused = lab.create(lab_result(f"Patient/{rep.patient}"))
    assert 400 <= refused.status_code < 500, refused.text
    assert "Reservation" in pvk_codes(refused.json())
    bare_report = report(f"Patient/{rep.patient}", [])
    del bare_report["result"]
    refused = lab.create(bare_report)
    assert 400 <= refused.status_code < 500, refused.text
    assert "Reservation" in pvk_codes(refused.json())
    later = created(lab.create(measurement(f"Patient/{rep.patient}", fnr=P1)))["id"]

    hp = world.practitioner(HP1, [P1])
    bundle = hp.search("DiagnosticReport")
    assert refs(entries(bundle)) == set()
    assert "Reservation" in pvk_codes(bundle)
    assert visible(hp) == {f"Observation/{m}", f"Observation/{later}"}
    assert visible(world.citizen(P1)) == {f"Observation/{m}", f"Observation/{later}"}
    assert visible(world.practitioner(HP1, [P2])) == other_patient.all_refs


def test_reservasjon_for_every_service_deletes_everything_but_the_patient(world: World) -> None:
    rep = world.lab_report(P1)
    m = world.measurement(P1)
    created(world.citizen(P1).create(consent(RESERVASJON, rep.patient)))
    for res_id in (rep.id, *rep.results, m):
        assert stored_rows(world.api, res_id) == 0
    assert world.citizen(P1).search_refs("Patient") == {f"Patient/{rep.patient}"}
    assert world.producer().create(measurement(f"Patient/{rep.patient}", fnr=P1)).status_code in range(400, 500)


def test_reservasjon_also_deletes_the_history_of_data_the_producer_deleted(world: World) -> None:
    """A result the producer deleted still has its earlier versions in the history: they are the
    patient's data too and must go with the reservasjon."""
    rep = world.lab_report(P1)
    lab = world.producer()
    assert lab.delete(rep.ref).status_code in (200, 204)
    assert stored_rows(world.api, rep.id) == 2  # the tombstone and the version before it
    created(world.citizen(P1).create(consent(RESERVASJON, rep.patient, services=[PROVESVAR])))
    assert stored_rows(world.api, rep.id) == 0, "the deleted report's earlier version survived the reservasjon"
    hp = world.practitioner(HP1, [P1])
    r = hp.get(f"/fhir/{rep.ref}/_history/1")
    assert r.status_code == 404, (r.status_code, r.text[:300])


@pytest.mark.parametrize("how", ["inactive", "delete"])
def test_withdrawing_reservasjon_applies_from_then_on(world: World, how: str) -> None:
    rep = world.lab_report(P1)
    citizen = world.citizen(P1)
    c = created(citizen.create(consent(RESERVASJON, rep.patient, services=[PROVESVAR])))
    lab = world.producer()
    assert lab.create(lab_result(f"Patient/{rep.patient}")).status_code in range(400, 500)

    if how == "inactive":
        c["status"] = "inactive"
        r = citizen.put(c)
        assert r.status_code == 200, r.text
    else:
        r = citizen.delete(f"Consent/{c['id']}")
        assert r.status_code in (200, 204), r.text

    assert stored_rows(world.api, rep.id) == 0, "withdrawing must not bring deleted data back"
    new = world.lab_report(P1)
    hp = world.practitioner(HP1, [P1])
    assert visible(hp) == new.all_refs
    assert pvk_codes(hp.search("DiagnosticReport")) == set()
    assert visible(citizen) == new.all_refs


# -- sperring ----------------------------------------------------------------------------------------------


def test_sperring_for_all_health_personnel(world: World) -> None:
    rep = world.lab_report(P1)
    m = world.measurement(P1)
    created(world.citizen(P1).create(consent(SPERRING, rep.patient)))
    for hpr in (HP1, HP2):
        hp = world.practitioner(hpr, [P1])
        assert visible(hp) == set()
        bundle = hp.search("Observation")
        assert "General" in pvk_codes(bundle), bundle
        assert hp.search_refs("Patient") == {f"Patient/{rep.patient}"}
        assert hp.read(rep.ref).status_code == 404
    assert visible(world.citizen(P1)) == rep.all_refs | {f"Observation/{m}"}


def test_sperring_for_named_health_personnel(world: World) -> None:
    rep = world.lab_report(P1)
    created(world.citizen(P1).create(consent(SPERRING, rep.patient, hprs=[HP1])))
    named = world.practitioner(HP1, [P1])
    assert visible(named) == set()
    assert "Specific" in pvk_codes(named.search("DiagnosticReport"))
    other = world.practitioner(HP2, [P1])
    assert visible(other) == rep.all_refs
    assert pvk_codes(other.search("DiagnosticReport")) == set()


def test_sperring_per_service(world: World) -> None:
    rep = world.lab_report(P1)
    m = world.measurement(P1)
    created(world.citizen(P1).create(consent(SPERRING, rep.patient, services=[MALEDATA])))
    hp = world.practitioner(HP1, [P1])
    assert visible(hp) == rep.all_refs, "only måledata is sperret"
    assert hp.read(f"Observation/{m}").status_code == 404
    created(world.citizen(P1).create(consent(SPERRING, rep.patient, services=[PROVESVAR], hprs=[HP1])))
    assert visible(hp) == set()
    assert visible(world.practitioner(HP2, [P1])) == rep.all_refs


OVERRIDES = [
    pytest.param({"basis": "FORHOYET_SAMTYKKE"}, id="FORHOYET_SAMTYKKE"),
    pytest.param({"basis": "FORHOYET_AKUTT"}, id="FORHOYET_AKUTT"),
    pytest.param({"purpose": "ETREAT"}, id="purpose-ETREAT"),
    pytest.param({"purpose": "BTG"}, id="purpose-BTG"),
]
NOT_OVERRIDES = [
    pytest.param({"basis": "UNNTAK"}, id="UNNTAK"),
    pytest.param({"basis": "SAMTYKKE"}, id="SAMTYKKE"),
    pytest.param({"basis": "AKUTT"}, id="AKUTT"),
    pytest.param({"purpose": "COC"}, id="purpose-COC"),
    pytest.param({}, id="TREAT"),
]


@pytest.mark.parametrize("how", OVERRIDES)
def test_sperring_is_overridden_and_the_override_is_logged_for_the_citizen(world: World, how: dict[str, str]) -> None:
    rep = world.lab_report(P1)
    created(world.citizen(P1).create(consent(SPERRING, rep.patient, hprs=[HP1])))
    hp = world.practitioner(HP1, [P1], purpose=how.get("purpose", "TREAT"), basis=how.get("basis"))
    seq = world.last_seq()
    assert visible(hp) == rep.all_refs

    rows = [row for row in world.audit_rows(seq) if row.agent_hpr == HP1]
    assert rows and all(row.override for row in rows), rows
    assert all(override_flag(row.event) is True for row in rows)

    mine = [
        e
        for e in citizen_log(world, P1)
        if any((a.get("who") or {}).get("identifier", {}).get("value") == HP1 for a in e.get("agent", []))
        and e["subtype"][0]["code"] == "search-type"
    ]
    assert mine, "the citizen's access log does not show the health worker's access"
    assert all(override_flag(e) is True for e in mine), mine
    code = how.get("basis") or how.get("purpose")
    system = ACCESS_BASIS_SYSTEM if "basis" in how else PURPOSE_SYSTEM
    assert all(code in event_codes(e, system) for e in mine)


@pytest.mark.parametrize("how", NOT_OVERRIDES)
def test_sperring_is_not_overridden_by_ordinary_bases(world: World, how: dict[str, str]) -> None:
    rep = world.lab_report(P1)
    created(world.citizen(P1).create(consent(SPERRING, rep.patient)))
    hp = world.practitioner(HP1, [P1], purpose=how.get("purpose", "TREAT"), basis=how.get("basis"))
    seq = world.last_seq()
    assert visible(hp) == set()
    assert not any(row.override for row in world.audit_rows(seq))


# -- blokkering ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", [pytest.param({}, id="TREAT"), *OVERRIDES])
def test_blokkering_hides_everything_from_the_named_health_worker_even_in_emergencies(
    world: World, how: dict[str, str]
) -> None:
    rep = world.lab_report(P1)
    m = world.measurement(P1)
    created(world.citizen(P1).create(consent(BLOKKERING, rep.patient, hprs=[HP1])))
    blocked = world.practitioner(HP1, [P1], purpose=how.get("purpose", "TREAT"), basis=how.get("basis"))
    assert visible(blocked) == set()
    assert blocked.search_refs("Consent") == set()
    bundle = blocked.search("DiagnosticReport")
    assert pvk_codes(bundle) == {"Specific"}, bundle
    r = blocked.read(rep.ref)
    assert r.status_code == 404
    assert "Specific" in pvk_codes(r.json())
    assert blocked.get(f"/fhir/{rep.ref}/_history/1").status_code == 404
    history = blocked.get(f"/fhir/{rep.ref}/_history")
    assert history.status_code in (200, 404)
    assert history.status_code == 404 or entries(history.json()) == []

    other = world.practitioner(HP2, [P1], purpose=how.get("purpose", "TREAT"), basis=how.get("basis"))
    assert visible(other) == rep.all_refs | {f"Observation/{m}"}
    assert pvk_codes(other.search("DiagnosticReport")) == set()


def test_a_blocked_health_workers_attempt_is_in_the_citizens_access_log(world: World) -> None:
    """The search found nothing, but it was about this patient: the citizen must be able to see that
    the health worker they blocked tried to look."""
    rep = world.lab_report(P1)
    created(world.citizen(P1).create(consent(BLOKKERING, rep.patient, hprs=[HP1])))
    blocked = world.practitioner(HP1, [P1])
    blocked.search("DiagnosticReport")
    tried = [
        e
        for e in citizen_log(world, P1)
        if any((a.get("who") or {}).get("identifier", {}).get("value") == HP1 for a in e.get("agent", []))
    ]
    assert tried, "the blocked health worker's search is not in the citizen's access log"


# -- nekting ---------------------------------------------------------------------------------------------------


def test_nekting_hides_the_report_and_its_results_from_the_citizen_only(world: World) -> None:
    rep = world.lab_report(P1)
    keep = world.lab_report(P1)
    hp = world.practitioner(HP1, [P1])
    c = created(hp.create(consent(NEKTING, rep.patient, data=[rep.ref])))

    lab = world.producer()
    for ref in rep.all_refs:
        assert NEKTING in security_codes(hp.read(ref).json()), ref
        assert lab.read(ref).status_code in (403, 404)

    citizen = world.citizen(P1)
    assert visible(citizen) == keep.all_refs
    for ref in rep.all_refs:
        assert citizen.read(ref).status_code == 404, ref
        assert citizen.get(f"/fhir/{ref}/_history/1").status_code == 404, ref
        h = citizen.get(f"/fhir/{ref}/_history")
        assert h.status_code == 404 or entries(h.json()) == [], ref
    seen = citizen.search_refs("DiagnosticReport", {"_include": "DiagnosticReport:result"})
    assert seen == keep.all_refs
    seen = citizen.search_refs("Observation", {"_revinclude": "DiagnosticReport:result"})
    assert seen == keep.all_refs
    assert int(citizen.search("Observation", {"_summary": "count"})["total"]) == len(keep.results)
    assert citizen.search_refs("Consent") == set(), "the citizen must not learn of the nekting"

    assert visible(hp) == rep.all_refs | keep.all_refs
    assert visible(world.practitioner(HP2, [P1])) == rep.all_refs | keep.all_refs

    c["status"] = "inactive"
    assert hp.put(c).status_code == 200
    assert visible(citizen) == rep.all_refs | keep.all_refs


def test_nekting_survives_the_producer_deleting_the_report(world: World) -> None:
    """A producer deleting (e.g. cancelling) a report must not open its earlier versions to the
    citizen the nekting was set against."""
    rep = world.lab_report(P1)
    hp = world.practitioner(HP1, [P1])
    created(hp.create(consent(NEKTING, rep.patient, data=[rep.ref])))
    assert world.producer().delete(rep.ref).status_code in (200, 204)
    citizen = world.citizen(P1)
    for version in (1, 2):
        r = citizen.get(f"/fhir/{rep.ref}/_history/{version}")
        assert r.status_code == 404, (version, r.status_code, r.text[:300])
    h = citizen.get(f"/fhir/{rep.ref}/_history")
    assert h.status_code == 404 or h.json().get("entry", []) == [], h.text[:500]
    t = citizen.get("/fhir/DiagnosticReport/_history")
    assert rep.id not in t.text, "the type history shows the report the citizen was denied"


def test_nekting_by_two_health_workers_stays_until_both_withdraw(world: World) -> None:
    rep = world.lab_report(P1)
    hp1, hp2 = world.practitioner(HP1, [P1]), world.practitioner(HP2, [P1])
    c1 = created(hp1.create(consent(NEKTING, rep.patient, data=[rep.ref])))
    created(hp2.create(consent(NEKTING, rep.patient, data=[rep.ref])))
    c1["status"] = "inactive"
    assert hp1.put(c1).status_code == 200
    assert visible(world.citizen(P1)) == set(), "the second health worker's nekting is still active"


# -- utsatt innsyn ---------------------------------------------------------------------------------------------


def test_utsatt_innsyn_until_the_requester_releases(world: World) -> None:
    rep = world.lab_report(P1)
    hp = world.practitioner(HP1, [P1])
    c = created(hp.create(consent(UTSATT, rep.patient, data=[rep.ref], end=instant(dt.timedelta(days=3)))))
    citizen = world.citizen(P1)
    assert visible(citizen) == set()
    assert citizen.read(rep.ref).status_code == 404
    assert citizen.search_refs("Consent") == set()
    assert visible(hp) == rep.all_refs, "health personnel see the result at once"

    c["provision"]["period"] = {"end": instant(-dt.timedelta(minutes=1))}
    assert hp.put(c).status_code == 200
    assert visible(citizen) == rep.all_refs


def test_withdrawing_utsatt_innsyn_releases_the_report(world: World) -> None:
    rep = world.lab_report(P1)
    hp = world.practitioner(HP1, [P1])
    c = created(hp.create(consent(UTSATT, rep.patient, data=[rep.ref], end=instant(dt.timedelta(days=3)))))
    assert visible(world.citizen(P1)) == set()
    assert hp.delete(f"Consent/{c['id']}").status_code in (200, 204)
    assert visible(world.citizen(P1)) == rep.all_refs


def test_default_utsatt_innsyn_for_pathology(world: World) -> None:
    fresh = world.lab_report(P1, category="PAT", issued=instant())
    old = world.lab_report(P1, category="PAT", issued=instant(-dt.timedelta(days=30)))
    lab = world.lab_report(P1, category="LAB", issued=instant())
    citizen = world.citizen(P1)
    assert visible(citizen) == old.all_refs | lab.all_refs, "a new pathology report waits 14 days"
    hp = world.practitioner(HP1, [P1])
    assert visible(hp) == fresh.all_refs | old.all_refs | lab.all_refs

    # The requester releases it early.
    created(hp.create(consent(UTSATT, fresh.patient, data=[fresh.ref], end=instant(-dt.timedelta(minutes=1)))))
    assert visible(citizen) == fresh.all_refs | old.all_refs | lab.all_refs


@pytest.mark.parametrize("kind", [SKJERMING, NEKTING])
def test_another_restriction_keeps_the_default_delay(world: World, kind: str) -> None:
    """A fresh pathology report waits 14 days for the citizen. A skjerming or nekting on it (and its
    withdrawal) is about something else and must not release it early."""
    fresh = world.lab_report(P1, category="PAT", issued=instant())
    hp = world.practitioner(HP1, [P1])
    c = created(hp.create(consent(kind, fresh.patient, data=[fresh.ref])))
    citizen = world.citizen(P1)
    assert visible(citizen) == set()
    c["status"] = "inactive"
    assert hp.put(c).status_code == 200
    assert visible(citizen) == set(), "withdrawing the restriction released the pathology report early"
    assert all(UTSATT in security_codes(hp.read(ref).json()) for ref in fresh.all_refs)


# -- skjerming -------------------------------------------------------------------------------------------------


def test_skjerming_hides_the_report_from_other_health_personnel(world: World) -> None:
    rep = world.lab_report(P1)
    keep = world.lab_report(P1)
    setter = world.practitioner(HP1, [P1])
    c = created(setter.create(consent(SKJERMING, rep.patient, data=[rep.ref])))

    other = world.practitioner(HP2, [P1])
    assert visible(other) == keep.all_refs
    for ref in rep.all_refs:
        assert other.read(ref).status_code == 404
    emergency = world.practitioner(HP3, [P1], purpose="BTG", basis="FORHOYET_AKUTT")
    assert visible(emergency) == keep.all_refs

    assert visible(setter) == rep.all_refs | keep.all_refs
    citizen = world.citizen(P1)
    assert visible(citizen) == rep.all_refs | keep.all_refs
    assert f"Consent/{c['id']}" in citizen.search_refs("Consent"), "the citizen can see the skjerming"

    c["status"] = "inactive"
    assert setter.put(c).status_code == 200
    assert visible(other) == rep.all_refs | keep.all_refs


def test_the_skjerming_itself_is_hidden_from_other_health_personnel(world: World) -> None:
    """The Consent names the shielded report; another health worker who can read it learns that the
    report exists and, by chained search, what it is."""
    rep = world.lab_report(P1)
    setter = world.practitioner(HP1, [P1])
    c = created(setter.create(consent(SKJERMING, rep.patient, data=[rep.ref])))
    other = world.practitioner(HP2, [P1])
    assert f"Consent/{c['id']}" not in other.search_refs("Consent")
    probe = other.search_refs("Consent", {"data:DiagnosticReport.code": "58410-2"})
    assert probe == set(), "a chained search reveals the code of the shielded report"


def test_skjerming_by_two_health_workers_stays_until_both_withdraw(world: World) -> None:
    rep = world.lab_report(P1)
    hp1, hp2 = world.practitioner(HP1, [P1]), world.practitioner(HP2, [P1])
    c1 = created(hp1.create(consent(SKJERMING, rep.patient, data=[rep.ref])))
    created(hp2.create(consent(SKJERMING, rep.patient, data=[rep.ref])))
    c1["status"] = "inactive"
    assert hp1.put(c1).status_code == 200
    assert visible(world.practitioner(HP3, [P1])) == set(), "the second skjerming is still active"
    assert visible(hp2) == rep.all_refs


# -- paging ---------------------------------------------------------------------------------------------------


def test_paging_with_the_person_id_header_on_every_request(world: World) -> None:
    """PPS clients send person-id on every call; following a next link with it must still page."""
    rep = world.lab_report(P1, 3)
    citizen = world.citizen(P1)
    bundle = citizen.search("Observation", {"_count": "1"})
    seen = refs(entries(bundle, "match"))
    while (url := next_link(bundle)) is not None:
        r = citizen.get(url, person_id=P1)
        assert r.status_code == 200, (r.status_code, r.text[:300])
        bundle = r.json()
        seen |= refs(entries(bundle, "match"))
    assert seen == set(rep.result_refs)


def test_a_next_link_does_not_reveal_another_callers_total(world: World) -> None:
    """A page link handed from one health worker to another (shared screen, log, proxy) must be
    answered with the second one's access: neither the rows nor the total of what is hidden from them."""
    rep = world.lab_report(P1, 3)
    created(world.citizen(P1).create(consent(SPERRING, rep.patient, hprs=[HP2])))
    first = world.practitioner(HP1, [P1])
    url = next_link(first.search("Observation", {"_count": "1"}))
    assert url is not None
    sperret = world.practitioner(HP2, [P1])
    for person_id in (P1, None):
        r = sperret.get(url, person_id=person_id)
        assert r.status_code in (200, 400, 403, 404, 410), r.text
        if r.status_code == 200:
            body = r.json()
            assert refs(entries(body, "match")) == set()
            assert body.get("total") in (None, 0), f"the total {body.get('total')} counts data hidden from this caller"


# -- attestation and audit -------------------------------------------------------------------------------------


def test_a_patient_outside_the_attestation_is_refused(world: World) -> None:
    rep = world.lab_report(P2)
    hp = world.practitioner(HP1, [P1])
    world.patient(P1)
    r = hp.get("/fhir/DiagnosticReport", person_id=P2)
    assert r.status_code == 403, r.text
    r = hp.client.post("/fhir/DiagnosticReport/_search", data={}, headers=hp.headers(P2, **FORM))
    assert r.status_code == 403, r.text
    r = hp.get("/fhir/DiagnosticReport", {"patient": f"Patient/{rep.patient}"}, person_id=None)
    assert r.status_code == 403, r.text
    assert hp.read(rep.ref).status_code == 404
    assert hp.search_refs("DiagnosticReport", person_id=None) == set()


@pytest.mark.parametrize("via", ["person-id", "patient-param", "post-search"])
def test_a_refusal_outside_the_attestation_is_audited(world: World, via: str) -> None:
    rep = world.lab_report(P2)
    hp = world.practitioner(HP1, [P1])
    world.patient(P1)
    seq = world.last_seq()
    if via == "person-id":
        r = hp.get("/fhir/DiagnosticReport", person_id=P2)
    elif via == "patient-param":
        r = hp.get("/fhir/DiagnosticReport", {"patient": f"Patient/{rep.patient}"})
    else:
        r = hp.client.post("/fhir/DiagnosticReport/_search", data={}, headers=hp.headers(P2, **FORM))
    assert r.status_code == 403
    rows = world.audit_rows(seq)
    assert [row.outcome for row in rows] == ["denied"], rows


def test_the_attestation_purpose_and_the_access_basis_are_recorded(world: World) -> None:
    rep = world.lab_report(P1)
    hp = world.practitioner(HP1, [P1], purpose="COC", basis="SAMTYKKE", name="Dr. Kari Lege")
    seq = world.last_seq()
    assert visible(hp) == rep.all_refs
    rows = world.audit_rows(seq)
    assert rows
    with world.api.engine.connect() as conn:
        stored = conn.execute(
            text("SELECT purpose, access_basis, agent_hpr FROM audit_event WHERE seq > :s"), {"s": seq}
        ).all()
    assert {tuple(s) for s in stored} == {("COC", "SAMTYKKE", HP1)}
    for row in rows:
        event = row.event
        assert event_codes(event, PURPOSE_SYSTEM) == {"COC"}
        assert event_codes(event, ACCESS_BASIS_SYSTEM) == {"SAMTYKKE"}
        assert event_patients(event) == {rep.patient}
    log = citizen_log(world, P1)
    shown = [e for e in log if "COC" in event_codes(e, PURPOSE_SYSTEM)]
    assert shown
    names = {a["who"].get("display") for e in shown for a in e["agent"]}
    assert "Dr. Kari Lege" in names, "the citizen sees who looked"


def test_the_citizens_access_log_never_shows_a_health_workers_national_id(world: World) -> None:
    rep = world.lab_report(P1)
    created(world.citizen(P1).create(consent(SPERRING, rep.patient, hprs=[HP2])))
    callers = [
        world.practitioner(HP1, [P1]),
        world.practitioner(HP2, [P1], basis="FORHOYET_SAMTYKKE"),
        world.practitioner(HP3, [P1, P2], purpose="BTG"),
    ]
    for hp in callers:
        visible(hp)
        hp.read(rep.ref)
        hp.get(f"/fhir/{rep.ref}/_history")
        hp.search("Observation", {"subject:Patient.identifier": P1}, person_id=None)
        created(hp.create(consent(NEKTING, rep.patient, data=[rep.ref])))
    citizen = world.citizen(P1)
    raw = citizen.audit_log({"_count": "1000"}).text
    assert HP1 in raw and HP3 in raw, "the log shows which health workers looked"
    for hp in callers:
        assert hp.pid and hp.pid not in raw, "a health worker's fødselsnummer is in the citizen's access log"
    # The database keeps it for security monitoring, never in the event a citizen is shown.
    for row in world.audit_rows():
        if row.agent_kind == "practitioner":
            assert all(hp.pid not in row.raw.decode() for hp in callers if hp.pid)


def test_citizens_read_only_their_own_access_log_and_health_personnel_none(world: World) -> None:
    world.lab_report(P1)
    world.lab_report(P2)
    p2 = world.patients[P2]
    citizen = world.citizen(P1)
    assert citizen.audit_log({"patient": f"Patient/{p2}"}).status_code == 403
    own = citizen.audit_log()
    assert own.status_code == 200
    assert all(event_patients(e) <= {world.patients[P1]} for e in entries(own.json()))
    assert world.practitioner(HP1, [P1]).audit_log().status_code == 403


def test_the_outcome_is_about_the_patient_asked_for(world: World) -> None:
    """Another attested patient's restrictions must not colour the answer about this one."""
    world.lab_report(P1)
    other = world.lab_report(P2)
    created(world.citizen(P2).create(consent(RESERVASJON, other.patient, services=[MALEDATA])))
    created(world.citizen(P2).create(consent(SPERRING, other.patient)))
    hp = world.practitioner(HP1, [P1, P2])
    assert pvk_codes(hp.search("DiagnosticReport", person_id=P1)) == set()
    assert pvk_codes(hp.search("DiagnosticReport", person_id=P2)) >= {"General"}


def test_the_override_flag_is_only_on_the_patient_whose_sperring_was_overridden(world: World) -> None:
    sperret = world.lab_report(P1)
    world.lab_report(P2)
    created(world.citizen(P1).create(consent(SPERRING, sperret.patient)))
    hp = world.practitioner(HP1, [P1, P2], purpose="BTG")
    seq = world.last_seq()
    visible(hp, P2)
    rows = world.audit_rows(seq)
    assert rows and all(row.patient == world.patients[P2] for row in rows)
    assert not any(row.override for row in rows), "P2's access log says a restriction was overridden"
    seq = world.last_seq()
    visible(hp, P1)
    assert all(row.override for row in world.audit_rows(seq))


def test_withdrawing_a_restriction_after_the_report_was_deleted_releases_its_results(world: World) -> None:
    """The producer deleted the report (its results stay); the nekting on it is then withdrawn. The
    results are no longer under any restriction and the citizen must see them."""
    rep = world.lab_report(P1)
    hp = world.practitioner(HP1, [P1])
    c = created(hp.create(consent(NEKTING, rep.patient, data=[rep.ref])))
    assert world.producer().delete(rep.ref).status_code in (200, 204)
    c["status"] = "inactive"
    assert hp.put(c).status_code == 200
    assert visible(world.citizen(P1)) == set(rep.result_refs)


def test_withdrawing_a_restriction_on_a_deleted_report_keeps_the_default_delay(world: World) -> None:
    """A fresh pathology report still waits its 14 days after the producer deleted the report and the
    nekting on it was withdrawn: the results are not released early."""
    rep = world.lab_report(P1, category="PAT", issued=instant())
    hp = world.practitioner(HP1, [P1])
    c = created(hp.create(consent(NEKTING, rep.patient, data=[rep.ref])))
    assert world.producer().delete(rep.ref).status_code in (200, 204)
    c["status"] = "inactive"
    assert hp.put(c).status_code == 200
    citizen = world.citizen(P1)
    assert visible(citizen) == set()
    for ref in rep.result_refs:
        assert citizen.read(ref).status_code == 404, ref


def test_withdrawing_skjerming_after_the_report_was_deleted_lifts_it_from_the_history(world: World) -> None:
    rep = world.lab_report(P1)
    setter = world.practitioner(HP1, [P1])
    c = created(setter.create(consent(SKJERMING, rep.patient, data=[rep.ref])))
    assert world.producer().delete(rep.ref).status_code in (200, 204)
    c["status"] = "inactive"
    assert setter.put(c).status_code == 200
    other = world.practitioner(HP2, [P1])
    assert other.get(f"/fhir/{rep.ref}/_history/1").status_code == 200, "no skjerming is in force any more"
    assert visible(other) == set(rep.result_refs)


# -- producers -------------------------------------------------------------------------------------------------


def test_producers_cannot_read(world: World) -> None:
    rep = world.lab_report(P1)
    lab = world.producer(scope="system/*.write system/*.read")
    r = lab.get("/fhir/DiagnosticReport", person_id=P1)
    assert r.status_code == 403, r.text
    bundle = lab.search("Observation", person_id=None)
    assert refs(entries(bundle)) == set() and bundle.get("total", 0) == 0
    assert int(lab.search("Observation", {"_summary": "count"}, person_id=None)["total"]) == 0
    for ref in rep.all_refs:
        assert lab.read(ref).status_code in (403, 404)
        assert lab.get(f"/fhir/{ref}/_history/1").status_code in (403, 404)
    h = lab.get("/fhir/_history")
    assert h.status_code == 403 or entries(h.json()) == []


def test_producers_cannot_read_through_a_conditional_create(world: World) -> None:
    """If-None-Exist answers with the existing resource; it must not hand a producer data it may not
    read (here: another lab's result for the same patient)."""
    m = world.measurement(P1)
    other = world.producer(OTHER_LAB)
    pid = world.patients[P1]
    r = other.create(measurement(f"Patient/{pid}", value=99.0, fnr=P1), **{"if-none-exist": f"subject=Patient/{pid}"})
    assert m not in r.text, f"the conditional create returned another producer's data: {r.status_code}"


def test_a_producers_batch_of_conditional_creates_matches_only_its_own_deliveries(world: World) -> None:
    """Several identifier conditions of several types are settled by one look-up; what another lab
    delivered under the same identifiers is neither returned nor matched."""
    pid = world.patient(P1)
    ours, theirs = world.producer(), world.producer(OTHER_LAB)
    system = "urn:oid:2.16.578.1.12.4.1.1.9999"

    def batch(values: list[str]) -> dict[str, Any]:
        entries = []
        for value in values:
            obs = measurement(f"Patient/{pid}", fnr=P1)
            obs["identifier"] = [{"system": system, "value": value}]
            spec = {
                "resourceType": "Specimen",
                "identifier": [{"system": system, "value": value}],
                "subject": {"reference": f"Patient/{pid}"},
            }
            for res in (obs, spec):
                entries.append(
                    {
                        "fullUrl": f"urn:uuid:{len(entries):08d}-0000-4000-8000-000000000000",
                        "resource": res,
                        "request": {
                            "method": "POST",
                            "url": res["resourceType"],
                            "ifNoneExist": f"identifier={system}|{value}",
                        },
                    }
                )
        return {"resourceType": "Bundle", "type": "batch", "entry": entries}

    first = theirs.post_bundle(batch(["their-1", "shared-1"]))
    assert first.status_code == 200, first.text
    assert [e["response"]["status"][:3] for e in first.json()["entry"]] == ["201"] * 4
    mine = ours.post_bundle(batch(["our-1"]))
    assert [e["response"]["status"][:3] for e in mine.json()["entry"]] == ["201"] * 2
    again = ours.post_bundle(batch(["our-1", "shared-1", "their-1"]))
    assert again.status_code == 200, again.text
    statuses = [e["response"]["status"][:3] for e in again.json()["entry"]]
    # our own deliveries are found (200); the other lab's, under the same identifiers, are not
    assert statuses == ["200", "200", "201", "201", "201", "201"], statuses
    theirs_ids = {e["response"]["location"].split("/_history")[0] for e in first.json()["entry"]}
    ours_ids = {e["response"]["location"].split("/_history")[0] for e in again.json()["entry"]}
    assert not theirs_ids & ours_ids


def test_producers_cannot_write_restrictions(world: World) -> None:
    pid = world.patient(P1)
    lab = world.producer()
    seq = world.last_seq()
    for kind in (RESERVASJON, SPERRING, NEKTING, SKJERMING):
        r = lab.create(consent(kind, pid))
        assert r.status_code == 403, (kind, r.text)
    rows = world.audit_rows(seq)
    assert len(rows) == 4 and all(row.outcome == "denied" for row in rows)


def test_a_producer_cannot_change_another_producers_data(world: World) -> None:
    rep = world.lab_report(P1)
    other = world.producer(OTHER_LAB)
    changed = report(f"Patient/{rep.patient}", rep.result_refs)
    changed.update(id=rep.id, status="cancelled")
    seq = world.last_seq()
    r = other.put(changed)
    assert r.status_code == 403, r.text
    assert [row.outcome for row in world.audit_rows(seq)] == ["denied"], "the refused update is not audited"
    assert other.delete(rep.ref).status_code == 403
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": changed, "request": {"method": "PUT", "url": rep.ref}}],
    }
    assert other.post_bundle(bundle).status_code == 403
    assert world.practitioner(HP1, [P1]).read(rep.ref).json()["status"] == "final"
    assert world.producer().put(changed).status_code == 200, "the producer that delivered it may correct it"


# -- who may set restrictions -------------------------------------------------------------------------------------


def test_citizens_can_only_set_restrictions_for_themselves(world: World) -> None:
    rep = world.lab_report(P1)
    p2 = world.patient(P2)
    intruder = world.citizen(P2)
    seq = world.last_seq()
    r = intruder.create(consent(SPERRING, rep.patient))
    assert r.status_code == 403, r.text
    assert [row.outcome for row in world.audit_rows(seq)] == ["denied"], "the refused write is not audited"
    assert intruder.create(consent(NEKTING, p2, data=[rep.ref])).status_code == 403, "a citizen cannot set nekting"

    own = created(world.citizen(P1).create(consent(SPERRING, rep.patient)))
    moved = dict(own, patient={"reference": f"Patient/{p2}"})
    assert world.citizen(P1).put(moved).status_code == 403
    assert intruder.put(dict(own, status="inactive")).status_code == 403
    assert intruder.delete(f"Consent/{own['id']}").status_code == 403
    assert created(intruder.create(consent(SPERRING, p2)))["patient"]["reference"] == f"Patient/{p2}"
    assert visible(world.practitioner(HP1, [P1])) == set(), "P1's sperring must still stand"


def test_health_personnel_cannot_set_citizen_restrictions(world: World) -> None:
    pid = world.patient(P1)
    hp = world.practitioner(HP1, [P1])
    for kind in (RESERVASJON, SPERRING, BLOKKERING):
        assert hp.create(consent(kind, pid)).status_code == 403, kind


@pytest.mark.parametrize("who", ["citizen", "other-citizen", "practitioner"])
def test_people_cannot_delete_data_through_a_transaction(world: World, who: str) -> None:
    """Citizens and health personnel may only write Consents; a DELETE inside a transaction Bundle
    must be checked like a DELETE on its own."""
    rep = world.lab_report(P1)
    caller = {
        "citizen": lambda: world.citizen(P1),
        "other-citizen": lambda: world.citizen(P2),
        "practitioner": lambda: world.practitioner(HP1, [P1]),
    }[who]()
    assert caller.delete(rep.ref).status_code == 403
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"request": {"method": "DELETE", "url": rep.ref}}],
    }
    r = caller.post_bundle(bundle)
    assert r.status_code == 403, (r.status_code, r.text[:300])
    assert world.practitioner(HP2, [P1]).read(rep.ref).status_code == 200


def test_health_personnel_cannot_read_a_hidden_restriction_through_a_conditional_create(world: World) -> None:
    rep = world.lab_report(P1)
    block = created(world.citizen(P1).create(consent(BLOKKERING, rep.patient, hprs=[HP2])))
    hp = world.practitioner(HP1, [P1])
    assert f"Consent/{block['id']}" not in hp.search_refs("Consent")
    r = hp.create(
        consent(NEKTING, rep.patient, data=[rep.ref]),
        **{"if-none-exist": f"patient=Patient/{rep.patient}&category={RESTRICTION_SYSTEM}|{BLOKKERING}"},
    )
    assert block["id"] not in r.text, "the conditional create returned the citizen's blokkering"


# -- every access is audited -----------------------------------------------------------------------------------


def _access_cases(world: World) -> dict[str, Any]:
    rep = world.lab_report(P1)
    world.patient(P2)
    hp = world.practitioner(HP1, [P1])
    lab = world.producer()
    citizen = world.citizen(P1)
    client = world.client
    return {
        "search": lambda: hp.get("/fhir/Observation", person_id=P1),
        "read": lambda: hp.read(rep.ref),
        "vread": lambda: hp.get(f"/fhir/{rep.ref}/_history/1"),
        "history": lambda: hp.get(f"/fhir/{rep.ref}/_history"),
        "read-unknown": lambda: hp.read("Observation/finnes-ikke"),
        "history-unknown": lambda: hp.get("/fhir/Observation/finnes-ikke/_history"),
        "no-token": lambda: client.get("/fhir/Observation"),
        "bad-token": lambda: client.get("/fhir/Observation", headers={"authorization": "Bearer not.a.token"}),
        "outside-attestation": lambda: hp.get("/fhir/Observation", person_id=P2),
        "citizen-other-person": lambda: citizen.get("/fhir/Observation", person_id=P2),
        "producer-search": lambda: lab.get("/fhir/Observation", person_id=P1),
        "producer-consent": lambda: lab.create(consent(SPERRING, rep.patient)),
        "citizen-create-data": lambda: citizen.create(lab_result(f"Patient/{rep.patient}")),
        "unknown-access-basis": lambda: hp.get("/fhir/Observation", person_id=P1, **{"nhn-access-basis": "KANSKJE"}),
        "practitioner-audit-log": lambda: hp.audit_log(),
        "citizen-audit-log": lambda: citizen.audit_log(),
        "citizen-without-record-audit-log": lambda: world.citizen(P3).audit_log(),
    }


ACCESS_CASES = [
    "search",
    "read",
    "vread",
    "history",
    "read-unknown",
    "history-unknown",
    "no-token",
    "bad-token",
    "outside-attestation",
    "citizen-other-person",
    "producer-search",
    "producer-consent",
    "citizen-create-data",
    "unknown-access-basis",
    "practitioner-audit-log",
    "citizen-audit-log",
    "citizen-without-record-audit-log",
]


@pytest.mark.parametrize("case", ACCESS_CASES)
def test_every_access_adds_an_audit_entry(world: World, case: str) -> None:
    call = _access_cases(world)[case]
    seq = world.last_seq()
    r = call()
    rows = world.audit_rows(seq)
    assert rows, f"{case}: HTTP {r.status_code} left no audit entry"
    want = "allowed" if r.status_code < 400 else "denied"
    assert {row.outcome for row in rows} == {want}, (case, r.status_code, rows)
    assert verify(world.api.engine).ok


# -- the audit log's integrity --------------------------------------------------------------------------------


def _fill_log(world: World) -> list[int]:
    world.lab_report(P1)
    hp = world.practitioner(HP1, [P1])
    for _ in range(3):
        visible(hp)
    return [row.seq for row in world.audit_rows()]


def _drop_append_only_trigger(api: Api, event: str) -> None:
    with api.engine.begin() as conn:
        if api.db == "postgresql":
            conn.execute(text("DROP TRIGGER audit_event_no_change ON audit_event"))
        else:
            conn.execute(text(f"DROP TRIGGER audit_event_no_{event}"))


def test_the_audit_chain_verifies(world: World) -> None:
    seqs = _fill_log(world)
    result = verify(world.api.engine)
    assert result.ok, result
    assert result.checked == len(seqs)


def test_tampering_with_an_entry_is_found(world: World) -> None:
    seqs = _fill_log(world)
    victim = seqs[len(seqs) // 2]
    _drop_append_only_trigger(world.api, "update")
    with world.api.engine.begin() as conn:
        raw = conn.execute(text("SELECT content FROM audit_event WHERE seq = :s"), {"s": victim}).scalar_one()
        forged = bytes(raw).replace(b'"outcome":"0"', b'"outcome":"4"').replace(HP1.encode(), b"9999999")
        assert forged != bytes(raw)
        conn.execute(text("UPDATE audit_event SET content = :c WHERE seq = :s"), {"c": forged, "s": victim})
    result = verify(world.api.engine)
    assert not result.ok
    assert result.broken_at == victim, result


def test_removing_an_entry_is_found(world: World) -> None:
    seqs = _fill_log(world)
    victim = seqs[len(seqs) // 2]
    _drop_append_only_trigger(world.api, "delete")
    with world.api.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_event WHERE seq = :s"), {"s": victim})
    result = verify(world.api.engine)
    assert not result.ok
    assert result.broken_at is not None and result.broken_at >= victim, result


def test_the_database_refuses_to_change_or_remove_audit_entries(world: World) -> None:
    seqs = _fill_log(world)
    for statement in (
        "UPDATE audit_event SET outcome = 'denied' WHERE seq = :s",
        "UPDATE audit_event SET content = content WHERE seq = :s",
        "DELETE FROM audit_event WHERE seq = :s",
    ):
        with pytest.raises(exc.DBAPIError), world.api.engine.begin() as conn:
            conn.execute(text(statement), {"s": seqs[0]})
    assert len(world.audit_rows()) == len(seqs)
    assert verify(world.api.engine).ok
