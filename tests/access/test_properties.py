"""Property-based tests of the access engine against a small, independent model.

Hypothesis generates a world (persons, health personnel, organisations, data, and any mix of the six
restrictions with services and named health personnel), callers (citizens, health personnel with
attestations, purposes and access bases, producers) and requests over every read path: read, vread,
search (GET, and POST _search with person-id), _include/_revinclude, chained search, _history
(instance, type and system), _summary=count, _total=accurate and paging through next links.

The model below is plain Python over the generated world: it does not call kjerne.access. It decides
which resources each caller may see, and every response is checked against it:

* no response holds (or names, in a history entry) a resource the model forbids, and every resource
  the model allows is there;
* totals and counts equal the number of visible resources;
* paging yields exactly the visible set, each resource once, no page larger than _count;
* every request appends one audit entry per patient touched (whose data it returned or whom it named
  by person-id or patient=; one entry when none), refusals are logged as denied, and an entry's
  override flag is set exactly when a sperring on that entry's patient was overridden;
* health personnel get a PvkOutcome exactly when something of the patient is withheld from them;
* a citizen's access log is about that citizen only and never shows a health worker's fødselsnummer.

Decisions the model makes where the domain text leaves room (change ``Model`` if they change):
sperring yields to FORHOYET_SAMTYKKE, FORHOYET_AKUTT and purposes ETREAT/BTG, blokkering and skjerming
to nothing; citizens never see nekting or utsatt-innsyn Consents, health personnel never see citizen
restrictions, and a skjerming Consent is seen by the citizen and the health worker who set it only;
withdrawing utsatt innsyn releases the report; a reservasjon in force when set removes the patient's
data in its services, every version; restrictions on a report cover its results, also after the
producer deleted the report.

Each example builds its world in a fresh SQLite database (a copy of the migrated template; on
PostgreSQL the tables are emptied) behind one app per database kind, so examples stay cheap.

Profiles: ``ci`` (default, 2000 examples per test), ``long`` (20000) and ``dev`` (50, or
``KJERNE_HYPOTHESIS_EXAMPLES``, for a quick local run), chosen by the environment variable
``KJERNE_HYPOTHESIS_PROFILE``; the PostgreSQL test runs a tenth of the examples.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    ACCESS_BASES,
    BLOKKERING,
    CITIZEN_KINDS,
    CONSENT_SCOPE_SYSTEM,
    HPR_SYSTEM,
    LAB_ORG,
    MALEDATA,
    NEKTING,
    OVERRIDING_BASES,
    OVERRIDING_PURPOSES,
    PRACTITIONER_KINDS,
    PROVESVAR,
    PURPOSES,
    PVK_SYSTEM,
    RESERVASJON,
    RESTRICTION_SYSTEM,
    SERVICE_SYSTEM,
    SKJERMING,
    SPERRING,
    UTSATT,
    hpr_numbers,
    lab_result,
    measurement,
    organisations,
    patient,
    persons,
    report,
)
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text
from starlette.testclient import TestClient

from kjerne.api.auth import dev_issuer
from kjerne.app import create_app
from kjerne.config import Settings
from kjerne.store.db import make_engine
from kjerne.store.repository import Repository
from kjerne.store.writer import Writer

# -- profiles ----------------------------------------------------------------------------------------------

_COMMON: dict[str, Any] = {
    "deadline": None,
    "derandomize": False,
    "print_blob": True,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
}
settings.register_profile("ci", max_examples=2000, **_COMMON)
settings.register_profile("long", max_examples=20000, **_COMMON)
settings.register_profile(
    "dev", max_examples=int(os.environ.get("KJERNE_HYPOTHESIS_EXAMPLES", "50")), **_COMMON
)  # quick local runs
PROFILE = settings.get_profile(os.environ.get("KJERNE_HYPOTHESIS_PROFILE", "ci"))
PG_SHARE = 10  # PostgreSQL runs a tenth of the examples: slower per example, and the SQL is the same

# -- identities ------------------------------------------------------------------------------------------

PERSONS = persons(5, born=dt.date(1988, 8, 8), start=200)  # 2-4 patients + one person with no record
HPRS = hpr_numbers(3, start=9200001)
HP_PIDS = persons(3, born=dt.date(1961, 4, 1), start=30)
PRODUCERS = (LAB_ORG, organisations(1, start=92345670)[0])
CONSUMER_ORG = organisations(1, start=93456780)[0]
ALL = "*"
REPORT_CODES = ("58410-2", "24323-8")
RESULT_CODES = ("718-7", "2345-7")
MEASUREMENT_CODE = "8867-4"
DEFAULT_DELAY = {"PAT": 14, "RAD": 7}  # days, data/utsatt-innsyn.json (v2-0074 categories)


# -- the generated world ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    """One piece of a patient's data: a report with its results, or a home measurement."""

    kind: str  # report | measurement
    results: int
    category: str  # v2-0074: LAB, PAT, RAD
    issued_days_ago: int
    code: str
    updated: bool  # the producer sends a second version
    deleted: bool  # the producer deletes it (after the restrictions on it were set)
    producer: int


@dataclass(frozen=True)
class CitizenRestriction:
    kind: str  # reservasjon | sperring | blokkering
    patient: int
    services: frozenset[str]  # empty: every service
    hprs: tuple[int, ...]  # practitioner indexes named; empty: all (sperring)
    state: str  # active | withdrawn | expired | pending


@dataclass(frozen=True)
class HpRestriction:
    kind: str  # nekting | utsatt-innsyn | skjerming
    patient: int
    report: int  # index among the patient's reports
    setter: int  # practitioner index
    withdrawn: bool
    release_days: int  # utsatt innsyn: release this many days from now (negative: in the past)


@dataclass(frozen=True)
class WorldSpec:
    patients: tuple[tuple[Item, ...], ...]
    practitioners: int
    directory: bool
    citizen_restrictions: tuple[CitizenRestriction, ...]
    hp_restrictions: tuple[HpRestriction, ...]

    @property
    def nobody(self) -> int:
        """The index of a person who has no record at all."""
        return len(self.patients)


@dataclass(frozen=True)
class Who:
    kind: str  # citizen | practitioner | system
    person: int = 0  # citizen: which person
    hp: int = 0
    attested: frozenset[int] = frozenset()
    purpose: str = "TREAT"
    basis: str | None = None
    org: int = 0

    @property
    def overrides(self) -> bool:
        return self.basis in OVERRIDING_BASES or self.purpose in OVERRIDING_PURPOSES


@dataclass(frozen=True)
class Search:
    res_type: str
    scope: str  # person | param | none
    scope_person: int
    filter: str  # none | id | code | chain
    filter_value: str
    shape: str  # plain | include | revinclude | count | total | page
    page_size: int
    post: bool


