"""Builders and request helpers for the access-engine tests.

The constants below are written out rather than imported from ``kjerne.access``: the tests state
what the API promises (code systems, header names, outcome codes), so a change in the server that
alters them shows up as a failing test instead of silently moving the test along with it.

``World`` seeds data the way the platform receives it (a producer's system token through the HTTP
API) and hands out callers (citizen, health personnel, producer) that talk to the same app.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Engine, text
from starlette.testclient import TestClient

from kjerne.access.devissuer import DevIssuer
from kjerne.fhir.identifiers import make_orgnr, make_synthetic_fnr

# -- identifier systems and code systems the API speaks ----------------------------------------------

FNR_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.1"
HPR_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.4"
ORG_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.101"
RESTRICTION_SYSTEM = "http://kjerne.no/fhir/CodeSystem/restriction"
SERVICE_SYSTEM = "http://kjerne.no/fhir/CodeSystem/service"
PVK_SYSTEM = "http://nhn.no/fhir/nilar/CodeSystem/PvkOutcome"
OVERRIDE_EXT = "http://kjerne.no/fhir/StructureDefinition/access-override"
PURPOSE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
ACCESS_BASIS_SYSTEM = "http://kjerne.no/fhir/CodeSystem/access-basis"
CONSENT_SCOPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/consentscope"
V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"

RESERVASJON = "reservasjon"
SPERRING = "sperring"
BLOKKERING = "blokkering"
NEKTING = "nekting"
UTSATT = "utsatt-innsyn"
SKJERMING = "skjerming"
CITIZEN_KINDS = (RESERVASJON, SPERRING, BLOKKERING)
PRACTITIONER_KINDS = (NEKTING, UTSATT, SKJERMING)

PROVESVAR = "provesvar"
MALEDATA = "maledata"

ACCESS_BASES = ("UNNTAK", "SAMTYKKE", "FORHOYET_SAMTYKKE", "AKUTT", "FORHOYET_AKUTT")
OVERRIDING_BASES = ("FORHOYET_SAMTYKKE", "FORHOYET_AKUTT")
PURPOSES = ("TREAT", "ETREAT", "COC", "BTG")
OVERRIDING_PURPOSES = ("ETREAT", "BTG")

LAB_ORG = "987654325"  # the producer most tests deliver data as
BASE = "http://testserver/fhir"


# -- synthetic identities --------------------------------------------------------------------------------


def persons(n: int, born: dt.date = dt.date(1975, 5, 17), start: int = 100) -> list[str]:
    """``n`` distinct synthetic fødselsnummer born on ``born`` (individual numbers that give check digit
    10 are skipped)."""
    out: list[str] = []
    for individ in itertools.count(start):
        if len(out) == n:
            return out
        fnr = make_synthetic_fnr(born, individ)
        if fnr is not None:
            out.append(fnr)
    raise AssertionError("unreachable")


def organisations(n: int, start: int = 91234560) -> list[str]:
    out: list[str] = []
    for prefix in itertools.count(start):
        if len(out) == n:
            return out
        orgnr = make_orgnr(prefix)
        if orgnr is not None and orgnr != LAB_ORG:
            out.append(orgnr)
    raise AssertionError("unreachable")


def hpr_numbers(n: int, start: int = 9144001) -> list[str]:
    return [str(start + 7 * i) for i in range(n)]


# -- resource builders ----------------------------------------------------------------------------------


def patient_ref(fnr: str) -> dict[str, Any]:
    """A reference to a person by national id only: the server resolves (or creates) the Patient."""
    return {"identifier": {"system": FNR_SYSTEM, "value": fnr}}


def patient(fnr: str, family: str = "Testesen", given: str = "Kari") -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": FNR_SYSTEM, "value": fnr}],
        "name": [{"family": family, "given": [given]}],
    }


def lab_result(
    subject: dict[str, Any] | str, code: str = "718-7", value: float = 13.2, unit: str = "g/dL"
) -> dict[str, Any]:
    """A laboratory result (service prøvesvar)."""
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": OBS_CATEGORY, "code": "laboratory"}]}],
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": subject} if isinstance(subject, str) else subject,
        "effectiveDateTime": "2025-03-04T08:30:00+01:00",
        "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
    }


def measurement(
    subject: dict[str, Any] | str, code: str = "8867-4", value: float = 64.0, *, fnr: str | None = None
) -> dict[str, Any]:
    """A home measurement (service måledata): heart rate by default. Måledata names the person by
    national id (``fnr``), beside or instead of the literal reference."""
    if isinstance(subject, str):
        subject = {"reference": subject}
    if fnr:
        subject = {**subject, "identifier": {"system": FNR_SYSTEM, "value": fnr}}
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": OBS_CATEGORY, "code": "vital-signs"}]}],
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": subject,
        "effectiveDateTime": "2025-03-04T07:00:00+01:00",
        "valueQuantity": {"value": value, "unit": "/min", "system": UCUM, "code": "/min"},
    }


def report(
    subject: dict[str, Any] | str,
    results: Sequence[str],
    *,
    category: str = "LAB",
    code: str = "58410-2",
    issued: str | None = None,
) -> dict[str, Any]:
    """A DiagnosticReport over ``results`` (``Observation/id``). ``category`` is a v2-0074 code: PAT and
    RAD reports get a default utsatt innsyn counted from ``issued``."""
    res: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "status": "final",
        "category": [{"coding": [{"system": V2_0074, "code": category}]}],
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": subject} if isinstance(subject, str) else subject,
        "result": [{"reference": r} for r in results],
    }
    if issued:
        res["issued"] = issued
    return res


def instant(delta: dt.timedelta = dt.timedelta(0)) -> str:
    return (dt.datetime.now(dt.UTC) + delta).isoformat(timespec="seconds").replace("+00:00", "Z")


def consent(
    kind: str,
    patient_id: str,
    *,
    services: Iterable[str] = (),
    hprs: Iterable[str] = (),
    data: Iterable[str] = (),
    end: str | None = None,
    status: str = "active",
) -> dict[str, Any]:
    """A restriction as the API takes it: Consent with category ``kind`` for ``Patient/patient_id``.

    ``services`` limits a citizen restriction (empty: every service), ``hprs`` names health personnel,
    ``data`` names the report a health-personnel restriction is about, ``end`` is provision.period.end
    (for utsatt innsyn: the release time)."""
    provision: dict[str, Any] = {"type": "deny"}
    actors = [
        {
            "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleClass", "code": "PROV"}]},
            "reference": {"identifier": {"system": HPR_SYSTEM, "value": h}},
        }
        for h in hprs
    ]
    if actors:
        provision["actor"] = actors
    codes = [{"coding": [{"system": SERVICE_SYSTEM, "code": s}]} for s in services]
    if codes:
        provision["code"] = codes
    items = [{"meaning": "instance", "reference": {"reference": d}} for d in data]
    if items:
        provision["data"] = items
    if end:
        provision["period"] = {"end": end}
    return {
        "resourceType": "Consent",
        "status": status,
        "scope": {"coding": [{"system": CONSENT_SCOPE_SYSTEM, "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": RESTRICTION_SYSTEM, "code": kind}]}],
        "patient": {"reference": f"Patient/{patient_id}"},
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT"}]},
        "provision": provision,
    }


# -- reading responses -----------------------------------------------------------------------------------


def entries(bundle: dict[str, Any], mode: str | None = None) -> list[dict[str, Any]]:
    return [
        e["resource"]
        for e in bundle.get("entry", [])
        if "resource" in e and (mode is None or e.get("search", {}).get("mode") == mode)
    ]


def refs(resources: Iterable[dict[str, Any]]) -> set[str]:
    return {f"{r['resourceType']}/{r['id']}" for r in resources if r.get("resourceType") != "OperationOutcome"}


def pvk_codes(body: dict[str, Any]) -> set[str]:
    """PvkOutcome codes in an OperationOutcome or in the outcome entries of a bundle."""
    outcomes = [body] if body.get("resourceType") == "OperationOutcome" else entries(body)
    return {
        c.get("code")
        for o in outcomes
        if o.get("resourceType") == "OperationOutcome"
        for i in o.get("issue", [])
        for c in (i.get("details") or {}).get("coding", [])
        if c.get("system") == PVK_SYSTEM
    }


def security_codes(res: dict[str, Any]) -> set[str]:
    return {c.get("code") for c in (res.get("meta") or {}).get("security", []) if c.get("system") == RESTRICTION_SYSTEM}


def next_link(bundle: dict[str, Any]) -> str | None:
    for link in bundle.get("link", []):
        if link.get("relation") == "next":
            return str(link["url"])
    return None


def override_flag(event: dict[str, Any]) -> bool | None:
    for ext in event.get("extension", []):
        if ext.get("url") == OVERRIDE_EXT:
            return bool(ext.get("valueBoolean"))
    return None


def event_patients(event: dict[str, Any]) -> set[str]:
    return {
        e["what"]["reference"].removeprefix("Patient/")
        for e in event.get("entity", [])
        if (e.get("type") or {}).get("code") == "1" and "what" in e
    }


def event_codes(event: dict[str, Any], system: str) -> set[str]:
    return {
        c.get("code") for p in event.get("purposeOfEvent", []) for c in p.get("coding", []) if c.get("system") == system
    }


# -- the database under the app -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuditRow:
    seq: int
    patient: str | None
    agent_kind: str
    agent_hpr: str | None
    action: str
    outcome: str
    override: bool
    raw: bytes

    @property
    def event(self) -> dict[str, Any]:
        return dict(orjson.loads(self.raw))


def audit_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM audit_event")).scalar_one())


def audit_rows(engine: Engine, after_seq: int = 0) -> list[AuditRow]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT seq, patient, agent_kind, agent_hpr, action, outcome, override, content "
                "FROM audit_event WHERE seq > :s ORDER BY seq"
            ),
            {"s": after_seq},
        ).all()
    return [AuditRow(r[0], r[1], r[2], r[3], r[4], r[5], bool(r[6]), bytes(r[7])) for r in rows]


def last_seq(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT coalesce(max(seq), 0) FROM audit_event")).scalar_one())


# -- callers -----------------------------------------------------------------------------------------------


@dataclass
class Caller:
    """One authenticated caller. ``person_id`` is sent as the `person-id` header on searches unless a
    call says otherwise; ``basis`` as `nhn-access-basis` on every request."""

    client: TestClient
    token: str
    kind: str
    person_id: str | None = None
    basis: str | None = None
    hpr: str | None = None
    pid: str | None = None

    def headers(self, person_id: str | None = None, **extra: str) -> dict[str, str]:
        h = {"authorization": f"Bearer {self.token}"}
        if self.basis:
            h["nhn-access-basis"] = self.basis
        if person_id:
            h["person-id"] = person_id
        h.update(extra)
        return h

    def get(self, path: str, params: Any = None, *, person_id: str | None = None, **extra: str) -> Any:
        return self.client.get(path, params=params, headers=self.headers(person_id, **extra))

    def search(
        self,
        res_type: str,
        params: Any = None,
        *,
        person_id: str | bool | None = True,
        post: bool = False,
        status: int = 200,
    ) -> dict[str, Any]:
        pid = self.person_id if person_id is True else (person_id or None)
        headers = self.headers(pid)
        if post:
            headers["content-type"] = "application/x-www-form-urlencoded"
            r = self.client.post(f"/fhir/{res_type}/_search", data=params or {}, headers=headers)
        else:
            r = self.client.get(f"/fhir/{res_type}", params=params, headers=headers)
        assert r.status_code == status, (r.status_code, r.text)
        return dict(r.json())

    def search_refs(self, res_type: str, params: Any = None, **kw: Any) -> set[str]:
        return refs(entries(self.search(res_type, params, **kw)))

    def read(self, ref: str) -> Any:
        return self.client.get(f"/fhir/{ref}", headers=self.headers())

    def create(self, res: dict[str, Any], **extra: str) -> Any:
        return self.client.post(f"/fhir/{res['resourceType']}", json=res, headers=self.headers(**extra))

    def put(self, res: dict[str, Any]) -> Any:
        return self.client.put(f"/fhir/{res['resourceType']}/{res['id']}", json=res, headers=self.headers())

    def delete(self, ref: str) -> Any:
        return self.client.delete(f"/fhir/{ref}", headers=self.headers())

    def post_bundle(self, bundle: dict[str, Any]) -> Any:
        return self.client.post("/fhir", json=bundle, headers=self.headers())

    def audit_log(self, params: Any = None) -> Any:
        return self.client.get("/fhir/AuditEvent", params=params, headers=self.headers())


@dataclass
class Report:
    id: str
    results: list[str]
    patient: str

    @property
    def ref(self) -> str:
        return f"DiagnosticReport/{self.id}"

    @property
    def result_refs(self) -> list[str]:
        return [f"Observation/{i}" for i in self.results]

    @property
    def all_refs(self) -> set[str]:
        return {self.ref, *self.result_refs}


@dataclass
class Api:
    client: TestClient
    dev: DevIssuer
    engine: Engine
    db: str  # sqlite | postgres


@dataclass
class World:
    """Patients, health personnel and data on one app. Data arrives from a producer (a lab, by default
    organisation ``LAB_ORG``) through the API, as in production."""

    api: Api
    patients: dict[str, str] = field(default_factory=dict)  # fnr → Patient id
    _hp_pids: Iterator[str] = field(default_factory=lambda: iter(persons(200, born=dt.date(1966, 2, 8), start=10)))

    @property
    def client(self) -> TestClient:
        return self.api.client

    # callers
    def producer(self, org: str = LAB_ORG, scope: str = "system/*.write") -> Caller:
        return Caller(self.client, self.api.dev.system_token(org=org, scope=scope), "system")

    def citizen(self, fnr: str) -> Caller:
        return Caller(self.client, self.api.dev.citizen_token(fnr), "citizen", person_id=fnr, pid=fnr)

    def practitioner(
        self,
        hpr: str,
        patients: Sequence[str],
        *,
        purpose: str = "TREAT",
        basis: str | None = None,
        person_id: str | None = None,
        org: str = "974760673",
        name: str | None = None,
        pid: str | None = None,
    ) -> Caller:
        pid = pid or next(self._hp_pids)
        token = self.api.dev.practitioner_token(
            hpr=hpr,
            pid=pid,
            org=org,
            purpose=purpose,
            patients=list(patients),
            name=name or f"Lege {hpr}",
            org_name="Testbyen legesenter",
        )
        return Caller(
            self.client,
            token,
            "practitioner",
            person_id=person_id or (patients[0] if patients else None),
            basis=basis,
            hpr=hpr,
            pid=pid,
        )

    # data
    def patient(self, fnr: str) -> str:
        if fnr not in self.patients:
            r = self.producer().create(patient(fnr))
            assert r.status_code == 201, r.text
            self.patients[fnr] = r.json()["id"]
        return self.patients[fnr]

    def observation(self, res: dict[str, Any], by: Caller | None = None) -> str:
        r = (by or self.producer()).create(res)
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    def lab_report(
        self,
        fnr: str,
        n_results: int = 2,
        *,
        category: str = "LAB",
        issued: str | None = None,
        by: Caller | None = None,
    ) -> Report:
        pid = self.patient(fnr)
        by = by or self.producer()
        results = [
            self.observation(lab_result(f"Patient/{pid}", code=code, value=10.0 + i), by)
            for i, code in zip(range(n_results), itertools.cycle(("718-7", "2345-7", "2160-0")), strict=False)
        ]
        body = report(f"Patient/{pid}", [f"Observation/{i}" for i in results], category=category, issued=issued)
        r = by.create(body)
        assert r.status_code == 201, r.text
        return Report(r.json()["id"], results, pid)

    def measurement(self, fnr: str, value: float = 64.0, by: Caller | None = None) -> str:
        pid = self.patient(fnr)
        return self.observation(measurement(f"Patient/{pid}", value=value, fnr=fnr), by)

    def audit_count(self) -> int:
        return audit_count(self.api.engine)

    def audit_rows(self, after_seq: int = 0) -> list[AuditRow]:
        return audit_rows(self.api.engine, after_seq)

    def last_seq(self) -> int:
        return last_seq(self.api.engine)
