"""The one access decision point. Built once per request from the verified principal and the request's
declared basis; compiles its decision into SQL predicates that the store adds to every query, so
totals, counts and paging never reveal what is hidden."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, and_, false, not_, or_, select

from kjerne.access import restrictions as r
from kjerne.access.context import AccessRecord
from kjerne.access.principal import Principal
from kjerne.access.scopes import Action
from kjerne.audit.events import Actor
from kjerne.audit.log import append
from kjerne.fhir.identifiers import OID_HPR
from kjerne.fhir.outcome import FhirError, Issue
from kjerne.services.classify import SERVICE_SYSTEM
from kjerne.store.clock import now_us
from kjerne.store.identity import find_patient
from kjerne.store.schema import idx_date, idx_reference, idx_token, idx_uri

PVK_SYSTEM = "http://nhn.no/fhir/nilar/CodeSystem/PvkOutcome"
PRODUCER_SOURCE = "urn:oid:2.16.578.1.12.4.1.4.101:"  # meta.source = this + organisation number
# Resources outside any patient's compartment that every authenticated person may read.
DIRECTORY_TYPES = (
    "Organization",
    "Practitioner",
    "PractitionerRole",
    "Location",
    "HealthcareService",
    "Endpoint",
    "Device",
    "Medication",
    "Substance",
    "CodeSystem",
    "ValueSet",
    "ConceptMap",
    "StructureDefinition",
)
_ACTIONS: dict[str, Action] = {"create": "create", "update": "update", "delete": "delete", "transaction": "write"}


@dataclass(slots=True)
class RequestInfo:
    """What a request declares beyond its token."""

    access_basis: str | None = None  # nhn-access-basis header
    person_id: str | None = None  # person-id header: the patient a search is about
    reason: str | None = None  # the written reason for emergency access
    channel: str = "api"


@dataclass(slots=True)
class PatientView:
    """What one practitioner may see of one attested patient."""

    patient: str
    hidden: bool = False  # nothing but the Patient resource
    hidden_services: set[str] = field(default_factory=set)  # "*" = every service
    override: bool = False
    withheld: str | None = None  # Specific | General | Reservation
    consent_kinds: set[str] | None = None  # restriction kinds of the patient's Consents; None: not known
    shielded: bool = True  # whether any of the patient's data may be labelled skjerming


def _own_patient_id(conn: Connection, fnr: str) -> dict[str, str]:
    from kjerne.fhir.identifiers import OID_DNR, OID_FNR, is_dnr

    pid = find_patient(conn, OID_DNR if is_dnr(fnr) else OID_FNR, fnr)
    return {fnr: pid} if pid else {}


class AccessPolicy:
    def __init__(self, engine: Engine, principal: Principal, info: RequestInfo | None = None) -> None:
        self.principal = principal
        self.info = info or RequestInfo()
        self.now = dt.datetime.now(dt.UTC)
        self.engine = engine
        self._views: dict[str, PatientView] = {}
        self._own_patients: list[str] = []
        self._patient_by_fnr: dict[str, str] = {}
        self._loaded = False
        self.basis = self._basis()
        self.recorded = 0  # audit entries written for this request
        self.named: set[str] = set()  # patients the request asked about, whether or not anything was found

    # -- whom the caller may see, loaded once per request ---------------------------------------
    def bind(self, conn: Connection) -> None:
        """Load the caller's patients and their restrictions on the request's own connection, at its
        first transaction, rather than on a connection of their own."""
        if self._loaded:
            return
        p = self.principal
        if p.kind == "citizen" and p.pid:
            self._patient_by_fnr = _own_patient_id(conn, p.pid)
            self._own_patients = sorted(set(self._patient_by_fnr.values()))
        elif p.kind == "practitioner" and p.attestation is not None:
            from kjerne.fhir.identifiers import OID_DNR, OID_FNR, is_dnr
            from kjerne.store.restriction_state import patients_and_states

            fnrs = list(p.attestation.patients)
            by_ident, states = patients_and_states(
                conn, [(OID_DNR if is_dnr(fnr) else OID_FNR, fnr) for fnr in fnrs], self.now
            )
            self._patient_by_fnr = {fnr: pid for (_, fnr), pid in by_ident.items()}
            for pid in sorted(states):
                state = states[pid]
                view = self._view(pid, state.restrictions)
                view.consent_kinds, view.shielded = state.consent_kinds, state.shielded
                self._views[pid] = view
        self._loaded = True

    def _load(self) -> None:
        if not self._loaded:
            with self.engine.connect() as conn:
                self.bind(conn)
                conn.commit()  # not rollback: psycopg drops its prepared statements on every ROLLBACK

    @property
    def views(self) -> dict[str, PatientView]:
        self._load()
        return self._views

    @property
    def own_patients(self) -> list[str]:
        self._load()
        return self._own_patients

    @property
    def patient_by_fnr(self) -> dict[str, str]:
        self._load()
        return self._patient_by_fnr

    # -- who and why --------------------------------------------------------------------------
    def _basis(self) -> str | None:
        basis = self.info.access_basis
        if basis is not None:
            basis = basis.strip().upper()
            if basis not in r.ACCESS_BASES:
                raise FhirError(400, [Issue("invalid", f"nhn-access-basis must be one of {', '.join(r.ACCESS_BASES)}")])
        return basis

    @property
    def purpose(self) -> str | None:
        att = self.principal.attestation
        return att.purpose_of_use if att else None

    @property
    def emergency(self) -> bool:
        return self.basis in r.EMERGENCY_BASES or self.purpose in ("ETREAT", "BTG")

    @property
    def durable_audit(self) -> bool:
        """Whether a read's audit entry must reach the disk before the answer does: an emergency or
        any other override is never left to the asynchronous commit (see Repository.audit_tx)."""
        return self.emergency or self.may_override_sperring or self.overrode() or self.principal.kind == "system"

    @property
    def may_override_sperring(self) -> bool:
        return self.basis in r.OVERRIDING_BASES or self.purpose in ("ETREAT", "BTG")

    def actor(self) -> Actor:
        p = self.principal
        att = p.attestation
        return Actor(
            kind=p.kind,
            hpr=p.hpr,
            pid=p.pid,
            name=p.name or (att.name if att else None),
            org=(att.legal_entity if att and att.legal_entity else p.org),
            org_name=att.legal_entity_name if att else None,
            point_of_care=(att.point_of_care if att else p.child_org),
            point_of_care_name=att.point_of_care_name if att else None,
            purpose=self.purpose,
            access_basis=self.basis,
            channel=self.info.channel,
        )

    # -- practitioner view of one patient ------------------------------------------------------
    def _view(self, patient: str, restrictions: list[r.PatientRestriction]) -> PatientView:
        view = PatientView(patient)
        hpr = self.principal.hpr
        for res in restrictions:
            services = set(res.services) or {"*"}
            if res.kind == r.BLOKKERING and res.names(hpr):
                view.hidden, view.withheld = True, "Specific"
            elif res.kind == r.RESERVASJON:
                view.hidden_services |= services
                view.withheld = view.withheld or "Reservation"
            elif res.kind == r.SPERRING and (not res.practitioners or res.names(hpr)):
                if self.may_override_sperring:
                    view.override = True
                else:
                    view.hidden_services |= services
                    if view.withheld != "Specific":
                        view.withheld = "Specific" if res.names(hpr) else "General"
        return view

    # -- the read decision, as SQL ---------------------------------------------------------------
    def check_read(self, res_type: str, action: str) -> None:
        """403 when the token's scopes do not allow reading this type at all."""
        wanted: Action = "search" if action == "search" else "read"
        if res_type != "*" and not self.principal.can(res_type, wanted) and not self.principal.can(res_type, "read"):
            raise FhirError.of(403, "forbidden", f"the token's scopes do not allow reading {res_type}")

    def read_filter(self, res_type: str, table: Any) -> ColumnElement[bool] | None:
        """Callers pass the type of the rows `table` holds ("*" when they may be of any type)."""
        kind = self.principal.kind
        if res_type != "*" and not self.principal.can(res_type, "read"):
            return false()
        directory = _directory(res_type, table)
        if kind == "system":
            return false()
        if kind == "citizen":
            if not self.own_patients:
                return directory if directory is not None else false()
            own = _patient_in(table, self.own_patients)
            hidden = or_(
                table.c.rid.in_(self._labelled(self.own_patients, r.NEKTING)),
                table.c.rid.in_(self._unreleased(self.own_patients)),
                table.c.rid.in_(self._consents(self.own_patients, (r.NEKTING, r.UTSATT))),
            )
            readable = and_(own, not_(hidden))
            return readable if directory is None else or_(directory, readable)
        # practitioner
        parts: list[ColumnElement[bool]] = [] if directory is None else [directory]
        full = [v.patient for v in self.views.values() if not v.hidden and not v.hidden_services]
        if full:
            parts.append(_patient_in(table, full))
        for v in self.views.values():
            if v.hidden:
                parts.append(and_(table.c.patient == v.patient, table.c.res_type == "Patient"))
            elif v.hidden_services:
                svc = self._service_rows(v.patient, v.hidden_services)
                parts.append(and_(table.c.patient == v.patient, not_(table.c.rid.in_(svc))))
        if not parts:
            return false()
        visible = [v for v in self.views.values() if not v.hidden]
        # Each exclusion below is left out for the patients it cannot touch (restriction_state), so an
        # unrestricted patient's read is a plain patient filter.
        shielded = [v.patient for v in visible if v.shielded]
        with_citizen_consents = [v.patient for v in visible if _may_have(v, r.CITIZEN_SET)]
        with_skjerming = [v.patient for v in visible if _may_have(v, (r.SKJERMING,))]
        exclusions: list[ColumnElement[bool]] = []
        if shielded:
            mine = select(idx_token.c.rid).where(
                and_(
                    idx_token.c.patient.in_(shielded),  # keeps the lookup on the patient index
                    idx_token.c.param == "_security",
                    idx_token.c.system == OID_HPR,
                    idx_token.c.code == (self.principal.hpr or ""),
                )
            )
            labelled = self._labelled(shielded, r.SKJERMING)
            exclusions.append(not_(and_(table.c.rid.in_(labelled), not_(table.c.rid.in_(mine)))))
        if with_citizen_consents:
            exclusions.append(not_(table.c.rid.in_(self._consents(with_citizen_consents, r.CITIZEN_SET))))
        if with_skjerming:
            # A skjerming Consent names the shielded report: only those who set it may read it.
            exclusions.append(
                not_(
                    and_(
                        table.c.rid.in_(self._consents(with_skjerming, (r.SKJERMING,))),
                        not_(table.c.rid.in_(self._consents_by(self.principal.hpr or ""))),
                    )
                )
            )
        cond = or_(*parts)
        return and_(cond, *exclusions) if exclusions else cond

    def awaiting_release_filter(self, table: Any) -> ColumnElement[bool]:
        """A citizen's own reports under utsatt innsyn that are not yet released (and not under
        nekting): listed as 'awaiting release' with no content. Nobody else gets such a list."""
        if self.principal.kind != "citizen" or not self.own_patients:
            return false()
        return and_(
            table.c.patient.in_(self.own_patients),
            table.c.rid.in_(self._unreleased(self.own_patients)),
            not_(table.c.rid.in_(self._labelled(self.own_patients, r.NEKTING))),
        )

    @staticmethod
    def _labelled(patients: list[str], kind: str) -> Any:
        t = idx_token.c
        return select(t.rid).where(
            and_(t.patient.in_(patients), t.param == "_security", t.system == r.RESTRICTION_SYSTEM, t.code == kind)
        )

    def _unreleased(self, patients: list[str]) -> Any:
        t = idx_token.c
        released = select(idx_date.c.rid).where(
            and_(idx_date.c.patient.in_(patients), idx_date.c.param == "_release", idx_date.c.high <= now_us())
        )
        return select(t.rid).where(
            and_(
                t.patient.in_(patients),
                t.param == "_security",
                t.system == r.RESTRICTION_SYSTEM,
                t.code == r.UTSATT,
                not_(t.rid.in_(released)),
            )
        )

    @staticmethod
    def _consents(patients: list[str], kinds: tuple[str, ...]) -> Any:
        t = idx_token.c
        return select(t.rid).where(
            and_(
                t.patient.in_(patients),
                t.res_type == "Consent",
                t.param == "category",
                t.system == r.RESTRICTION_SYSTEM,
                t.code.in_(kinds),
            )
        )

    @staticmethod
    def _consents_by(hpr: str) -> Any:
        ref = idx_reference.c
        return select(ref.rid).where(
            and_(ref.res_type == "Consent", ref.param == "actor", ref.ident_system == OID_HPR, ref.ident_value == hpr)
        )

    @staticmethod
    def _service_rows(patient: str, services: set[str]) -> Any:
        t = idx_token.c
        cond = [t.patient == patient, t.param == "_tag", t.system == SERVICE_SYSTEM]
        if "*" not in services:
            cond.append(t.code.in_(sorted(services)))
        return select(t.rid).where(and_(*cond))

    # -- outcomes ------------------------------------------------------------------------------
    def withheld(self) -> str | None:
        """The strongest reason something was held back from this practitioner, about the patients the
        request named (all attested patients when it named none)."""
        order = {"Reservation": 3, "Specific": 2, "General": 1}
        best = None
        views = [self.views[p] for p in self.named if p in self.views] if self.named else list(self.views.values())
        for v in views:
            if v.withheld and (best is None or order[v.withheld] > order[best]):
                best = v.withheld
        return best

    def overrode(self) -> bool:
        views = [self.views[p] for p in self.named if p in self.views] if self.named else list(self.views.values())
        return any(v.override for v in views)

    def withheld_outcome(self) -> dict[str, Any] | None:
        code = self.withheld()
        if code is None:
            return None
        text = {
            "Reservation": "the patient has reserved against this service; there is no data to show",
            "Specific": "some of the patient's data is withheld from you by a restriction",
            "General": "some of the patient's data is withheld from health personnel by a restriction",
        }[code]
        return {
            "resourceType": "OperationOutcome",
            "issue": [
                {
                    "severity": "information",
                    "code": "suppressed",
                    "details": {"coding": [{"system": PVK_SYSTEM, "code": code}]},
                    "diagnostics": text,
                }
            ],
        }

    def not_visible(self, res_type: str, res_id: str) -> FhirError:
        issue = Issue("not-found", f"{res_type}/{res_id} is not known or not available to you")
        code = self.withheld()
        if code is not None:
            issue = Issue("not-found", issue.diagnostics, details_code=code, details_system=PVK_SYSTEM)
        return FhirError(404, [issue])

    # -- patient scoping -----------------------------------------------------------------------
    def patients_for(self, fnr: str) -> list[str]:
        """Patient ids for a national id the caller names; 403 when it is not theirs to ask for."""
        p = self.principal
        if p.kind == "citizen":
            if fnr != p.pid:
                raise FhirError.of(403, "forbidden", "citizens can only ask for their own data")
        elif p.kind == "practitioner":
            if p.attestation is None or not p.attestation.covers(fnr):
                raise FhirError.of(403, "forbidden", "the patient is not covered by your attestation")
        else:
            raise FhirError.of(403, "forbidden", "this client may not read health data")
        pid = self.patient_by_fnr.get(fnr)
        if pid:
            self.named.add(pid)
        return [pid] if pid else []

    def check_patient_ids(self, ids: list[str]) -> None:
        allowed = set(self.own_patients) | set(self.views)
        if self.principal.kind != "system" and any(i not in allowed for i in ids):
            raise FhirError.of(403, "forbidden", "the patient is not covered by your access")
        self.named.update(ids)

    # -- writes --------------------------------------------------------------------------------
    def check_write(self, action: str, res_type: str, resource: dict[str, Any] | None) -> None:
        p = self.principal
        scope_action = _ACTIONS.get(action, "write")
        if not (p.can(res_type, scope_action) or p.can(res_type, "write")):
            raise FhirError.of(403, "forbidden", f"the token's scopes do not allow {action} of {res_type}")
        if res_type == "AuditEvent":
            raise FhirError.of(403, "forbidden", "the audit log is written by the platform only")
        if p.kind == "system":
            if res_type == "Consent":
                raise FhirError.of(403, "forbidden", "restrictions are set by citizens and health personnel")
            return
        if res_type != "Consent":
            raise FhirError.of(403, "forbidden", f"{p.kind}s may only manage restrictions (Consent)")
        if resource is not None:
            kind = r.consent_category(resource)
            allowed = r.CITIZEN_SET if p.kind == "citizen" else r.PRACTITIONER_SET
            if kind not in allowed:
                raise FhirError.of(
                    403, "forbidden", f"a {p.kind} may set {', '.join(allowed)}, not {kind or 'an unknown kind'}"
                )

    def match_filter(self, res_type: str, table: Any) -> ColumnElement[bool] | None:
        """A producer's conditional writes match only what it delivered itself (so a condition can
        neither reveal nor overwrite another's data); a person's match only what they may read."""
        if self.principal.kind == "system":
            source = PRODUCER_SOURCE + (self.principal.org or self.principal.subject)
            # A scalar subquery, probed by rid for each candidate row. An EXISTS here, under the OR of a
            # many-type look-up, is planned by PostgreSQL as a hashed subplan over every row the
            # producer ever sent: a cost that grows with its whole history.
            delivered_by = (
                select(idx_uri.c.value)
                .where(and_(idx_uri.c.rid == table.c.rid, idx_uri.c.param == "_source"))
                .limit(1)
                .scalar_subquery()
            )
            return delivered_by == source
        return self.read_filter(res_type, table)

    def guard(self, resource: dict[str, Any], existing: Any) -> None:
        p = self.principal
        if p.kind == "system":
            source = PRODUCER_SOURCE + (p.org or p.subject)
            if existing is not None:
                old = (existing.resource().get("meta") or {}).get("source")
                if old and old != source:
                    raise FhirError.of(403, "forbidden", "the resource was delivered by another organisation")
            resource.setdefault("meta", {})["source"] = source
            return
        if resource.get("resourceType") != "Consent":
            return
        patient_ref = ((resource.get("patient") or {}).get("reference") or "").removeprefix("Patient/")
        if existing is not None:
            old = existing.resource()
            if ((old.get("patient") or {}).get("reference") or "").removeprefix("Patient/") != patient_ref:
                raise FhirError.of(403, "forbidden", "a restriction cannot be moved to another patient")
            if p.kind == "practitioner" and _owner_hpr(old) not in (None, p.hpr):
                raise FhirError.of(403, "forbidden", "this restriction was set by someone else")
        if p.kind == "citizen":
            if patient_ref not in self.own_patients:
                raise FhirError.of(403, "forbidden", "citizens can only set restrictions on their own data")
            return
        if patient_ref not in self.views or self.views[patient_ref].hidden:
            raise FhirError.of(403, "forbidden", "the patient is not covered by your attestation")
        provision = resource.setdefault("provision", {"type": "deny"})
        actors = provision.setdefault("actor", [])
        if not any((a.get("reference") or {}).get("identifier", {}).get("system") == OID_HPR for a in actors):
            actors.append(
                {
                    "role": {
                        "coding": [
                            {"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "AUT"}
                        ]
                    },
                    "reference": {"identifier": {"system": OID_HPR, "value": p.hpr}, "display": p.name or p.hpr},
                }
            )
        if not r.target_references(resource):
            raise FhirError.of(400, "required", "name the report in Consent.provision.data.reference")

    # -- audit ---------------------------------------------------------------------------------
    def record(self, conn: Any, rec: AccessRecord) -> None:
        """One entry per patient touched, each with that patient's own override flag and outcome."""
        rec.reason = rec.reason or self.info.reason
        patients = sorted(set(rec.patients) | self.named)
        actor = self.actor()
        for patient in patients if patients else [None]:
            view = self.views.get(patient) if patient else None
            one = AccessRecord(
                rec.action,
                rec.res_type,
                rec.outcome,
                rec.resource_ids,
                [patient] if patient else [],
                rec.detail,
                rec.withheld or (view.withheld if view and rec.outcome == "allowed" else None),
                rec.override or bool(view and view.override),
                rec.reason,
            )
            append(conn, actor, one)
        self.recorded += 1


def _directory(res_type: str, table: Any) -> ColumnElement[bool] | None:
    """The directory rows among rows of `res_type`: none when the type is not a directory type, so a
    read of an Observation carries no list of directory types to bind and expand."""
    if res_type == "*":
        return and_(table.c.patient.is_(None), table.c.res_type.in_(DIRECTORY_TYPES))
    return table.c.patient.is_(None) if res_type in DIRECTORY_TYPES else None


def _patient_in(table: Any, patients: list[str]) -> ColumnElement[bool]:
    return table.c.patient == patients[0] if len(patients) == 1 else table.c.patient.in_(patients)


def _may_have(view: PatientView, kinds: tuple[str, ...]) -> bool:
    return view.consent_kinds is None or not view.consent_kinds.isdisjoint(kinds)


def _owner_hpr(consent: dict[str, Any]) -> str | None:
    for a in (consent.get("provision") or {}).get("actor", []):
        ident = (a.get("reference") or {}).get("identifier") or {}
        if ident.get("system") == OID_HPR:
            return ident.get("value")
    return None