@dataclass(frozen=True)
class Read:
    path: str  # read | vread | history-instance | history-type | history-system
    target: int  # index into the world's resources (one past the end: an id that does not exist)
    version: int
    res_type: str
    page_size: int | None


ITEM = st.one_of(
    st.builds(
        Item,
        kind=st.just("report"),
        results=st.integers(1, 2),
        category=st.sampled_from(("LAB", "LAB", "PAT", "RAD")),
        issued_days_ago=st.sampled_from((0, 3, 10, 30)),
        code=st.sampled_from(REPORT_CODES),
        updated=st.booleans(),
        deleted=st.booleans(),
        producer=st.integers(0, 1),
    ),
    st.builds(
        Item,
        kind=st.just("measurement"),
        results=st.just(0),
        category=st.just("-"),
        issued_days_ago=st.just(0),
        code=st.just(MEASUREMENT_CODE),
        updated=st.booleans(),
        deleted=st.booleans(),
        producer=st.integers(0, 1),
    ),
)


def _size(items: tuple[Item, ...]) -> int:
    return sum(1 + i.results for i in items)


@st.composite
def worlds(draw: st.DrawFn) -> WorldSpec:
    n_patients = draw(st.integers(2, 4))
    n_hp = draw(st.integers(1, 3))
    patients = []
    for _ in range(n_patients):
        items: list[Item] = []
        for item in draw(st.lists(ITEM, max_size=4)):
            if _size((*items, item)) <= 6:
                items.append(item)
        patients.append(tuple(items))
    services = st.sets(st.sampled_from((PROVESVAR, MALEDATA)), max_size=2).map(frozenset)
    named = st.lists(st.sampled_from(range(n_hp)), unique=True, max_size=n_hp).map(tuple)
    citizen = st.one_of(
        st.builds(
            CitizenRestriction,
            kind=st.just(RESERVASJON),
            patient=st.sampled_from(range(n_patients)),
            services=services,
            hprs=st.just(()),
            state=st.sampled_from(("active", "active", "withdrawn", "expired", "pending")),
        ),
        st.builds(
            CitizenRestriction,
            kind=st.just(SPERRING),
            patient=st.sampled_from(range(n_patients)),
            services=services,
            hprs=named,
            state=st.sampled_from(("active", "active", "withdrawn", "expired", "pending")),
        ),
        st.builds(
            CitizenRestriction,
            kind=st.just(BLOKKERING),
            patient=st.sampled_from(range(n_patients)),
            services=st.just(frozenset()),
            hprs=st.lists(st.sampled_from(range(n_hp)), unique=True, min_size=1, max_size=n_hp).map(tuple),
            state=st.sampled_from(("active", "active", "withdrawn", "expired", "pending")),
        ),
    )
    reported = [i for i, items in enumerate(patients) if any(x.kind == "report" for x in items)]
    hp_restrictions: list[HpRestriction] = []
    if reported:
        hp = st.builds(
            HpRestriction,
            kind=st.sampled_from(PRACTITIONER_KINDS),
            patient=st.sampled_from(reported),
            report=st.integers(0, 3),
            setter=st.sampled_from(range(n_hp)),
            withdrawn=st.booleans(),
            release_days=st.sampled_from((-2, 5)),
        )
        seen_utsatt: set[tuple[int, int]] = set()
        for h in draw(st.lists(hp, max_size=4)):
            n_reports = sum(1 for x in patients[h.patient] if x.kind == "report")
            h = HpRestriction(h.kind, h.patient, h.report % n_reports, h.setter, h.withdrawn, h.release_days)
            if h.kind == UTSATT:
                # One utsatt innsyn per report: two requesters disagreeing on the release is not modelled.
                if (h.patient, h.report) in seen_utsatt:
                    continue
                seen_utsatt.add((h.patient, h.report))
            hp_restrictions.append(h)
    return WorldSpec(
        patients=tuple(patients),
        practitioners=n_hp,
        directory=draw(st.booleans()),
        citizen_restrictions=tuple(draw(st.lists(citizen, max_size=4))),
        hp_restrictions=tuple(hp_restrictions),
    )


def callers(spec: WorldSpec) -> st.SearchStrategy[Who]:
    n = len(spec.patients)
    return st.one_of(
        st.builds(Who, kind=st.just("citizen"), person=st.sampled_from(range(n + 1))),
        st.builds(
            Who,
            kind=st.just("practitioner"),
            hp=st.sampled_from(range(spec.practitioners)),
            attested=st.sets(st.sampled_from(range(n + 1)), min_size=1, max_size=n + 1).map(frozenset),
            purpose=st.sampled_from(PURPOSES),
            basis=st.one_of(st.none(), st.sampled_from(ACCESS_BASES)),
        ),
        st.builds(Who, kind=st.just("system"), org=st.integers(0, 1)),
    )


SEARCH_TYPES = ("Observation", "DiagnosticReport", "Consent", "Patient", "Organization")
INCLUDES = {
    "DiagnosticReport": ("_include", "DiagnosticReport:result", "result"),
    "Observation": ("_include", "Observation:subject", "subject"),
    "Consent": ("_include", "Consent:data", "data"),
    "Patient": None,
    "Organization": None,
}
REVINCLUDES = {
    "DiagnosticReport": ("_revinclude", "Consent:data", "data", "Consent"),
    "Observation": ("_revinclude", "DiagnosticReport:result", "result", "DiagnosticReport"),
    "Patient": ("_revinclude", "Consent:patient", "patient", "Consent"),
    "Consent": None,
    "Organization": None,
}


@st.composite
def searches(draw: st.DrawFn, spec: WorldSpec, n_resources: int) -> Search:
    res_type = draw(st.sampled_from(SEARCH_TYPES))
    scopes = ["person", "param", "none"]
    if res_type == "Patient":
        scopes = ["person", "none"]
    if res_type == "Organization":
        scopes = ["none"]
    scope = draw(st.sampled_from(scopes))
    filters = ["none", "none", "id", "code"] if res_type in ("Observation", "DiagnosticReport") else ["none", "id"]
    if res_type == "Consent":
        filters.append("chain")
    flt = draw(st.sampled_from(filters))
    value = ""
    if flt == "id":
        value = str(draw(st.integers(0, n_resources)))
    elif flt == "code":
        value = draw(st.sampled_from((*REPORT_CODES, *RESULT_CODES, MEASUREMENT_CODE)))
    elif flt == "chain":
        value = draw(st.sampled_from(REPORT_CODES))
    shapes = ["plain", "count", "total", "page", "page"]
    if INCLUDES[res_type]:
        shapes.append("include")
    if REVINCLUDES[res_type]:
        shapes.append("revinclude")
    return Search(
        res_type=res_type,
        scope=scope,
        scope_person=draw(st.sampled_from(range(len(spec.patients) + 1))),
        filter=flt,
        filter_value=value,
        shape=draw(st.sampled_from(shapes)),
        page_size=draw(st.integers(1, 3)),
        post=draw(st.booleans()),
    )


@st.composite
def reads(draw: st.DrawFn, n_resources: int) -> Read:
    path = draw(
        st.sampled_from(("read", "vread", "vread", "history-instance", "history-type", "history-system", "audit-log"))
    )
    return Read(
        path=path,
        target=draw(st.integers(0, n_resources)),
        version=draw(st.integers(1, 4)),
        res_type=draw(st.sampled_from(("Observation", "DiagnosticReport", "Consent", "Patient"))),
        page_size=draw(st.sampled_from((None, 3, 5) if path == "history-system" else (None, 1, 2, 4))),
    )


def resource_count(spec: WorldSpec) -> int:
    """Resources the seed writes (the model's target indexes range over them)."""
    data = sum(_size(items) for items in spec.patients)
    return len(spec.patients) + data + int(spec.directory) + len(spec.citizen_restrictions) + len(spec.hp_restrictions)


# -- the model -----------------------------------------------------------------------------------------------


@dataclass
class MRes:
    res_type: str
    id: str
    patient: int | None
    service: str | None = None
    report: str | None = None  # the report whose restrictions cover this resource
    code: str | None = None
    category: str | None = None
    issued_days_ago: int = 0
    deleted: bool = False
    purged: bool = False
    links: dict[str, list[str]] = field(default_factory=dict)  # search param → referenced Type/id
    kind: str | None = None  # Consent: the restriction
    setter: int | None = None
    status: str = "active"
    consent_index: int = -1

    @property
    def ref(self) -> str:
        return f"{self.res_type}/{self.id}"


class Model:
    """Who may see what, decided from the generated world alone."""

    def __init__(self, spec: WorldSpec) -> None:
        self.spec = spec
        self.res: dict[str, MRes] = {}
        self.order: list[str] = []
        self.hp_consents: list[tuple[HpRestriction, MRes]] = []

    def add(self, r: MRes) -> MRes:
        self.res[r.ref] = r
        self.order.append(r.ref)
        return r

    @staticmethod
    def patient_id(i: int) -> str:
        return f"pat{i}"

    def patient_index(self, pid: str | None) -> int | None:
        if pid is None or not pid.startswith("pat"):
            return None
        return int(pid[3:])

    # citizen restrictions that are in force now
    def in_force(self, patient: int, kind: str) -> list[CitizenRestriction]:
        return [
            c for c in self.spec.citizen_restrictions if c.patient == patient and c.kind == kind and c.state == "active"
        ]

    def blocked(self, who: Who, patient: int) -> bool:
        return any(who.hp in c.hprs for c in self.in_force(patient, BLOKKERING))

    def sperring_applies(self, who: Who, patient: int) -> list[CitizenRestriction]:
        return [c for c in self.in_force(patient, SPERRING) if not c.hprs or who.hp in c.hprs]

    def hidden_services(self, who: Who, patient: int) -> set[str]:
        hidden: set[str] = set()
        for c in self.in_force(patient, RESERVASJON):
            hidden |= set(c.services) or {ALL}
        if not who.overrides:
            for c in self.sperring_applies(who, patient):
                hidden |= set(c.services) or {ALL}
        return hidden

    def withheld_codes(self, who: Who, patient: int) -> set[str]:
        """The PvkOutcome codes that describe what is withheld from this practitioner."""
        codes: set[str] = set()
        if self.in_force(patient, RESERVASJON):
            codes.add("Reservation")
        if self.blocked(who, patient):
            codes.add("Specific")
        if not who.overrides:
            for c in self.sperring_applies(who, patient):
                codes.add("Specific" if c.hprs else "General")
        return codes

    def overridden(self, who: Who, patient: int) -> bool:
        return who.kind == "practitioner" and who.overrides and bool(self.sperring_applies(who, patient))

    def attested_existing(self, who: Who) -> set[int]:
        return {p for p in who.attested if p < len(self.spec.patients)}

    # labels from health-personnel restrictions
    def _on(self, report_ref: str | None, kind: str) -> list[tuple[HpRestriction, MRes]]:
        return [(h, c) for h, c in self.hp_consents if h.kind == kind and c.links.get("data") == [report_ref]]

    def nekting(self, r: MRes) -> bool:
        return any(not h.withdrawn for h, _ in self._on(r.report, NEKTING))

    def unreleased(self, r: MRes) -> bool:
        if r.report is None:
            return False
        set_by_hp = self._on(r.report, UTSATT)
        if set_by_hp:
            h, _ = set_by_hp[-1]
            return not h.withdrawn and h.release_days > 0
        rep = self.res[r.report]
        return rep.issued_days_ago < DEFAULT_DELAY.get(rep.category or "", 0)

    def shield_owners(self, r: MRes) -> set[int]:
        return {h.setter for h, _ in self._on(r.report, SKJERMING) if not h.withdrawn}

    # the decision
    def sees(self, who: Who, ref: str) -> bool:
        """Whether any version of the resource may be shown to the caller (ignores deletion)."""
        r = self.res.get(ref)
        if r is None or r.purged:
            return False
        if who.kind == "system":
            return False
        if r.res_type == "Organization":
            return True
        if who.kind == "citizen":
            if r.patient != who.person:
                return False
            if r.res_type == "Patient":
                return True
            if r.res_type == "Consent":
                return r.kind in CITIZEN_KINDS or r.kind == SKJERMING
            return not self.nekting(r) and not self.unreleased(r)
        # practitioner
        if r.patient is None or r.patient not in self.attested_existing(who):
            return False
        if r.res_type == "Patient":
            return True
        if self.blocked(who, r.patient):
            return False
        if r.res_type == "Consent":
            if r.kind in CITIZEN_KINDS:
                return False
            # A skjerming names the shielded report: only the health worker who set it sees it.
            return r.kind != SKJERMING or r.setter == who.hp
        hidden = self.hidden_services(who, r.patient)
        if r.service and (ALL in hidden or r.service in hidden):
            return False
        owners = self.shield_owners(r)
        return not owners or who.hp in owners

    def current(self, who: Who, ref: str) -> bool:
        r = self.res.get(ref)
        return r is not None and not r.deleted and self.sees(who, ref)


# -- seeding ----------------------------------------------------------------------------------------------------


def _instant(days: float) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(days=days)).isoformat(timespec="seconds").replace("+00:00", "Z")


def _source(res: dict[str, Any], producer: int) -> dict[str, Any]:
    res.setdefault("meta", {})["source"] = f"urn:oid:2.16.578.1.12.4.1.4.101:{PRODUCERS[producer]}"
    return res


def _consent(
    kind: str,
    patient_id: str,
    *,
    status: str = "active",
    services: frozenset[str] = frozenset(),
    hprs: tuple[str, ...] = (),
    data: str | None = None,
    period: dict[str, str] | None = None,
) -> dict[str, Any]:
    provision: dict[str, Any] = {"type": "deny"}
    if hprs:
        provision["actor"] = [
            {
                "role": {
                    "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "AUT"}]
                },
                "reference": {"identifier": {"system": HPR_SYSTEM, "value": h}},
            }
            for h in hprs
        ]
    if services:
        provision["code"] = [{"coding": [{"system": SERVICE_SYSTEM, "code": s}]} for s in sorted(services)]
    if data:
        provision["data"] = [{"meaning": "instance", "reference": {"reference": data}}]
    if period:
        provision["period"] = period
    return {
        "resourceType": "Consent",
        "status": status,
        "scope": {"coding": [{"system": CONSENT_SCOPE_SYSTEM, "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": RESTRICTION_SYSTEM, "code": kind}]}],
        "patient": {"reference": f"Patient/{patient_id}"},
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT"}]},
        "provision": provision,
    }


@contextmanager
def _writing(repo: Repository) -> Iterator[Writer]:
    """One unit of writes on the platform's write path (platform rules, labels, purges), as an
    unrestricted platform writer; input validation is left out, the builders make valid resources."""
    with repo.write_tx() as conn:
        writer = Writer(conn, validate_input=False)
        yield writer
        writer.finish()


def seed(engine: Engine, spec: WorldSpec) -> Model:
    """Write the world through the platform's own write path (rules, labels, purges all apply), in the
    order: data, corrections, health-personnel restrictions, deletions, citizen restrictions,
    withdrawals of health-personnel restrictions."""
    model = Model(spec)
    repo = Repository(engine)
    bodies: dict[str, dict[str, Any]] = {}
    with _writing(repo) as w:
        if spec.directory:
            org = {"resourceType": "Organization", "id": "org1", "name": "Testlaben AS"}
            w.put(org, "org1")
            model.add(MRes("Organization", "org1", None))
        for p, items in enumerate(spec.patients):
            pid = model.patient_id(p)
            w.put(patient(PERSONS[p]), pid)
            model.add(MRes("Patient", pid, p))
            for j, item in enumerate(items):
                base = f"{pid}-d{j}"
                if item.kind == "measurement":
                    body = _source(measurement(f"Patient/{pid}", fnr=PERSONS[p]), item.producer)
                    w.put(body, base)
                    bodies[f"Observation/{base}"] = body
                    model.add(
                        MRes(
                            "Observation",
                            base,
                            p,
                            MALEDATA,
                            None,
                            MEASUREMENT_CODE,
                            links={"subject": [f"Patient/{pid}"]},
                        )
                    )
                    continue
                result_refs = []
                for k in range(item.results):
                    oid = f"{base}-o{k}"
                    body = _source(lab_result(f"Patient/{pid}", code=RESULT_CODES[k]), item.producer)
                    w.put(body, oid)
                    bodies[f"Observation/{oid}"] = body
                    result_refs.append(f"Observation/{oid}")
                body = _source(
                    report(
                        f"Patient/{pid}",
                        result_refs,
                        category=item.category,
                        code=item.code,
                        issued=_instant(-item.issued_days_ago),
                    ),
                    item.producer,
                )
                w.put(body, base)
                bodies[f"DiagnosticReport/{base}"] = body
                rep_ref = f"DiagnosticReport/{base}"
                for k, ref in enumerate(result_refs):
                    model.add(
                        MRes(
                            "Observation",
                            ref.split("/")[1],
                            p,
                            PROVESVAR,
                            rep_ref,
                            RESULT_CODES[k],
                            links={"subject": [f"Patient/{pid}"]},
                        )
                    )
                model.add(
                    MRes(
                        "DiagnosticReport",
                        base,
                        p,
                        PROVESVAR,
                        rep_ref,
                        item.code,
                        item.category,
                        item.issued_days_ago,
                        links={"result": result_refs, "subject": [f"Patient/{pid}"]},
                    )
                )

    def items_of(p: int) -> list[tuple[str, Item]]:
        return [(f"{model.patient_id(p)}-d{j}", item) for j, item in enumerate(spec.patients[p])]

    with _writing(repo) as w:  # corrections: a second version
        for p in range(len(spec.patients)):
            for base, item in items_of(p):
                if item.updated:
                    ref = ("Observation/" if item.kind == "measurement" else "DiagnosticReport/") + base
                    body = dict(bodies[ref], status="amended")
                    w.put(body, base)

    with _writing(repo) as w:  # health-personnel restrictions
        for n, h in enumerate(spec.hp_restrictions):
            reports = [b for b, item in items_of(h.patient) if item.kind == "report"]
            target = f"DiagnosticReport/{reports[h.report]}"
            period = {"end": _instant(h.release_days)} if h.kind == UTSATT else None
            cid = f"hc{n}"
            body = _consent(h.kind, model.patient_id(h.patient), hprs=(HPRS[h.setter],), data=target, period=period)
            w.put(body, cid)
            bodies[f"Consent/{cid}"] = body
            c = model.add(
                MRes(
                    "Consent",
                    cid,
                    h.patient,
                    links={"patient": [f"Patient/{model.patient_id(h.patient)}"], "data": [target]},
                    kind=h.kind,
                    setter=h.setter,
                    status="inactive" if h.withdrawn else "active",
                    consent_index=n,
                )
            )
            model.hp_consents.append((h, c))

    with _writing(repo) as w:  # the producers delete
        for p in range(len(spec.patients)):
            for base, item in items_of(p):
                if item.deleted:
                    res_type = "Observation" if item.kind == "measurement" else "DiagnosticReport"
                    w.delete(res_type, base)
                    model.res[f"{res_type}/{base}"].deleted = True

    with _writing(repo) as w:  # citizen restrictions
        for n, c in enumerate(spec.citizen_restrictions):
            cid = f"cc{n}"
            pid = model.patient_id(c.patient)
            period = {"expired": {"start": _instant(-10), "end": _instant(-1)}, "pending": {"start": _instant(1)}}.get(
                c.state
            )
            body = _consent(c.kind, pid, services=c.services, hprs=tuple(HPRS[i] for i in c.hprs), period=period)
            w.put(body, cid)
            if c.state == "withdrawn":
                w.put(dict(body, status="inactive"), cid)
            model.add(
                MRes(
                    "Consent",
                    cid,
                    c.patient,
                    links={"patient": [f"Patient/{pid}"]},
                    kind=c.kind,
                    status="inactive" if c.state == "withdrawn" else "active",
                    consent_index=n,
                )
            )
            if c.kind == RESERVASJON and c.state in ("active", "withdrawn"):
                # In force when it was set: the patient's data in those services is gone, with history.
                for r in model.res.values():
                    if r.patient == c.patient and r.service and (not c.services or r.service in c.services):
                        r.purged = True

    with _writing(repo) as w:  # health personnel withdraw
        for n, h in enumerate(spec.hp_restrictions):
            if h.withdrawn:
                w.put(dict(bodies[f"Consent/hc{n}"], status="inactive"), f"hc{n}")
    return model


def stored_versions(engine: Engine) -> dict[str, dict[int, bool]]:
    """Type/id → {version: is a deletion} for every version the database holds."""
    out: dict[str, dict[int, bool]] = {}
    with engine.connect() as conn:
        for table in ("resource", "resource_history"):
            for t, i, v, d in conn.execute(text(f"SELECT res_type, res_id, version, deleted FROM {table}")):
                out.setdefault(f"{t}/{i}", {})[int(v)] = bool(d)
    return out


# -- checking responses ------------------------------------------------------------------------------------------


class Leak(AssertionError):
    """A response showed (or named) a resource the model forbids."""


class Missing(AssertionError):
    """A resource the model allows was not in the response."""


class TotalLeak(Leak):
    """A total or count is larger than the number of visible resources: it reveals hidden data."""


class WrongStatus(AssertionError):
    """The HTTP status differs from what the model expects."""


class WrongTotal(AssertionError):
    """A total or count differs from the number of visible resources."""


class BadPaging(AssertionError):
    """Pages repeat resources, exceed _count, or never end."""


class WrongOutcome(AssertionError):
    """The PvkOutcome does not match what is withheld."""


class AuditCount(AssertionError):
    """A request did not append one audit entry per patient touched."""


class AuditDetail(AssertionError):
    """Audit entries name the wrong patients, outcome or override flag."""


def _family(ref: str) -> str:
    res_type = ref.split("/", 1)[0]
    return {"Observation": "data", "DiagnosticReport": "data", "Consent": "consent"}.get(res_type, "other")


# Leaks and misses are split by what leaked and on which path, so that Hypothesis reports (and
# shrinks) each combination as a bug of its own instead of showing only the most frequent one.
KINDS: dict[tuple[type, str, str], type] = {
    (base, family, path): type(f"{base.__name__}_{family}_{path}", (base,), {})
    for base in (Leak, Missing)
    for family in ("data", "consent", "other")
    for path in ("search", "read", "history")
}
ORDER: list[type] = [
    *(KINDS[(Leak, f, p)] for f in ("data", "consent", "other") for p in ("search", "read", "history")),
    *(KINDS[(Missing, f, p)] for f in ("data", "consent", "other") for p in ("search", "read", "history")),
    TotalLeak,
    WrongStatus,
    WrongTotal,
    BadPaging,
    WrongOutcome,
    AuditCount,
    AuditDetail,
]


@dataclass
class Checker:
    problems: dict[type, list[str]] = field(default_factory=dict)

    def fail(self, kind: type, message: str) -> None:
        self.problems.setdefault(kind, []).append(message)

    def shown(self, base: type, path: str, refs: set[str] | set[tuple[str, int]], message: str) -> None:
        """A leak (base Leak) or a miss (base Missing) of ``refs`` on ``path``."""
        first = sorted(refs)[0]
        ref = first[0] if isinstance(first, tuple) else first
        self.fail(KINDS[(base, _family(str(ref)), path)], message)

    def raise_first(self) -> None:
        for kind in ORDER:
            if kind in self.problems:
                raise kind("\n".join(self.problems[kind]))


@dataclass
class Env:
    client: TestClient
    engine: Engine
    tokens: Callable[[Who, WorldSpec], str]
    reset: Callable[[], None]


def token_for(dev: Any) -> Callable[[Who, WorldSpec], str]:
    def make(who: Who, spec: WorldSpec) -> str:
        if who.kind == "citizen":
            return str(dev.citizen_token(PERSONS[who.person]))
        if who.kind == "practitioner":
            return str(
                dev.practitioner_token(
                    hpr=HPRS[who.hp],
                    pid=HP_PIDS[who.hp],
                    org=CONSUMER_ORG,
                    purpose=who.purpose,
                    patients=[PERSONS[i] for i in sorted(who.attested)],
                    name=f"Lege {who.hp}",
                )
            )
        return str(dev.system_token(org=PRODUCERS[who.org], scope="system/*.write system/*.read"))

    return make


def _audit_after(engine: Engine, seq: int) -> list[tuple[int, str | None, str, bool]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT seq, patient, outcome, override FROM audit_event WHERE seq > :s ORDER BY seq"), {"s": seq}
        ).all()
    return [(int(r[0]), r[1], str(r[2]), bool(r[3])) for r in rows]


def _last_seq(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT coalesce(max(seq), 0) FROM audit_event")).scalar_one())


class Run:
    """Sends one logical request (with its follow-up pages) and checks it against the model."""

    def __init__(self, env: Env, model: Model, versions: dict[str, dict[int, bool]], who: Who, check: Checker):
        self.env, self.model, self.versions, self.who, self.check = env, model, versions, who, check
        self.token = env.tokens(who, model.spec)
        self.label = f"{who}"

    def headers(self, person: int | None = None) -> dict[str, str]:
        h = {"authorization": f"Bearer {self.token}"}
        if self.who.basis:
            h["nhn-access-basis"] = self.who.basis
        if person is not None:
            h["person-id"] = PERSONS[person]
        return h

    def send(
        self, what: str, call: Callable[[], Any], about: str | None = None, named: frozenset[str] = frozenset()
    ) -> Any:
        """Run one HTTP call; check the audit entries it appended against what it returned.

        ``about``: the resource a read names (a 410 for it still touches its patient). ``named``: the
        Patient ids the request asked about (person-id header, patient parameter); an allowed request
        touches them even when it finds nothing, a refused one may name them."""
        m = self.model
        seq = _last_seq(self.env.engine)
        r = call()
        rows = _audit_after(self.env.engine, seq)
        body: dict[str, Any] = {}
        try:
            body = r.json()
        except ValueError:
            body = {}
        allowed_request = r.status_code < 400 or r.status_code == 410
        shown = {m.patient_id(p) for p in self.patients_in(body)} if r.status_code < 400 else set()
        if r.status_code == 410 and about in m.res and m.res[about].patient is not None:
            shown = {m.patient_id(m.res[about].patient)}  # type: ignore[arg-type]
        existing = {m.patient_id(i) for i in range(len(m.spec.patients))}
        required = shown | (set(named) & existing) if allowed_request else set()
        permitted = required | set(named)
        pats = [p for _, p, _, _ in rows]
        got = {p for p in pats if p is not None}
        if not rows:
            self.check.fail(AuditCount, f"{what} by {self.label}: HTTP {r.status_code} appended no audit entry")
        elif (got and (None in pats or len(pats) != len(got))) or (not got and len(pats) != 1):
            self.check.fail(
                AuditCount,
                f"{what} by {self.label}: HTTP {r.status_code} appended entries for {pats}; one per patient touched"
                f" ({sorted(required) or 'none'}) was expected",
            )
        if rows and not (required <= got <= permitted):
            self.check.fail(
                AuditDetail,
                f"{what} by {self.label}: HTTP {r.status_code}: audit entries name {sorted(got)}; the request"
                f" touched {sorted(required)}",
            )
        outcome = "allowed" if allowed_request else "denied"
        if rows and {o for _, _, o, _ in rows} != {outcome}:
            self.check.fail(AuditDetail, f"{what} by {self.label}: HTTP {r.status_code} logged as {rows}")
        for _, p, _, flag in rows:
            idx = m.patient_index(p)
            if idx is not None and idx < len(m.spec.patients) and flag != m.overridden(self.who, idx):
                self.check.fail(
                    AuditDetail,
                    f"{what} by {self.label}: override flag {flag} in the entry for {p}, expected"
                    f" {m.overridden(self.who, idx)}",
                )
        return r

    def patients_in(self, body: dict[str, Any]) -> set[int]:
        out: set[int] = set()
        if body.get("resourceType") == "Bundle":
            for e in body.get("entry", []):
                ref = _entry_ref(e)
                r = self.model.res.get(ref) if ref else None
                if r is not None and r.patient is not None:
                    out.add(r.patient)
        else:
            ref = f"{body.get('resourceType')}/{body.get('id')}"
            r = self.model.res.get(ref)
            if r is not None and r.patient is not None:
                out.add(r.patient)
        return out

    # -- searches -----------------------------------------------------------------------------------------------
    def search(self, s: Search) -> None:
        m, who = self.model, self.who
        n = len(m.spec.patients)
        pairs: list[tuple[str, str]] = []
        person = None
        if s.scope == "person":
            person = s.scope_person
        elif s.scope == "param":
            pairs.append(("patient", f"Patient/{m.patient_id(s.scope_person)}"))
        if s.filter == "id":
            idx = int(s.filter_value)
            pairs.append(("_id", m.order[idx].split("/")[1] if idx < len(m.order) else "finnes-ikke"))
        elif s.filter == "code":
            pairs.append(("code", s.filter_value))
        elif s.filter == "chain":
            pairs.append(("data:DiagnosticReport.code", s.filter_value))
        include = INCLUDES[s.res_type] if s.shape == "include" else None
        revinclude = REVINCLUDES[s.res_type] if s.shape == "revinclude" else None
        if include:
            pairs.append((include[0], include[1]))
        if revinclude:
            pairs.append((revinclude[0], revinclude[1]))
        if s.shape == "count":
            pairs.append(("_summary", "count"))
        if s.shape == "total":
            pairs.append(("_total", "accurate"))
        if s.shape == "page":
            pairs.append(("_count", str(s.page_size)))
        what = f"{'POST' if s.post else 'GET'} {s.res_type} {pairs} person-id={person}"
        named: frozenset[str] = frozenset()
        if s.scope == "param" or (s.scope == "person" and s.scope_person < n):
            named = frozenset({m.patient_id(s.scope_person)})

        # The status the model expects.
        refused = False
        if s.scope == "person":
            if who.kind == "system":
                refused = True
            elif who.kind == "citizen":
                refused = s.scope_person != who.person
            else:
                refused = s.scope_person not in who.attested
        elif s.scope == "param" and who.kind != "system":
            allowed = {who.person} if who.kind == "citizen" else who.attested
            refused = s.scope_person not in allowed or s.scope_person >= n

        # The matches the model expects.
        def in_scope(r: MRes) -> bool:
            if s.scope == "none":
                return True
            return r.patient == s.scope_person if s.scope_person < n else False

        def passes(r: MRes) -> bool:
            if s.filter == "id":
                idx = int(s.filter_value)
                return idx < len(m.order) and m.order[idx] == r.ref
            if s.filter == "code":
                return r.code == s.filter_value
            if s.filter == "chain":
                target = (r.links.get("data") or [None])[0]
                t = m.res.get(target) if target else None
                return t is not None and m.current(who, t.ref) and t.code == s.filter_value
            return True

        expected = {
            r.ref
            for r in m.res.values()
            if r.res_type == s.res_type and m.current(who, r.ref) and in_scope(r) and passes(r)
        }
        expected_inc: set[str] = set()
        if include:
            param = include[2]
            expected_inc = {t for ref in expected for t in m.res[ref].links.get(param, []) if m.current(who, t)}
        if revinclude:
            _, _, param, source_type = revinclude
            expected_inc = {
                r.ref
                for r in m.res.values()
                if r.res_type == source_type and m.current(who, r.ref) and set(r.links.get(param, [])) & expected
            }
        expected_inc -= expected

        if s.post:
            headers = {**self.headers(person), "content-type": "application/x-www-form-urlencoded"}
            form = dict(pairs)
            r = self.send(
                what,
                lambda: self.env.client.post(f"/fhir/{s.res_type}/_search", data=form, headers=headers),
                named=named,
            )
        else:
            r = self.send(
                what,
                lambda: self.env.client.get(f"/fhir/{s.res_type}", params=pairs, headers=self.headers(person)),
                named=named,
            )
        if refused:
            if r.status_code != 403:
                self.check.fail(WrongStatus, f"{what} by {self.label}: HTTP {r.status_code}, expected 403")
                self.compare(what, r, set(), set())
            return
        if r.status_code != 200:
            self.check.fail(WrongStatus, f"{what} by {self.label}: HTTP {r.status_code}, expected 200: {r.text[:300]}")
            return
        bundle = r.json()
        if s.shape == "count":
            total = bundle.get("total")
            if total != len(expected):
                kind = TotalLeak if isinstance(total, int) and total > len(expected) else WrongTotal
                self.check.fail(kind, f"{what} by {self.label}: _summary=count total {total}, {len(expected)} visible")
            self.compare(what, r, set(), set())
            return
        if s.shape in ("plain", "total", "include", "revinclude") or "total" in bundle:
            total = bundle.get("total")
            if total is not None and total != len(expected):
                kind = TotalLeak if total > len(expected) else WrongTotal
                self.check.fail(kind, f"{what} by {self.label}: total {total}, {len(expected)} visible")
            if s.shape == "total" and total is None:
                self.check.fail(WrongTotal, f"{what} by {self.label}: _total=accurate gave no total")
        if s.shape != "page":
            self.compare(what, r, expected, expected_inc)
            if next_url(bundle):
                self.check.fail(BadPaging, f"{what} by {self.label}: a next link on a search that fits one page")
        else:
            self.pages(what, bundle, person, named, s.page_size, expected)
        if who.kind == "practitioner" and s.scope == "person" and s.scope_person < n:
            want = m.withheld_codes(who, s.scope_person)
            got = {
                c.get("code")
                for e in bundle.get("entry", [])
                if (e.get("resource") or {}).get("resourceType") == "OperationOutcome"
                for i in e["resource"].get("issue", [])
                for c in (i.get("details") or {}).get("coding", [])
                if c.get("system") == PVK_SYSTEM
            }
            if bool(got) != bool(want) or not got <= want:
                self.check.fail(
                    WrongOutcome,
                    f"{what} by {self.label}: PvkOutcome {sorted(got)}, withheld from this practitioner:"
                    f" {sorted(want) or 'nothing'}",
                )

    def pages(
        self, what: str, first: dict[str, Any], person: int | None, named: frozenset[str], size: int, expected: set[str]
    ) -> None:
        seen: list[str] = []
        bundle = first
        for page in itertools.count():
            matches = [_entry_ref(e) for e in bundle.get("entry", []) if e.get("search", {}).get("mode") == "match"]
            if len(matches) > size:
                self.check.fail(BadPaging, f"{what} by {self.label}: page {page} has {len(matches)} > {size} matches")
            seen += [x for x in matches if x]
            url = next_url(bundle)
            if url is None:
                break
            if page > 30:
                self.check.fail(BadPaging, f"{what} by {self.label}: more than 30 pages")
                break
            # A PPS client sends the same headers (person-id included) with every request.
            r = self.send(
                f"{what} page {page + 1}",
                lambda url=url: self.env.client.get(url, headers=self.headers(person)),
                named=named,
            )
            if r.status_code != 200:
                self.check.fail(
                    WrongStatus, f"{what} page {page + 1} by {self.label}: HTTP {r.status_code}: {r.text[:300]}"
                )
                return
            bundle = r.json()
            total = bundle.get("total")
            if total is not None and total != len(expected):
                self.check.fail(
                    TotalLeak if total > len(expected) else WrongTotal,
                    f"{what} page {page + 1} by {self.label}: total {total}, {len(expected)} visible",
                )
        if len(seen) != len(set(seen)):
            self.check.fail(
                BadPaging, f"{what} by {self.label}: pages repeat {sorted(x for x in seen if seen.count(x) > 1)}"
            )
        got = set(seen)
        if got - expected:
            self.check.shown(
                Leak, "search", got - expected, f"{what} by {self.label}: pages show {sorted(got - expected)}"
            )
        if expected - got:
            self.check.shown(
                Missing, "search", expected - got, f"{what} by {self.label}: pages lack {sorted(expected - got)}"
            )
        total = first.get("total")
        if total is not None and total != len(expected):
            self.check.fail(
                TotalLeak if total > len(expected) else WrongTotal,
                f"{what} by {self.label}: first page total {total}, {len(expected)} visible",
            )

    def compare(self, what: str, r: Any, expected: set[str], expected_inc: set[str]) -> None:
        try:
            body = r.json()
        except ValueError:
            return
        entries = body.get("entry", []) if body.get("resourceType") == "Bundle" else []
        got = {x for e in entries if e.get("search", {}).get("mode") == "match" and (x := _entry_ref(e))}
        inc = {x for e in entries if e.get("search", {}).get("mode") == "include" and (x := _entry_ref(e))}
        if got - expected:
            self.check.shown(
                Leak, "search", got - expected, f"{what} by {self.label}: matches {sorted(got - expected)}"
            )
        if inc - expected_inc - expected:
            extra = inc - expected_inc - expected
            self.check.shown(Leak, "search", extra, f"{what} by {self.label}: includes {sorted(extra)}")
        if expected - got:
            self.check.shown(
                Missing, "search", expected - got, f"{what} by {self.label}: matches lack {sorted(expected - got)}"
            )
        if expected_inc - inc:
            lack = expected_inc - inc
            self.check.shown(Missing, "search", lack, f"{what} by {self.label}: includes lack {sorted(lack)}")

    # -- reads and history ------------------------------------------------------------------------------------
    def read(self, q: Read) -> None:
        m, who = self.model, self.who
        ref = m.order[q.target] if q.target < len(m.order) else f"{q.res_type}/finnes-ikke"
        res = m.res.get(ref)
        sees = m.sees(who, ref)
        if q.path == "audit-log":
            self.audit_log()
            return
        if q.path == "read":
            want = 404 if not sees else (410 if res is not None and res.deleted else 200)
            r = self.send(f"GET {ref}", lambda: self.env.client.get(f"/fhir/{ref}", headers=self.headers()), ref)
            self.status(f"GET {ref}", ref, r, want)
            return
        if q.path == "vread":
            versions = self.versions.get(ref, {})
            v = q.version if q.version <= max(versions, default=0) + 1 else 1
            url = f"/fhir/{ref}/_history/{v}"
            want = 404 if not sees or v not in versions else (410 if versions[v] else 200)
            r = self.send(f"GET {ref}/_history/{v}", lambda: self.env.client.get(url, headers=self.headers()), ref)
            self.status(f"GET {ref}/_history/{v}", ref, r, want)
            return
        if q.path == "history-instance":
            url, refs = f"/fhir/{ref}/_history", {ref}
        elif q.path == "history-type":
            url, refs = f"/fhir/{q.res_type}/_history", {x for x in m.res if x.startswith(q.res_type + "/")}
        else:
            url, refs = "/fhir/_history", set(m.res)
        expected = {(x, v) for x in refs if m.sees(who, x) for v in self.versions.get(x, {})}
        params = {"_count": str(q.page_size)} if q.page_size else None
        what = f"GET {url} {params or ''}"
        r = self.send(what, lambda: self.env.client.get(url, params=params, headers=self.headers()))
        seen: list[tuple[str, int]] = []
        for page in itertools.count():
            if r.status_code != 200:
                if not (r.status_code == 404 and q.path == "history-instance" and not expected):
                    self.check.fail(WrongStatus, f"{what} by {self.label}: HTTP {r.status_code}: {r.text[:300]}")
                return
            bundle = r.json()
            entries = bundle.get("entry", [])
            if q.page_size and len(entries) > q.page_size:
                self.check.fail(BadPaging, f"{what} by {self.label}: {len(entries)} entries on a page of {q.page_size}")
            for e in entries:
                x = _entry_ref(e)
                etag = (e.get("response") or {}).get("etag", "")
                version = int(etag.strip('W/"')) if etag.strip('W/"').isdigit() else -1
                seen.append((x or "?", version))
            nxt = next_url(bundle)
            if nxt is None:
                break
            if page > 60:
                self.check.fail(BadPaging, f"{what} by {self.label}: more than 60 pages")
                break
            r = self.send(f"{what} page {page + 1}", lambda nxt=nxt: self.env.client.get(nxt, headers=self.headers()))
        got = set(seen)
        if len(seen) != len(got):
            self.check.fail(
                BadPaging, f"{what} by {self.label}: history repeats {sorted(x for x in got if seen.count(x) > 1)}"
            )
        if got - expected:
            self.check.shown(
                Leak, "history", got - expected, f"{what} by {self.label}: shows versions {sorted(got - expected)}"
            )
        if expected - got:
            self.check.shown(
                Missing, "history", expected - got, f"{what} by {self.label}: lacks {sorted(expected - got)}"
            )

    def audit_log(self) -> None:
        """The access log: a citizen reads their own, never a health worker's national id; health
        personnel read none."""
        m, who = self.model, self.who
        own = who.kind == "citizen" and who.person < len(m.spec.patients)
        named = frozenset({m.patient_id(who.person)}) if own else frozenset()
        what = "GET /fhir/AuditEvent"
        r = self.send(
            what,
            lambda: self.env.client.get("/fhir/AuditEvent", params={"_count": "1000"}, headers=self.headers()),
            named=named,
        )
        if who.kind == "practitioner":
            if r.status_code != 403:
                self.check.fail(WrongStatus, f"{what} by {self.label}: HTTP {r.status_code}, expected 403")
            return
        if who.kind != "citizen":
            return
        if r.status_code != 200:
            self.check.fail(WrongStatus, f"{what} by {self.label}: HTTP {r.status_code}: {r.text[:200]}")
            return
        mine = {f"Patient/{m.patient_id(who.person)}"}
        for e in r.json().get("entry", []):
            about = {
                x["what"]["reference"]
                for x in e["resource"].get("entity", [])
                if (x.get("type") or {}).get("code") == "1" and "what" in x
            }
            if about - mine:
                self.check.shown(Leak, "read", {"AuditEvent/x"}, f"{what} by {self.label}: entries about {about}")
        if any(pid in r.text for pid in HP_PIDS):
            self.check.shown(Leak, "read", {"AuditEvent/x"}, f"{what} by {self.label}: a health worker's fødselsnummer")

    def status(self, what: str, ref: str, r: Any, want: int) -> None:
        if r.status_code == want:
            return
        message = f"{what} by {self.label}: HTTP {r.status_code}, expected {want}: {r.text[:200]}"
        if r.status_code in (200, 410) and want == 404:
            self.check.shown(Leak, "read", {ref}, message)
        elif r.status_code == 404 and want in (200, 410):
            self.check.shown(Missing, "read", {ref}, message)
        else:
            self.check.fail(WrongStatus, message)


def _entry_ref(e: dict[str, Any]) -> str | None:
    res = e.get("resource")
    if isinstance(res, dict) and res.get("resourceType") and res.get("id"):
        return f"{res['resourceType']}/{res['id']}"
    full = e.get("fullUrl")
    if isinstance(full, str) and "/fhir/" in full:
        return full.split("/fhir/", 1)[1]
    return None


def next_url(bundle: dict[str, Any]) -> str | None:
    for link in bundle.get("link", []):
        if link.get("relation") == "next":
            return str(link["url"])
    return None


# -- environments --------------------------------------------------------------------------------------------------


def _scratch() -> Path:
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix="kjerne-prop-", dir=base))


@pytest.fixture(scope="module")
def sqlite_env(sqlite_template: Path) -> Iterator[Env]:
    root = _scratch()
    template = root / "template.db"
    shutil.copy(sqlite_template, template)
    db = root / "world.db"
    shutil.copy(template, db)
    url = f"sqlite:///{db}"
    engine = make_engine(url)
    app_settings = Settings(db_url=url, dev=True, var_dir=root, base_url="http://testserver")

    def reset() -> None:
        engine.dispose()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        shutil.copy(template, db)

    with TestClient(create_app(app_settings, engine=engine), raise_server_exceptions=False) as client:
        yield Env(client, engine, token_for(dev_issuer(app_settings)), reset)
    engine.dispose()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres_env(pg_cluster: Any) -> Iterator[Env]:
    root = _scratch()
    url = pg_cluster.create_database("p_" + uuid.uuid4().hex[:12], template="kjerne_template")
    engine = make_engine(url, pool_size=4)
    app_settings = Settings(db_url=url, dev=True, var_dir=root, base_url="http://testserver")
    tables = (
        "resource, resource_history, idx_token, idx_string, idx_date, idx_reference, idx_quantity, idx_number,"
        " idx_uri, audit_event"
    )

    def reset() -> None:
        with engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY"))
            conn.execute(text("UPDATE audit_head SET seq = 0, hash = :h"), {"h": "0" * 64})

    with TestClient(create_app(app_settings, engine=engine), raise_server_exceptions=False) as client:
        yield Env(client, engine, token_for(dev_issuer(app_settings)), reset)
    engine.dispose()
    shutil.rmtree(root, ignore_errors=True)


# -- the properties -------------------------------------------------------------------------------------------------


@st.composite
def search_scenarios(draw: st.DrawFn) -> tuple[WorldSpec, list[tuple[Who, Search]]]:
    spec = draw(worlds())
    n = resource_count(spec)
    requests = draw(st.lists(st.tuples(callers(spec), searches(spec, n)), min_size=1, max_size=4))
    return spec, requests


@st.composite
def read_scenarios(draw: st.DrawFn) -> tuple[WorldSpec, list[tuple[Who, Read]]]:
    spec = draw(worlds())
    n = resource_count(spec)
    requests = draw(st.lists(st.tuples(callers(spec), reads(n)), min_size=1, max_size=4))
    return spec, requests


def _run(env: Env, spec: WorldSpec, requests: list[tuple[Who, Any]]) -> None:
    env.reset()
    model = seed(env.engine, spec)
    versions = stored_versions(env.engine)
    note(f"resources: {model.order}")
    check = Checker()
    for who, q in requests:
        run = Run(env, model, versions, who, check)
        if isinstance(q, Search):
            run.search(q)
        else:
            run.read(q)
    check.raise_first()


@settings(PROFILE)
@given(scenario=search_scenarios())
def test_searches_show_exactly_what_the_model_allows(sqlite_env: Env, scenario: Any) -> None:
    _run(sqlite_env, *scenario)


@settings(PROFILE)
@given(scenario=read_scenarios())
def test_reads_and_history_show_exactly_what_the_model_allows(sqlite_env: Env, scenario: Any) -> None:
    _run(sqlite_env, *scenario)


@pytest.mark.postgres
@settings(PROFILE, max_examples=max(20, PROFILE.max_examples // PG_SHARE))
@given(scenario=st.one_of(search_scenarios(), read_scenarios()))
def test_every_read_path_on_postgresql(postgres_env: Env, scenario: Any) -> None:
    _run(postgres_env, *scenario)
