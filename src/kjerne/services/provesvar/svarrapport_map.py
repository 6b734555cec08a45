"""KITH Svarrapport v1.3/v1.4 -> FHIR R4 transaction Bundle, following Norsk helsenett's NILAR mapping.

One call maps one message (bare `Message` or inside a MsgHead envelope). Each ServReport becomes a
DiagnosticReport with its Observations (nested ResultItems and microbiology isolate/resistance links become
`hasMember` hierarchies), ServiceRequests, Specimens and the PractitionerRoles they reference. Nothing is
stored here: the Bundle uses `urn:uuid:` fullUrls and conditional updates keyed on identifiers, so the same
message mapped twice gives the same Bundle and the store can apply it idempotently.

Identifiers
    Report, request, specimen and result ids in a Svarrapport are only unique within the laboratory that
    issued them. Kjerne therefore puts the producer in the identifier system:
    `urn:kjerne:labsvar:<producer>:<kind>` where <producer> is `orgnr-<n>`, `herid-<n>`, `resh-<n>` or
    `hpr-<n>` (the ServProvider) and <kind> is a code from NILAR's identifier-source code system
    (MsgId, ServReportId, ServReqId, ServReqIdByServProvider, AnalysedSubjectId,
    AnalysedSubjectIdByRequester, ResultItemId); `identifier.type` carries the same code. The
    DiagnosticReport is updated on its ServReportId (ServProvId), or on ServReqId when the report has no
    ServProvId; that identifier stays the same across new, changed, cancelled and appended versions.
    Observations, Specimens and ServiceRequests are updated on a derived key (`urn:kjerne:labsvar:key`), a
    UUID computed from the report identifier and the element's place in the report (for a result: its
    parent's key, its analysis code and its occurrence among siblings with that code), because the message
    gives them no stable id of their own; a changed report therefore updates the same resources. A
    PractitionerRole's key is computed from the HPR number / organisation identifiers it names (from the
    names within the report when it has no identifier).

Lifecycle
    The store applies versions. Each DiagnosticReport carries what it needs: the stable report identifier,
    `issued` = Message/GenDate (the version date), `meta.tag` with ServType (kodeverk 7309) and report
    Status (7306), and `status` from the NILAR ServType x Status table.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import logging
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from lxml import etree

from kjerne.fhir.identifiers import (
    OID_DNR,
    OID_FHN,
    OID_FNR,
    OID_HERID,
    OID_HPR,
    OID_ORGNR,
    OID_RESH,
    is_dnr,
    is_valid_fnr,
    is_valid_herid,
    is_valid_hpr,
    is_valid_orgnr,
    person_checksum_ok,
)
from kjerne.services.provesvar import codes
from kjerne.services.provesvar.faults import Fault, where
from kjerne.services.provesvar.svarrapport_schema import (
    Envelope,
    Located,
    SvarrapportFormatError,
    element_children,
    locate,
    parse,
    validate,
)
from kjerne.services.provesvar.tolerances import (
    Moment,
    Number,
    ValueProblem,
    read_bool,
    read_decimal,
    read_national_id,
    read_register_id,
    read_ts,
    review_schema,
    warn,
)
from kjerne.services.provesvar.units import UCUM, Unit, UnitError, to_ucum

NILAR = "http://nhn.no/fhir/nilar"
EXT_REPORT_DATE = f"{NILAR}/StructureDefinition/nilar-report-date"
EXT_APPROVAL_DATE = f"{NILAR}/StructureDefinition/nilar-approval-date"
EXT_COMMENT = f"{NILAR}/StructureDefinition/nilar-comment"
EXT_OTHER_INFO = f"{NILAR}/StructureDefinition/nilar-other-info"
EXT_ACCREDITED = f"{NILAR}/StructureDefinition/nilar-accredited"
EXT_DIAGNOSTIC_REPORT_REF = f"{NILAR}/StructureDefinition/nilar-diagnostic-report-ref"
IDENTIFIER_SOURCE = f"{NILAR}/CodeSystem/identifier-source-cs"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"

ID_BASE = "urn:kjerne:labsvar"
KEY_SYSTEM = f"{ID_BASE}:key"
_UUID_NS = uuid.uuid5(uuid.NAMESPACE_URL, ID_BASE)

CLOCK_SKEW = dt.timedelta(minutes=10)
INTERNAL_ERROR = "the message could not be mapped (internal error)"
logger = logging.getLogger(__name__)
# TextResult headings (kodeverk 8243) whose text is a self-describing narrative.
NARRATIVE_HEADINGS = frozenset({"FU", "VU", "GR"})


@dataclass
class MappingResult:
    ok: bool
    bundle: dict[str, Any] | None
    warnings: list[str]
    errors: list[str]
    msg_id: str | None = None  # the id an AppRec answers: MsgHead/MsgInfo/MsgId, else Message/MsgId
    sender: dict[str, str] = field(default_factory=dict)  # orgnr / herid / name
    version: str = ""  # "1.3" | "1.4"
    service_type: str = ""  # ServReport/ServType (kodeverk 7309): N, M, C, A, H
    report_ids: list[str] = field(default_factory=list)
    issued: str | None = None  # Message/GenDate as FHIR instant
    warning_faults: list[Fault] = field(default_factory=list)
    error_faults: list[Fault] = field(default_factory=list)
    envelope: Envelope | None = None
    message_type: str | None = None  # Message/Type V (e.g. SVAR_LAB)
    gen_date: str | None = None  # GenDate as written (for the AppRec's OriginalMsgId/IssueDate)


def map_svarrapport(xml: bytes, *, received_at: dt.datetime | None = None) -> MappingResult:
    """Map one Svarrapport (bare or in MsgHead) to a FHIR transaction Bundle. Never raises on bad input."""
    received = received_at or dt.datetime.now(dt.UTC)
    if received.tzinfo is None:
        received = received.replace(tzinfo=dt.UTC)
    try:
        tree = parse(xml)
        located = locate(tree)
    except SvarrapportFormatError as exc:
        fault = Fault(exc.code, exc.where, exc.text)
        return MappingResult(
            ok=False,
            bundle=None,
            warnings=[],
            errors=[str(fault)],
            error_faults=[fault],
            msg_id=_scrape_msg_id(xml),
        )
    review = review_schema(tree, located.message, validate(tree))
    mapper = _Mapper(located, received)
    try:
        mapper.run()
    except Exception as exc:  # a message the mapper cannot handle is refused, never half-mapped
        logger.exception("Svarrapport mapping failed")
        mapper.errors.append(Fault("X99", "Message", f"{INTERNAL_ERROR}: {type(exc).__name__}"))
    errors = _dedupe(mapper.errors + [f for f in review.errors if f.where not in {e.where for e in mapper.errors}])
    warnings = _dedupe(review.warnings + mapper.warnings)
    ok = not errors
    env = located.envelope
    sender = dict(mapper.sender)
    if env and env.sender:
        sender = {k: v for k, v in env.sender.items() if k in ("orgnr", "herid", "name")} or sender
    return MappingResult(
        ok=ok,
        bundle=mapper.bundle() if ok else None,
        warnings=[str(w) for w in warnings],
        errors=[str(e) for e in errors],
        msg_id=(env.msg_id if env and env.msg_id else mapper.msg_id),
        sender=sender,
        version=located.version,
        service_type=mapper.service_type,
        report_ids=mapper.report_ids,
        issued=mapper.issued,
        warning_faults=warnings,
        error_faults=errors,
        envelope=env,
        message_type=mapper.message_type,
        gen_date=mapper.gen_date_raw,
    )


def _dedupe(faults: Iterable[Fault]) -> list[Fault]:
    seen: set[tuple[str, str, str | None]] = set()
    out = []
    for f in faults:
        key = (f.where, f.text, f.tolerance) if not f.tolerance else (f.where, "", f.tolerance)
        if key not in seen:
            seen.add(key)
            out.append(f)
    return out


_MSGID = re.compile(rb"<(?:[\w.-]+:)?MsgId>\s*([^<\s]{1,128})\s*</")


def _scrape_msg_id(xml: bytes) -> str | None:
    """Best effort for unreadable input, so a rejection receipt can still refer to the message."""
    m = _MSGID.search(xml or b"")
    return m.group(1).decode("utf-8", "replace") if m else None


# --------------------------------------------------------------------------------------------------
# Helpers


def _uuid(*parts: str) -> str:
    return str(uuid.uuid5(_UUID_NS, "|".join(parts)))


def _full_url(resource_type: str, key: str) -> str:
    return f"urn:uuid:{_uuid(resource_type, key)}"


def _conditional(resource_type: str, system: str, value: str) -> dict[str, str]:
    return {"method": "PUT", "url": f"{resource_type}?identifier={quote(system, safe=':/')}|{quote(value, safe='')}"}


def _ident(kind: str, system: str, value: str, use: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if use:
        out["use"] = use
    out["type"] = {"coding": [{"system": IDENTIFIER_SOURCE, "code": kind}]}
    out["system"] = system
    out["value"] = value
    return out


def _key_ident(value: str) -> dict[str, Any]:
    return {"use": "secondary", "system": KEY_SYSTEM, "value": value}


def _text_of(el: etree._Element | None) -> str | None:
    """Text content, XHTML flattened, line breaks kept as \\n, surrounding whitespace removed."""
    if el is None:
        return None
    if any(True for _ in element_children(el)):
        blocks: list[str] = []
        for node in el.iter():
            if not isinstance(node.tag, str):
                continue
            local = etree.QName(node).localname
            if local in ("p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4") and blocks and blocks[-1] != "\n":
                blocks.append("\n")
            if node.text:
                blocks.append(node.text)
            if node is not el and node.tail:
                blocks.append(node.tail)
        text = "".join(blocks)
    else:
        text = el.text or ""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = [re.sub(r"[ \t]+", " ", line).strip() for line in text.split("\n")]
    out = "\n".join(lines).strip()
    out = re.sub(r"\n{3,}", "\n\n", out)
    return out or None


def _has_xhtml(el: etree._Element | None) -> bool:
    return el is not None and any(True for _ in element_children(el))


def _annotation(text: str) -> dict[str, str]:
    return {"text": text}


def _other_info(label: str, text: str) -> dict[str, Any]:
    return {"url": EXT_OTHER_INFO, "valueAnnotation": {"text": f"{label}: {text}"}}


def _cs_display(el: etree._Element | None) -> str | None:
    if el is None:
        return None
    dn, v = (el.get("DN") or "").strip(), (el.get("V") or "").strip()
    if dn and v:
        return f"{dn} ({v})"
    return dn or v or (el.get("OT") or "").strip() or None


# --------------------------------------------------------------------------------------------------
# Actors


@dataclass
class Actor:
    """A health care party (HCP) read from the message."""

    org_ident: dict[str, str] | None = None  # {'system', 'value'} of the organisation (Dept overrides Inst)
    inst_ident: dict[str, str] | None = None  # the institution itself
    org_name: str | None = None
    person_ident: dict[str, str] | None = None
    person_name: str | None = None
    telecom: list[dict[str, str]] = field(default_factory=list)
    category: dict[str, str] | None = None  # HCProf/Type, kodeverk 9060
    specialty: dict[str, str] | None = None  # MedSpeciality

    @property
    def empty(self) -> bool:
        return not (self.org_ident or self.org_name or self.person_ident or self.person_name)


_PRODUCER_PREFIX = {OID_ORGNR: "orgnr", OID_HERID: "herid", OID_RESH: "resh", OID_HPR: "hpr"}


@dataclass
class Item:
    """One ResultItem and what it becomes."""

    el: etree._Element
    parent: Item | None
    index_path: str
    children: list[Item] = field(default_factory=list)
    members: list[Item] = field(default_factory=list)  # RefIdResultItem links
    referenced: bool = False  # a member of some other item
    key: str = ""
    full_url: str = ""
    code: dict[str, Any] | None = None
    code_key: str = "item"
    own_codes: bool = False
    has_value: bool = False
    effective: Moment | None = None
    own_moment: Moment | None = None
    specimen_url: str | None = None
    resource: dict[str, Any] = field(default_factory=dict)
    tags: list[dict[str, str]] = field(default_factory=list)
    html: list[str] = field(default_factory=list)


class _Mapper:
    def __init__(self, located: Located, received: dt.datetime) -> None:
        self.loc = located
        self.ns = f"{{{located.namespace}}}"
        self.received = received
        self.errors: list[Fault] = []
        self.warnings: list[Fault] = []
        self.entries: dict[str, dict[str, Any]] = {}  # fullUrl -> entry, insertion ordered
        self.sender: dict[str, str] = {}
        self.msg_id: str | None = None
        self.service_type = ""
        self.report_ids: list[str] = []
        self.issued: str | None = None
        self.message_type: str | None = None
        self.gen_date_raw: str | None = None
        self.gen_date: Moment | None = None
        self.sender_key: str | None = None

    # -- small readers -------------------------------------------------------------------------

    def q(self, name: str) -> str:
        return self.ns + name

    def child(self, el: etree._Element | None, name: str) -> etree._Element | None:
        return None if el is None else el.find(self.ns + name)

    def kids(self, el: etree._Element | None, name: str) -> list[etree._Element]:
        return [] if el is None else el.findall(self.ns + name)

    def text(self, el: etree._Element | None, name: str) -> str | None:
        c = self.child(el, name)
        if c is None or c.text is None:
            return None
        return c.text.strip() or None

    def code_v(self, el: etree._Element | None, name: str) -> str | None:
        c = self.child(el, name)
        if c is None:
            return None
        return (c.get("V") or "").strip() or None

    def error(self, code: str, w: str, text: str) -> None:
        self.errors.append(Fault(code, w, text))

    def warning(self, code: str, w: str, text: str) -> None:
        self.warnings.append(Fault(code, w, text))

    def tolerate(self, tolerance: str | None, w: str, text: str) -> None:
        if tolerance:
            self.warnings.append(warn(tolerance, w, text))

    def moment(self, el: etree._Element | None, name: str, *, future_ok: bool = False) -> Moment | None:
        c = self.child(el, name)
        if c is None:
            return None
        raw = c.get("V")
        try:
            m = read_ts(raw)
        except ValueProblem as exc:
            self.error("T02", where(c), str(exc))
            return None
        if m is None:
            return None
        if m.tolerance:
            self.tolerate(m.tolerance, where(c), f"date/time '{raw}' read as {m.fhir}")
        if not future_ok and m.at > self.received + CLOCK_SKEW:
            self.error("X99", where(c), f"date {m.fhir} is in the future")
        return m

    # -- message level -------------------------------------------------------------------------

    def run(self) -> None:
        msg = self.loc.message
        type_el = self.child(msg, "Type")
        self.message_type = (type_el.get("V") or "").strip() or None if type_el is not None else None
        mig = self.text(msg, "MIGversion")
        if mig and not mig.replace("v", "").startswith(self.loc.version):
            self.tolerate(
                "T08-MIGVERSION",
                where(msg, "MIGversion"),
                f"MIGversion '{mig}' in a v{self.loc.version} namespace; read as v{self.loc.version}",
            )
        self.msg_id = self.text(msg, "MsgId")
        if not self.msg_id:
            self.error("E10", where(msg, "MsgId"), "message id missing")
        gen = self.child(msg, "GenDate")
        self.gen_date_raw = gen.get("V") if gen is not None else None
        self.gen_date = self.moment(msg, "GenDate")
        if self.gen_date is None:
            if not any(f.where == where(msg, "GenDate") for f in self.errors):
                self.error("X99", where(msg, "GenDate"), "GenDate missing: the report version cannot be dated")
        elif not self.gen_date.has_time:
            self.warning("X99", where(msg, "GenDate"), "GenDate has no time of day; issued is left out")
        else:
            self.issued = self.gen_date.fhir
        reports = self.kids(msg, "ServReport")
        if not reports:
            self.error("X99", where(msg, "ServReport"), "the message contains no ServReport")
        service_types = []
        for sr in reports:
            _Report(self, sr).run()
            st = self.code_v(sr, "ServType")
            if st and st not in service_types:
                service_types.append(st)
        self.service_type = ",".join(service_types)

    def add(self, resource: dict[str, Any], full_url: str, request: dict[str, str]) -> None:
        if full_url not in self.entries:
            self.entries[full_url] = {"fullUrl": full_url, "resource": resource, "request": request}

    def bundle(self) -> dict[str, Any]:
        out: dict[str, Any] = {"resourceType": "Bundle", "type": "transaction"}
        if self.msg_id and self.sender_key:
            out["identifier"] = {"system": f"{ID_BASE}:{self.sender_key}:MsgId", "value": self.msg_id}
        if self.issued:
            out["timestamp"] = self.issued
        out["entry"] = list(self.entries.values())
        return out

    # -- actors --------------------------------------------------------------------------------

    def actor(self, hcp: etree._Element | None, *, strict: bool) -> Actor:
        """Read an HCP. strict=True (the report's producer): identifier problems are errors."""
        a = Actor()
        if hcp is None:
            return a
        inst = self.child(hcp, "Inst")
        prof = self.child(hcp, "HCProf")
        for person_el in [prof] if prof is not None else self.kids(inst, "HCPerson"):
            if person_el is not None and not (self.text(person_el, "Name") or self.text(person_el, "Id")):
                self.warning(
                    "E20", where(person_el), "health professional element is empty: the person is not identified"
                )
        if inst is not None:
            a.org_name = self.text(inst, "Name")
            a.inst_ident = self.org_identifier(inst, strict=strict)
            a.org_ident = a.inst_ident
            names = [a.org_name] if a.org_name else []
            for dept in self.kids(inst, "Dept"):
                dn = self.text(dept, "Name")
                if dn:
                    names.append(dn)
                d_ident = self.org_identifier(dept, strict=strict)
                if d_ident is not None:
                    a.org_ident = d_ident
            a.org_name = ", ".join(names) or None
            persons = self.kids(inst, "HCPerson")
            if persons:
                a.person_name = self.text(persons[0], "Name")
                a.person_ident = self.person_identifier(persons[0], strict=False)
        elif prof is not None:
            a.person_name = self.text(prof, "Name")
            a.person_ident = self.person_identifier(prof, strict=strict)
            t = self.child(prof, "Type")
            if t is not None and t.get("V"):
                a.category = {
                    "system": codes.kodeverk_system(codes.HP_CATEGORY_9060),
                    "code": t.get("V").strip(),
                    **({"display": t.get("DN")} if t.get("DN") else {}),
                }
        spec = self.child(hcp, "MedSpeciality")
        if spec is not None and spec.get("V"):
            num = codes.kodeverk_number(spec.get("S"))
            a.specialty = {
                **({"system": codes.kodeverk_system(num)} if num else {}),
                "code": spec.get("V").strip(),
                **({"display": spec.get("DN")} if spec.get("DN") else {}),
            }
        for addr in self.kids(hcp, "Address"):
            for tele in self.kids(addr, "TeleAddress"):
                cp = _contact_point(tele.get("V"))
                if cp:
                    a.telecom.append(cp)
        return a

    def _id_problem(self, strict: bool, w: str, text: str) -> None:
        if strict:
            self.error("X99", w, text)
        else:
            self.warning("X99", w, text + "; identifier left out")

    def org_identifier(self, el: etree._Element, *, strict: bool) -> dict[str, str] | None:
        raw = self.text(el, "Id")
        kind = (self.code_v(el, "TypeId") or "").upper()
        w = where(el, "Id")
        if not raw:
            return None
        if not kind:
            self._id_problem(strict, w, f"identifier '{raw}' has no TypeId")
            return None
        if kind in codes.LOCAL_ORG_ID_TYPES:
            return None
        system = codes.ORG_ID_TYPES.get(kind)
        if system is None:
            self._id_problem(strict, where(el, "TypeId"), f"unknown organisation identifier type '{kind}'")
            return None
        value, tol = read_register_id(raw)
        self.tolerate(tol, w, f"'{raw}' read as {value}")
        ok = {OID_ORGNR: is_valid_orgnr, OID_HERID: is_valid_herid, OID_RESH: str.isdigit}[system](value)
        if not ok:
            self._id_problem(strict, w, f"'{raw}' is not a valid {kind} identifier")
            return None
        return {"system": system, "value": value}

    def person_identifier(self, el: etree._Element, *, strict: bool) -> dict[str, str] | None:
        candidates: list[tuple[str, str, str]] = []  # (kind, raw, where)
        raw = self.text(el, "Id")
        kind = (self.code_v(el, "TypeId") or "").upper()
        if raw:
            if not kind:
                self._id_problem(strict, where(el, "Id"), f"identifier '{raw}' has no TypeId")
            else:
                candidates.append((kind, raw, where(el, "Id")))
        for add in self.kids(el, "AdditionalId"):
            a_raw, a_kind = self.text(add, "Id"), (self.code_v(add, "Type") or "").upper()
            if a_raw and a_kind:
                candidates.append((a_kind, a_raw, where(add, "Id")))
        chosen: dict[str, str] | None = None
        for kind, raw, w in sorted(candidates, key=lambda c: c[0] != "HPR"):
            if kind in codes.PRIVATE_PERSON_ID_TYPES:
                self.warning("X99", w, f"a health professional's {kind} is not passed on; identifier left out")
                continue
            system = codes.PERSON_ID_TYPES.get(kind)
            if system is None:
                self._id_problem(strict, w, f"unknown person identifier type '{kind}'")
                continue
            value, tol = read_register_id(raw)
            self.tolerate(tol, w, f"'{raw}' read as {value}")
            valid = is_valid_hpr(value) if system == OID_HPR else is_valid_herid(value)
            if not valid:
                self._id_problem(strict, w, f"'{raw}' is not a valid {kind} identifier")
                continue
            if chosen is None:
                chosen = {"system": system, "value": value}
        return chosen


def _contact_point(v: str | None) -> dict[str, str] | None:
    if not v or ":" not in v:
        return None
    scheme, _, rest = v.partition(":")
    system = {"tel": "phone", "fax": "fax", "mailto": "email", "http": "url", "https": "url"}.get(scheme.lower())
    if system is None or not rest.strip():
        return None
    return {"system": system, "value": v if system == "url" else rest.strip()}


# --------------------------------------------------------------------------------------------------
# One ServReport


class _Report:
    def __init__(self, m: _Mapper, sr: etree._Element) -> None:
        self.m = m
        self.sr = sr
        self.patient_ref: dict[str, Any] | None = None
        self.producer_key: str | None = None
        self.report_key: str | None = None
        self.dr_url = ""
        self.specimens: dict[str, tuple[str, Moment | None, etree._Element]] = {}  # accession -> (url, collected, el)
        self.specimen_urls: list[str] = []
        self.sr_urls: list[str] = []
        self.items: list[Item] = []
        self.roles: dict[str, str] = {}
        self.fallback_warned = False
        self.category_code: str | None = None
        self.cancelled = False
        self.serv_type = ""
        self.issue_date: Moment | None = None
        # the mapper's readers and fault collectors
        self.q, self.child, self.kids, self.text, self.code_v = m.q, m.child, m.kids, m.text, m.code_v
        self.error, self.warning, self.tolerate, self.moment = m.error, m.warning, m.tolerate, m.moment

    def idsys(self, kind: str) -> str:
        return f"{ID_BASE}:{self.producer_key}:{kind}"

    # -- entry point ----------------------------------------------------------------------------

    def run(self) -> None:
        sr = self.sr
        n_errors = len(self.m.errors)
        # Service type and status
        self.serv_type = self.code_v(sr, "ServType") or ""
        status_code = self.code_v(sr, "Status") or ""
        if self.serv_type not in codes.SERV_TYPE_7309:
            self.error("X99", where(sr, "ServType"), f"unknown ServType '{self.serv_type}' (kodeverk 7309)")
        if status_code not in codes.REPORT_STATUS_7306:
            self.error("X99", where(sr, "Status"), f"unknown report Status '{status_code}' (kodeverk 7306)")
        dr_status = codes.diagnostic_report_status(self.serv_type, status_code)
        self.cancelled = self.serv_type == "C"
        msg_descr = self.code_v(sr, "MsgDescr") or ""
        if msg_descr not in codes.MSG_DESCR_8202:
            self.error("X99", where(sr, "MsgDescr"), f"unknown MsgDescr '{msg_descr}' (kodeverk 8202)")
        else:
            self.category_code = codes.MSG_DESCR_8202[msg_descr][1]
            if self.category_code is None:
                self.warning("X99", where(sr, "MsgDescr"), "MsgDescr AN (Annet) has no main expertise")
        issue_el = self.child(sr, "IssueDate")
        issue_date = self.moment(sr, "IssueDate")
        if issue_date is None and not any(f.where == where(sr, "IssueDate") for f in self.m.errors):
            self.tolerate(
                "T03-MISSING-ISSUEDATE",
                where(sr, "IssueDate"),
                "report date (IssueDate) missing or empty; issued from GenDate, report date left out",
            )
        if issue_el is not None and issue_el.get("V") is not None and not issue_el.get("V", "").strip():
            self.tolerate("T02-EMPTY-DATE", where(issue_el), "empty date/time, treated as absent")
        appr_date = self.moment(sr, "ApprDate")
        self.issue_date = issue_date

        # Producer (ServProvider) and report identity
        producer_el = self.child(sr, "ServProvider")
        producer = self.m.actor(self.child(producer_el, "HCP"), strict=True)
        ident = producer.inst_ident or producer.org_ident or producer.person_ident
        if producer_el is None:
            self.error("X99", where(sr, "ServProvider"), "service provider (sender of the report) missing")
        elif ident is None:
            self.error(
                "X99",
                where(producer_el),
                "the service provider is not identified (no organisation number, HER-id or HPR number)",
            )
        else:
            self.producer_key = f"{_PRODUCER_PREFIX[ident['system']]}-{ident['value']}"
            if self.m.sender_key is None:
                self.m.sender_key = self.producer_key
                self.m.sender = {
                    k: v
                    for k, v in {
                        "orgnr": (producer.inst_ident or {}).get("value")
                        if (producer.inst_ident or {}).get("system") == OID_ORGNR
                        else None,
                        "herid": next(
                            (
                                i["value"]
                                for i in (producer.org_ident, producer.inst_ident)
                                if i and i["system"] == OID_HERID
                            ),
                            None,
                        ),
                        "name": producer.org_name or producer.person_name,
                    }.items()
                    if v
                }
        serv_prov_id = self.text(sr, "ServProvId")
        servreqs = self.kids(sr, "ServReq")
        req_id = next((self.text(r, "Id") for r in servreqs if self.text(r, "Id")), None)
        if serv_prov_id:
            report_kind, report_value = "ServReportId", serv_prov_id
        elif req_id:
            report_kind, report_value = "ServReqId", req_id
        else:
            report_kind, report_value = "", ""
            self.error(
                "X99",
                where(sr, "ServProvId"),
                "the report has neither ServProvId nor ServReq/Id and cannot be identified across versions",
            )
        if report_value:
            self.m.report_ids.append(report_value)

        # Patient
        self.patient_ref = self.patient()

        if len(self.m.errors) > n_errors or self.producer_key is None or not report_value:
            # Without patient, producer or report identity nothing below can be keyed; the faults found
            # so far are enough to refuse the message. Results are still checked for further faults.
            self.producer_key = self.producer_key or "unknown"
            report_value = report_value or "unknown"
            report_kind = report_kind or "ServReportId"
        self.report_key = f"{self.producer_key}|{report_kind}|{report_value}"
        self.dr_url = _full_url("DiagnosticReport", self.report_key)

        performer_url = self.role(self.m.actor(self.child(self.child(sr, "RelServProv"), "HCP"), strict=False))
        if performer_url is None:
            performer_url = self.role(producer)

        # Specimens, requests, results
        patient_el = self.child(sr, "Patient")
        for subject in self.kids(patient_el, "AnalysedSubject"):
            self.specimen(subject, parent_url=None)
        self.service_requests(servreqs, dr_status)
        self.results(patient_el, performer_url)
        if not self.items and not self.cancelled:
            self.error("X99", where(patient_el) if patient_el is not None else where(sr), "the report has no results")
        self.physician_checks(producer)

        # DiagnosticReport
        dr = self.diagnostic_report(
            dr_status, status_code, msg_descr, issue_date, appr_date, performer_url, report_kind, report_value, req_id
        )
        dr_ident = next(i for i in dr["identifier"] if i["type"]["coding"][0]["code"] == report_kind)
        self.m.add(dr, self.dr_url, _conditional("DiagnosticReport", dr_ident["system"], dr_ident["value"]))

    # -- patient -----------------------------------------------------------------------------

    def patient(self) -> dict[str, Any] | None:
        sr = self.sr
        patient = self.child(sr, "Patient")
        if patient is None:
            for other in ("Animal", "Material"):
                if self.child(sr, other) is not None:
                    self.error(
                        "T10", where(sr, other), f"reports on {other.lower()} are not supported; a patient is required"
                    )
                    return None
            self.error("E36", where(sr, "Patient"), "patient information missing")
            return None
        off_id = self.text(patient, "OffId")
        if off_id:
            raw_id = off_id
            off_id, tol = read_national_id(off_id)
            self.tolerate(tol, where(patient, "OffId"), f"'{raw_id}' read as {off_id}")
        type_el = self.child(patient, "TypeOffId")
        id_type = ((type_el.get("V") if type_el is not None else None) or "").strip().upper()
        nested = self.child(patient, "Patient")
        if nested is not None and (self.kids(nested, "ResultItem") or self.kids(nested, "AnalysedSubject")):
            self.error("X99", where(nested), "results for a second (nested) patient are not supported")
        if not off_id:
            self.error("E30", where(patient, "OffId"), "national identity number missing")
            if not id_type:
                self.error("E36", where(patient, "TypeOffId"), "identifier type missing")
            return None
        if not id_type:
            self.error("E36", where(patient, "TypeOffId"), f"identifier type missing for '{off_id}'")
            return None
        if id_type in codes.LOCAL_PATIENT_ID_TYPES:
            self.error(
                "E36",
                where(patient, "TypeOffId"),
                f"identifier type {id_type} ({codes.LOCAL_PATIENT_ID_TYPES[id_type]}) is not a national identity "
                "number (FNR, DNR or FHN required)",
            )
            return None
        system = codes.PATIENT_ID_TYPES.get(id_type)
        if system is None:
            self.error("E36", where(patient, "TypeOffId"), f"unknown identifier type '{id_type}'")
            return None
        w = where(patient, "OffId")
        if not (len(off_id) == 11 and off_id.isdigit()):
            self.error("E31", w, f"'{off_id}' is not an 11-digit national identity number")
            return None
        if system in (OID_FNR, OID_DNR):
            if not person_checksum_ok(off_id):
                self.error("E31", w, f"check digits wrong in {off_id}")
                return None
            if not is_valid_fnr(off_id):
                self.error("E31", w, f"{off_id} does not encode a valid birth date")
                return None
            if system == OID_FNR and is_dnr(off_id):
                self.tolerate("T07-DNR-TYPED-AS-FNR", w, f"{off_id} is a D-number; referenced as D-number")
                system = OID_DNR
            elif system == OID_DNR and not is_dnr(off_id):
                self.error("E31", w, f"{off_id} is typed DNR but is not a D-number")
                return None
        elif system == OID_FHN and not person_checksum_ok(off_id):
            self.error("E31", w, f"check digits wrong in {off_id}")
            return None
        return {"type": "Patient", "identifier": {"system": system, "value": off_id}}

    # -- actors -> PractitionerRole ---------------------------------------------------------------

    def role(self, a: Actor) -> str | None:
        if a.empty:
            return None
        p_key = (
            f"{a.person_ident['system']}|{a.person_ident['value']}" if a.person_ident else f"name|{a.person_name or ''}"
        )
        o_key = f"{a.org_ident['system']}|{a.org_ident['value']}" if a.org_ident else f"name|{a.org_name or ''}"
        if a.person_ident or a.org_ident:
            key = _uuid("PractitionerRole", p_key, o_key)
        else:  # names only: no identity beyond this report
            key = _uuid("PractitionerRole", self.report_key or "", p_key, o_key)
        if key in self.roles:
            return self.roles[key]
        res: dict[str, Any] = {"resourceType": "PractitionerRole", "identifier": [_key_ident(key)]}
        if a.person_ident or a.person_name:
            res["practitioner"] = {
                "type": "Practitioner",
                **({"identifier": a.person_ident} if a.person_ident else {}),
                **({"display": a.person_name} if a.person_name else {}),
            }
        if a.org_ident or a.org_name:
            res["organization"] = {
                "type": "Organization",
                **({"identifier": a.org_ident} if a.org_ident else {}),
                **({"display": a.org_name} if a.org_name else {}),
            }
        if a.category:
            res["code"] = [{"coding": [a.category]}]
        if a.specialty:
            res["specialty"] = [{"coding": [a.specialty]}]
        if a.telecom:
            res["telecom"] = a.telecom
        url = _full_url("PractitionerRole", key)
        self.m.add(res, url, _conditional("PractitionerRole", KEY_SYSTEM, key))
        self.roles[key] = url
        return url

    def physician_checks(self, producer: Actor) -> None:
        sr = self.sr
        persons = producer.person_ident or producer.person_name
        for rel in self.sr.iter(self.q("RelServProv")):
            hcp = self.child(rel, "HCP")
            if hcp is None:
                continue
            prof = self.child(hcp, "HCProf")
            person_el = prof if prof is not None else self.child(self.child(hcp, "Inst"), "HCPerson")
            if person_el is not None and (self.text(person_el, "Name") or self.text(person_el, "Id")):
                persons = True
        if not persons and not self.cancelled:
            self.warning(
                "E20",
                where(sr, "ServProvider"),
                "no responsible health professional at the service provider is identified",
            )

    # -- specimens -----------------------------------------------------------------------------

    def specimen(self, el: etree._Element, parent_url: str | None) -> None:
        accession = self.text(el, "IdByServProvider")
        if not accession:
            self.error("X99", where(el, "IdByServProvider"), "specimen has no id from the service provider")
            return
        if accession in self.specimens:
            self.error("X99", where(el, "IdByServProvider"), f"specimen id '{accession}' is used twice")
            return
        key = _uuid("Specimen", self.report_key or "", accession)
        url = _full_url("Specimen", key)
        res: dict[str, Any] = {"resourceType": "Specimen"}
        idents = [_ident("AnalysedSubjectId", self.idsys("AnalysedSubjectId"), accession)]
        by_req = self.text(el, "IdByRequester")
        if by_req:
            idents.append(_ident("AnalysedSubjectIdByRequester", self.idsys("AnalysedSubjectIdByRequester"), by_req))
        idents.append(_key_ident(key))
        res["identifier"] = idents
        res["accessionIdentifier"] = {"system": self.idsys("AnalysedSubjectId"), "value": accession}
        typ = self.specimen_type(el)
        if typ:
            res["type"] = typ
        if self.patient_ref:
            res["subject"] = self.patient_ref
        if parent_url:
            res["parent"] = [{"reference": parent_url}]
        sample = self.child(el, "CollectedSample")
        product = self.child(el, "CollectedStudyProduct")
        collected = self.moment(sample, "CollectedDate") if sample is not None else None
        if product is not None:
            collected = collected or self.moment(product, "ProducedDate")
        for holder, name in ((sample, "CollectedDate"), (product, "ProducedDate")):
            c = self.child(holder, name)
            if c is not None and c.get("V") is not None and not c.get("V", "").strip():
                self.tolerate("T02-EMPTY-DATE", where(c), "empty date/time, treated as absent")
        collection: dict[str, Any] = {}
        if collected:
            collection["collectedDateTime"] = collected.fhir
        else:
            self.warning("X99", where(el), f"specimen '{accession}' has no sampling time (CollectedDate)")
        collector = self.role(self.m.actor(self.child(self.child(el, "RelServProv"), "HCP"), strict=False))
        if collector:
            collection["collector"] = {"reference": collector}
        origin = self.text(el, "AnatomicalOrigin")
        if origin:
            collection["bodySite"] = {"text": origin}
        proc = self.child(el, "SampleCollProc")
        if proc is not None and (proc.get("V") or proc.get("DN") or proc.get("OT")):
            collection["method"] = self.concept(proc, allowed=None)
        if collection:
            res["collection"] = collection
        notes = []
        for label, value in (
            ("Prøvetakers kommentar", self.text(sample, "CollectorComment") if sample is not None else None),
            ("Kommentar", self.text(el, "Comment")),
        ):
            if value:
                notes.append(_annotation(f"{label}: {value}" if label != "Kommentar" else value))
        if sample is not None:
            for coded in self.kids(sample, "CollectorCommentCoded"):
                disp = _cs_display(coded)
                if disp:
                    notes.append(_annotation(f"Prøvetakers kommentar: {disp}"))
        if notes:
            res["note"] = notes
        preserv = self.text(el, "PreservMaterial")
        if preserv:
            res["container"] = [{"additiveCodeableConcept": {"text": preserv}}]
        ext = []
        acc = self.accredited(el)
        if acc is not None:
            ext.append(acc)
        number = self.text(el, "Number")
        if number:
            ext.append(_other_info("Antall prøveglass", number))
        if sample is not None and self.text(sample, "Logistics"):
            ext.append(_other_info("Logistikk", self.text(sample, "Logistics")))
        for handling in self.kids(el, "SampleHandling"):
            if handling.text and handling.text.strip():
                ext.append(_other_info("Håndtering av prøve", handling.text.strip()))
        pre = self.child(el, "Pretreatment")
        if pre is not None:
            pre_text = " ".join(
                x for x in (_cs_display(self.child(pre, "Heading")), self.text(pre, "TextResultValue")) if x
            )
            if pre_text:
                ext.append(_other_info("Forbehandling", pre_text))
        if product is not None:
            prod_text = " ".join(x for x in (self.text(product, "Type"), self.text(product, "RefRelatedProd")) if x)
            if prod_text:
                ext.append(_other_info("Tatt annet objekt", prod_text))
        if ext:
            res["extension"] = ext
        self.specimens[accession] = (url, collected, el)
        self.specimen_urls.append(url)
        self.m.add(res, url, _conditional("Specimen", KEY_SYSTEM, key))
        for nested in self.kids(el, "AnalysedSubject"):
            self.specimen(nested, parent_url=url)

    def specimen_type(self, el: etree._Element) -> dict[str, Any] | None:
        coded = self.child(el, "TypeCoded")
        text = self.text(el, "Type")
        out: dict[str, Any] = {}
        if coded is not None and (coded.get("V") or coded.get("OT") or coded.get("DN")):
            out = self.concept(coded, allowed=codes.SPECIMEN_TYPE_SYSTEMS)
        if text:
            out["text"] = text
        return out or None

    def accredited(self, el: etree._Element) -> dict[str, Any] | None:
        acc = self.child(el, "Accredited")
        if acc is None:
            return None
        try:
            value = read_bool(acc.get("V"))
        except ValueProblem as exc:
            self.error("T02", where(acc), str(exc))
            return None
        if value is None:
            return None
        if value[1]:
            self.tolerate(value[1], where(acc), f"boolean '{acc.get('V')}' read as {str(value[0]).lower()}")
        return {"url": EXT_ACCREDITED, "valueBoolean": value[0]}

    # -- coded values ----------------------------------------------------------------------------

    def coding(self, el: etree._Element, allowed: dict[str, codes.Kodeverk] | None) -> dict[str, str] | None:
        """A CV element as a Coding; None (and an error) when it cannot be read. None without error when the
        element only has original text (caller uses it as text)."""
        v = (el.get("V") or "").strip()
        s = (el.get("S") or "").strip()
        dn = (el.get("DN") or "").strip() or (el.get("OT") or "").strip()
        if not s:
            if v:
                self.error("X99", where(el), f"code '{v}' has no code system (S)")
            return None
        num = codes.kodeverk_number(s)
        if num is None or (allowed is not None and num not in allowed):
            self.error("X99", where(el), f"unknown code system {s}" + (f" for code '{v}'" if v else ""))
            return None
        if not v:
            return None
        if num == "7010" and " " in v:
            fixed = v.replace(" ", "")
            self.tolerate("T09-CODE-WHITESPACE", where(el), f"NORPAT code '{v}' read as {fixed}")
            v = fixed
        out = {"system": codes.kodeverk_system(num), "code": v}
        if dn:
            out["display"] = dn
        return out

    def concept(self, el: etree._Element, allowed: dict[str, codes.Kodeverk] | None) -> dict[str, Any]:
        c = self.coding(el, allowed) if el.get("S") or el.get("V") else None
        out: dict[str, Any] = {}
        if c:
            out["coding"] = [c]
        text = (el.get("OT") or "").strip() or (el.get("DN") or "").strip()
        if text:
            out["text"] = text
        return out

    # -- service requests --------------------------------------------------------------------------

    def service_requests(self, servreqs: list[etree._Element], dr_status: str | None) -> None:
        responsible = self.child(self.child(self.sr, "Patient"), "ResponsibleHcp")
        requester_actor = Actor()
        if responsible is not None and (self.code_v(responsible, "Relation") or "REK").upper() == "REK":
            requester_actor = self.m.actor(self.child(responsible, "HCP"), strict=False)
        if requester_actor.empty:
            requester_actor = self.m.actor(self.child(self.child(self.sr, "Requester"), "HCP"), strict=False)
        if servreqs and not self.cancelled:
            if requester_actor.empty:
                self.warning("E20", where(self.sr, "Requester"), "the requester is not identified")
            elif not (requester_actor.person_ident or requester_actor.person_name):
                self.warning("E20", where(self.sr, "Requester"), "the requesting physician is not identified")
        requester_url = self.role(requester_actor) if servreqs else None
        sr_status = {
            "registered": "active",
            "preliminary": "active",
            "final": "completed",
            "amended": "completed",
            "appended": "completed",
            "cancelled": "revoked",
        }.get(dr_status or "", "unknown")
        for i, req in enumerate(servreqs, start=1):
            req_id = self.text(req, "Id")
            key = _uuid("ServiceRequest", self.report_key or "", req_id or f"#{i}")
            url = _full_url("ServiceRequest", key)
            res: dict[str, Any] = {"resourceType": "ServiceRequest"}
            idents = []
            if req_id:
                idents.append(_ident("ServReqId", self.idsys("ServReqId"), req_id))
            by_prov = self.text(req, "IdByServProvider")
            if by_prov:
                idents.append(_ident("ServReqIdByServProvider", self.idsys("ServReqIdByServProvider"), by_prov))
            idents.append(_key_ident(key))
            res["identifier"] = idents
            res["status"] = sr_status
            res["intent"] = "order"
            descr = self.code_v(req, "MsgDescr")
            if descr:
                res["code"] = {"coding": [{"system": codes.kodeverk_system("8202"), "code": descr}]}
                if descr in codes.MSG_DESCR_8202:
                    res["code"]["coding"][0]["display"] = codes.MSG_DESCR_8202[descr][0]
            if self.patient_ref:
                res["subject"] = self.patient_ref
            authored = self.moment(req, "IssueDate")
            if authored:
                res["authoredOn"] = authored.fhir
            if requester_url:
                res["requester"] = {"reference": requester_url}
            reasons = []
            for reason in self.kids(req, "ReasonAsText"):
                rc: dict[str, Any] = {}
                heading = self.child(reason, "Heading")
                if heading is not None and heading.get("V"):
                    rc["coding"] = [
                        {
                            "system": codes.kodeverk_system("8231"),
                            "code": heading.get("V").strip(),
                            **({"display": heading.get("DN")} if heading.get("DN") else {}),
                        }
                    ]
                txt = _text_of(self.child(reason, "TextResultValue"))
                if txt:
                    rc["text"] = txt
                if rc:
                    reasons.append(rc)
            if reasons:
                res["reasonCode"] = reasons
            notes = []
            req_comment = self.text(req, "ReqComment")
            if req_comment:
                notes.append(_annotation(f"Rekvirentens kommentar: {req_comment}"))
            for comment in self.kids(req, "Comment"):
                txt = self.text(comment, "TextResultValue") or _cs_display(self.child(comment, "TextCode"))
                if txt:
                    notes.append(_annotation(txt))
            if notes:
                res["note"] = notes
            ext = []
            for label, el_name in (
                ("Betalingskategori", "PaymentCat"),
                ("Ønsket svarrapporteringsprioritet", "RequestedPrioReport"),
            ):
                disp = _cs_display(self.child(req, el_name))
                if disp:
                    ext.append(_other_info(label, disp))
            receipt = self.moment(req, "ReceiptDate")
            if receipt:
                ext.append(_other_info("Tidspunkt for mottak", receipt.fhir))
            for reservation in self.kids(req, "Reservation"):
                disp = _cs_display(reservation)
                if disp:
                    ext.append(_other_info("Reservasjon", disp))
            if ext:
                res["extension"] = ext
            if self.specimen_urls:
                res["specimen"] = [{"reference": u} for u in self.specimen_urls]
            self.sr_urls.append(url)
            self.m.add(res, url, _conditional("ServiceRequest", KEY_SYSTEM, key))

    # -- results ---------------------------------------------------------------------------------

    def results(self, patient: etree._Element | None, performer_url: str | None) -> None:
        if patient is None:
            return
        tops = self.kids(patient, "ResultItem")
        self.collect(tops, parent=None, prefix="")
        by_id: dict[str, list[Item]] = {}
        for item in self.items:
            rid = self.text(item.el, "IdResultItem")
            if rid:
                by_id.setdefault(rid, []).append(item)
        for item in self.items:
            ref_el = self.child(item.el, "RefIdResultItem")
            if ref_el is None:
                continue
            ref = (ref_el.text or "").strip()
            w = where(ref_el)
            if not ref:
                self.error("X99", w, "empty reference: the result cannot be linked to the finding it belongs to")
                continue
            targets = by_id.get(ref, [])
            if not targets:
                self.error("X99", w, f"refers to IdResultItem '{ref}', which is not in the report")
            elif len(targets) > 1:
                self.error("X99", w, f"IdResultItem '{ref}' is used by {len(targets)} results; the link is ambiguous")
            elif targets[0] is item or self.is_ancestor(item, targets[0]):
                self.error("X99", w, f"reference to IdResultItem '{ref}' makes a cycle")
            else:
                targets[0].members.append(item)
                item.referenced = True
        self.check_cycles()
        for item in self.items:
            self.identify(item)
        for item in self.items:
            self.place(item)
        for item in self.items:
            self.observation(item, performer_url)
        for item in self.items:
            if item.parent is None and not item.referenced:
                self.aggregate_tags(item)
        for item in self.items:
            self.m.add(item.resource, item.full_url, _conditional("Observation", KEY_SYSTEM, item.key))

    def collect(self, els: list[etree._Element], parent: Item | None, prefix: str) -> None:
        for i, el in enumerate(els, start=1):
            item = Item(el=el, parent=parent, index_path=f"{prefix}{i}")
            self.items.append(item)
            if parent:
                parent.children.append(item)
            self.collect(self.kids(el, "ResultItem"), item, f"{item.index_path}.")

    def is_ancestor(self, item: Item, candidate: Item) -> bool:
        node = item.parent
        while node is not None:
            if node is candidate:
                return True
            node = node.parent
        return False

    def check_cycles(self) -> None:
        state: dict[int, int] = {}

        def visit(it: Item) -> bool:
            s = state.get(id(it))
            if s == 1:
                return False
            if s == 2:
                return True
            state[id(it)] = 1
            for member in it.children + it.members:
                if not visit(member):
                    return False
            state[id(it)] = 2
            return True

        for it in self.items:
            if not visit(it):
                self.error("X99", where(it.el), "result references form a cycle")
                for item in self.items:
                    item.members = []
                return

    def identify(self, item: Item) -> None:
        """Observation.code and the key used for the conditional update."""
        el = item.el
        codings: list[dict[str, str]] = []
        texts: list[str] = []
        investigations = self.kids(el, "Investigation")
        for inv in investigations:
            ids = self.kids(inv, "Id")
            for id_el in ids:
                if not (id_el.get("V") or id_el.get("OT") or id_el.get("DN")):
                    s = id_el.get("S")
                    self.error(
                        "X99",
                        where(id_el),
                        f"code system {s} given without a code or text: the analysis is not identified"
                        if s
                        else "empty analysis code",
                    )
                    continue
                c = self.coding(id_el, codes.INVESTIGATION_SYSTEMS)
                if c:
                    codings.append(c)
                elif id_el.get("OT") or id_el.get("DN"):
                    texts.append((id_el.get("OT") or id_el.get("DN")).strip())
        item.own_codes = bool(codings or texts)
        heading = self.child(self.child(el, "TextResult"), "Heading")
        code: dict[str, Any] = {}
        if codings:
            code["coding"] = codings
            code["text"] = codings[0].get("display") or (texts[0] if texts else codings[0]["code"])
            item.code_key = f"{codings[0]['system'].rsplit('.', 1)[-1]}:{codings[0]['code']}"
        elif texts:
            code["text"] = texts[0]
            item.code_key = f"text:{texts[0]}"
        elif heading is not None and heading.get("V"):
            hv = heading.get("V").strip()
            code["coding"] = [
                {
                    "system": codes.kodeverk_system("8243"),
                    "code": hv,
                    "display": heading.get("DN") or codes.TEXT_HEADING_8243.get(hv, hv),
                }
            ]
            code["text"] = code["coding"][0]["display"]
            item.code_key = f"heading:{hv}"
        else:
            parent_text = item.parent.code.get("text") if item.parent and item.parent.code else None
            code["text"] = f"{parent_text} – delresultat" if parent_text else "Delresultat"
        item.code = code
        item.has_value = any(
            self.child(el, name) is not None for name in ("NumResult", "TextResult", "Interval", "DateResult")
        )
        # a value that belongs to no identified analysis (narrative findings and assessments describe
        # themselves and need no analysis code)
        narrative = heading is not None and (heading.get("V") or "").strip() in NARRATIVE_HEADINGS
        if item.has_value and not item.own_codes and not narrative and not self.context_codes(item):
            self.error("X99", where(el), "the analysis is not identified (no Investigation for this result)")
        # stable key: parent's key + code and occurrence among siblings with the same code
        siblings = item.parent.children if item.parent else [i for i in self.items if i.parent is None]
        same = [s for s in siblings if s.code_key == item.code_key]
        segment = f"{item.code_key}#{same.index(item) + 1 if item in same else 1}"
        base = item.parent.key if item.parent else (self.report_key or "")
        item.key = _uuid("Observation", base, segment)
        item.full_url = _full_url("Observation", item.key)

    def context_codes(self, item: Item) -> bool:
        node = item.parent
        while node is not None:
            if self.kids(node.el, "Investigation"):
                return True
            node = node.parent
        return any(
            it.el is not item.el and self.kids(it.el, "Investigation")
            for it in self.items
            if self.is_ancestor(it, item)
        )

    def observation(self, item: Item, performer_url: str | None) -> None:
        el = item.el
        res: dict[str, Any] = {"resourceType": "Observation"}
        idents = []
        rid = self.text(el, "IdResultItem")
        if rid:
            idents.append(_ident("ResultItemId", self.idsys("ResultItemId"), rid))
        idents.append(_key_ident(item.key))
        res["identifier"] = idents
        res["extension"] = [{"url": EXT_DIAGNOSTIC_REPORT_REF, "valueReference": {"reference": self.dr_url}}]
        if self.sr_urls:
            res["basedOn"] = [{"reference": self.sr_urls[0]}]
        res["status"] = self.observation_status(el)
        categories = []
        if self.category_code in ("HLAB", "HPAT"):
            categories.append(
                {"coding": [{"system": OBSERVATION_CATEGORY, "code": "laboratory", "display": "Laboratory"}]}
            )
        elif self.category_code == "HRAD":
            categories.append({"coding": [{"system": OBSERVATION_CATEGORY, "code": "imaging", "display": "Imaging"}]})
        heading = self.child(self.child(el, "TextResult"), "Heading")
        if heading is not None and heading.get("V"):
            hv = heading.get("V").strip()
            categories.append(
                {
                    "coding": [
                        {
                            "system": codes.kodeverk_system("8243"),
                            "code": hv,
                            "display": heading.get("DN") or codes.TEXT_HEADING_8243.get(hv, hv),
                        }
                    ]
                }
            )
        if categories:
            res["category"] = categories
        res["code"] = item.code
        if self.patient_ref:
            res["subject"] = self.patient_ref
        # effective: own sampling/investigation time, else the nearest ancestor's, else the earliest
        # among the item's own members, else the report's dates
        specimen_url = item.specimen_url
        eff = item.own_moment
        node = item.parent
        while eff is None and node is not None:
            eff, node = node.own_moment, node.parent
        if eff is None:
            below = [m for m in self.descendant_moments(item) if m is not None]
            eff = min(below, key=lambda m: m.at) if below else None
        if eff is None:
            eff = self.issue_date or self.m.gen_date
            if eff is not None and not self.fallback_warned:
                self.fallback_warned = True
                source = "ServReport/IssueDate" if self.issue_date else "Message/GenDate"
                self.tolerate(
                    "T10-NO-SAMPLING-TIME",
                    where(el),
                    f"no sampling or investigation time; effective taken from {source} ({eff.fhir})",
                )
        item.effective = eff
        if eff:
            res["effectiveDateTime"] = eff.fhir
        if self.m.issued:
            res["issued"] = self.m.issued
        if performer_url or self.kids(el, "RelServProv"):
            urls = [
                u
                for rel in self.kids(el, "RelServProv")
                if (u := self.role(self.m.actor(self.child(rel, "HCP"), strict=False)))
            ]
            urls = urls or ([performer_url] if performer_url else [])
            if urls:
                res["performer"] = [{"reference": u} for u in dict.fromkeys(urls)]
        value = self.value(item)
        if value:
            res.update(value)
        interp = self.interpretation(el)
        if interp:
            res["interpretation"] = interp
        notes = self.notes(el)
        if notes:
            res["note"] = notes
        method = self.method(el)
        if method:
            res["method"] = method
        if specimen_url:
            res["specimen"] = {"reference": specimen_url}
        ranges = self.reference_ranges(el, res.get("valueQuantity"))
        if ranges:
            res["referenceRange"] = ranges
        members = [m.full_url for m in item.children + item.members]
        if members:
            res["hasMember"] = [{"reference": u} for u in dict.fromkeys(members)]
        acc = self.accredited(el)
        if acc:
            res["extension"].append(acc)
        for label, name in (
            ("Statusendringsdato", "StatusChangeDate"),
            ("Beskrivelsesdato", "DescrDate"),
            ("Kontrasignaturdato", "CounterSignDate"),
            ("Medisinsk valideringsdato", "MedicalValidationDate"),
        ):
            m = self.moment(el, name)
            if m:
                res["extension"].append(_other_info(label, m.fhir))
        for info in self.kids(el, "StructuredInfo"):
            text = self.structured_info(info)
            if text:
                res["extension"].append(_other_info("Strukturert info", text))
        item.resource = res

    def place(self, item: Item) -> None:
        """Specimen and own time (sampling time, else investigation time) of a result."""
        item.specimen_url, collected = self.item_specimen(item)
        inv_date = self.moment(item.el, "InvDate")
        item.own_moment = collected or inv_date

    def descendant_moments(self, item: Item) -> list[Moment | None]:
        out: list[Moment | None] = []
        seen: set[int] = set()
        stack = list(item.children + item.members)
        while stack:
            it = stack.pop()
            if id(it) in seen:
                continue
            seen.add(id(it))
            out.append(it.own_moment)
            stack.extend(it.children + it.members)
        return out

    def observation_status(self, el: etree._Element) -> str:
        if self.cancelled:
            return "cancelled"
        st = self.code_v(el, "ServType") or self.serv_type or "N"
        si = self.code_v(el, "StatusInvestigation") or ""
        if st not in codes.SERV_TYPE_7309:
            self.error("X99", where(el, "ServType"), f"unknown result ServType '{st}'")
            return "unknown"
        if si and si not in codes.STATUS_INVESTIGATION_8245:
            self.error("X99", where(el, "StatusInvestigation"), f"unknown StatusInvestigation '{si}' (kodeverk 8245)")
            return "unknown"
        return codes.observation_status(st, si) or "unknown"

    def item_specimen(self, item: Item) -> tuple[str | None, Moment | None]:
        refs = [(r.text or "").strip() for r in self.kids(item.el, "RefAnalysedSubject") if (r.text or "").strip()]
        if refs:
            if len(refs) > 1:
                self.warning(
                    "X99", where(item.el, "RefAnalysedSubject"), "several specimens referenced; the first is used"
                )
            found = self.specimens.get(refs[0])
            if found is None:
                self.error(
                    "X99",
                    where(item.el, "RefAnalysedSubject"),
                    f"refers to specimen '{refs[0]}', which is not in the report",
                )
                return None, None
            return found[0], found[1]
        if item.parent is not None and item.parent.specimen_url:
            parent_spec = item.parent.specimen_url
            return parent_spec, next((s[1] for s in self.specimens.values() if s[0] == parent_spec), None)
        if len(self.specimens) == 1:
            url, collected, _ = next(iter(self.specimens.values()))
            return url, collected
        return None, None

    def quantity(self, pq: etree._Element) -> dict[str, Any] | None:
        try:
            number = read_decimal(pq.get("V"))
        except ValueProblem as exc:
            self.error("X99", where(pq), str(exc))
            return None
        if number is None:
            self.error("X99", where(pq), "numeric result without a value")
            return None
        if number.tolerance:
            self.tolerate(number.tolerance, where(pq), f"number '{pq.get('V')}' read as {number.value}")
        try:
            unit = to_ucum(pq.get("U"))
        except UnitError as exc:
            self.error("X99", where(pq), str(exc))
            return None
        return _quantity(number, unit)

    def value(self, item: Item) -> dict[str, Any] | None:
        el = item.el
        num = self.child(el, "NumResult")
        if num is not None:
            pq = self.child(num, "NumResultValue")
            if pq is None:
                self.error("X99", where(num), "numeric result without NumResultValue")
                return None
            q = self.quantity(pq)
            if q is None:
                return None
            comp = self.code_v(num, "ArithmeticComp")
            if comp:
                symbol = codes.COMPARATOR_8239.get(comp.upper())
                if symbol is None:
                    self.error("X99", where(num, "ArithmeticComp"), f"comparator '{comp}' cannot be represented")
                    return None
                q = {"value": q["value"], "comparator": symbol, **{k: v for k, v in q.items() if k != "value"}}
            item.html.append(html.escape(_quantity_text(q)))
            return {"valueQuantity": q}
        interval = self.child(el, "Interval")
        if interval is not None:
            rng: dict[str, Any] = {}
            for side, name in (("low", "Low"), ("high", "High")):
                pq = self.child(interval, name)
                if pq is not None:
                    q = self.quantity(pq)
                    if q:
                        rng[side] = q
            return {"valueRange": rng} if rng else None
        date = self.child(el, "DateResult")
        if date is not None:
            m = self.moment(date, "DateResultValue", future_ok=True)
            return {"valueDateTime": m.fhir} if m else None
        tr = self.child(el, "TextResult")
        if tr is None:
            return None
        value_el = self.child(tr, "TextResultValue")
        text = _text_of(value_el)
        if _has_xhtml(value_el):
            item.html.extend(etree.tostring(c, encoding="unicode", with_tail=False) for c in element_children(value_el))
        elif text:
            item.html.append("<p>" + html.escape(text).replace("\n", "<br/>") + "</p>")
        codings = []
        for tc in self.kids(tr, "TextCode"):
            c = self.coding(tc, codes.RESULT_VALUE_SYSTEMS)
            if c:
                codings.append(c)
        unit_text = self.text(tr, "Unit")
        if unit_text and text and not codings:
            m = re.match(r"^([<>]=?)?\s*([+-]?\d+(?:[.,]\d+)?)$", text)
            if m:
                try:
                    unit = to_ucum(unit_text)
                    number = read_decimal(m.group(2))
                except (UnitError, ValueProblem) as exc:
                    self.error("X99", where(tr, "Unit"), str(exc))
                    return None
                assert number is not None
                q = _quantity(Number(number.value), unit)
                if m.group(1):
                    q = {"value": q["value"], "comparator": m.group(1), **{k: v for k, v in q.items() if k != "value"}}
                return {"valueQuantity": q}
            text = f"{text} {unit_text}"
        cc: dict[str, Any] = {}
        if codings:
            cc["coding"] = codings
        if text:
            cc["text"] = text
        elif codings:
            cc["text"] = codings[0].get("display", codings[0]["code"])
        if codings:
            item.html.append("<p>" + html.escape(", ".join(c.get("display", c["code"]) for c in codings)) + "</p>")
        return {"valueCodeableConcept": cc} if cc else None

    def interpretation(self, el: etree._Element) -> list[dict[str, Any]] | None:
        dev = self.child(el, "DevResultInd")
        if dev is None or not (dev.get("V") or "").strip():
            return None
        v = dev.get("V").strip()
        row = codes.DEVIATION_8244.get(v)
        if row is None:
            self.error("X99", where(dev), f"unknown deviation code '{v}' (kodeverk 8244)")
            return None
        display, v3, v3_display = row
        return [
            {
                "coding": [
                    {"system": codes.kodeverk_system("8244"), "code": v, "display": display},
                    {"system": codes.V3_INTERPRETATION, "code": v3, "display": v3_display},
                ],
                "text": dev.get("DN") or display,
            }
        ]

    def notes(self, el: etree._Element) -> list[dict[str, str]]:
        notes = []
        comment = self.text(el, "Comment")
        if comment:
            notes.append(_annotation(comment))
        for inv in self.kids(el, "Investigation"):
            c = self.text(inv, "Comment")
            if c:
                notes.append(_annotation(f"Kommentar til undersøkelse: {c}"))
        diag = self.child(el, "DiagComment")
        if diag is not None:
            parts = [_cs_display(self.child(diag, "Concept"))]
            for mod in self.kids(diag, "Modifier"):
                parts.append(
                    " ".join(
                        x
                        for x in [_cs_display(self.child(mod, "Name"))]
                        + [_cs_display(v) for v in self.kids(mod, "Value")]
                        if x
                    )
                )
            text = "; ".join(p for p in parts if p)
            if text:
                notes.append(_annotation(f"Diagnostisk kommentar: {text}"))
        return notes

    def method(self, el: etree._Element) -> dict[str, Any] | None:
        codings = []
        for inv in self.kids(el, "Investigation"):
            for spec in self.kids(inv, "Spec"):
                c = self.coding(spec, codes.SPEC_SYSTEMS)
                if c:
                    codings.append(c)
        if not codings:
            return None
        return {"coding": codings, "text": codings[0].get("display", codings[0]["code"])}

    def reference_ranges(self, el: etree._Element, quantity: dict[str, Any] | None) -> list[dict[str, Any]]:
        out = []
        for ri in self.kids(el, "RefInterval"):
            descr = self.text(ri, "Descr")
            if not descr:
                continue
            rr: dict[str, Any] = {"text": descr}
            if quantity:
                rr.update(_parse_range(descr, quantity))
            out.append(rr)
        return out

    def structured_info(self, info: etree._Element) -> str | None:
        parts = [_cs_display(self.child(info, "Type"))]
        for name, sub in (("TextInfo", "Text"), ("IntegerInfo", "Integer")):
            for x in self.kids(info, name):
                parts.append(self.text(x, sub))
        for x in self.kids(info, "PhysicalInfo"):
            q = self.child(x, "Quantity")
            if q is not None:
                parts.append(" ".join(p for p in (q.get("V"), q.get("U")) if p))
        for x in self.kids(info, "CodedInfo"):
            parts.append(_cs_display(self.child(x, "Code")))
        for x in self.kids(info, "BooleanInfo"):
            f = self.child(x, "Flag")
            if f is not None and f.get("V"):
                parts.append("ja" if f.get("V").strip().lower() in ("true", "1") else "nei")
        text = ": ".join(p for p in parts[:1] if p)
        rest = ", ".join(p for p in parts[1:] if p)
        return f"{text}: {rest}" if text and rest else (text or rest or None)

    def aggregate_tags(self, top: Item) -> None:
        tags: dict[tuple[str, str], dict[str, str]] = {}
        seen: set[int] = set()

        def walk(it: Item) -> None:
            if id(it) in seen:
                return
            seen.add(id(it))
            res = it.resource
            for coding in res.get("code", {}).get("coding", []):
                if coding["system"] != codes.kodeverk_system("8243"):
                    tags.setdefault((coding["system"], coding["code"]), _tag(coding))
            for coding in res.get("valueCodeableConcept", {}).get("coding", []):
                tags.setdefault((coding["system"], coding["code"]), _tag(coding))
            for member in it.children + it.members:
                walk(member)

        walk(top)
        if tags:
            top.resource["meta"] = {"tag": list(tags.values())}

    # -- the report ------------------------------------------------------------------------------

    def diagnostic_report(
        self,
        dr_status: str | None,
        status_code: str,
        msg_descr: str,
        issue_date: Moment | None,
        appr_date: Moment | None,
        performer_url: str | None,
        report_kind: str,
        report_value: str,
        req_id: str | None,
    ) -> dict[str, Any]:
        sr = self.sr
        tags = []
        if self.serv_type in codes.SERV_TYPE_7309:
            tags.append(
                {
                    "system": codes.kodeverk_system("7309"),
                    "code": self.serv_type,
                    "display": codes.SERV_TYPE_7309[self.serv_type],
                }
            )
        if status_code in codes.REPORT_STATUS_7306:
            tags.append(
                {
                    "system": codes.kodeverk_system("7306"),
                    "code": status_code,
                    "display": codes.REPORT_STATUS_7306[status_code],
                }
            )
        dr: dict[str, Any] = {"resourceType": "DiagnosticReport"}
        if tags:
            dr["meta"] = {"tag": tags}
        ext: list[dict[str, Any]] = []
        if issue_date:
            ext.append({"url": EXT_REPORT_DATE, "valueDateTime": issue_date.fhir})
        if appr_date:
            ext.append({"url": EXT_APPROVAL_DATE, "valueDateTime": appr_date.fhir})
        comment = self.text(sr, "Comment")
        if comment:
            ext.append({"url": EXT_COMMENT, "valueAnnotation": {"text": comment}})
        for coded in self.kids(sr, "CodedComment"):
            cc = self.concept(coded, allowed=codes.REPORT_COMMENT_SYSTEMS)
            if cc:
                ext.append({"url": EXT_COMMENT, "valueCodeableConcept": cc})
        if self.kids(sr, "RefDoc"):
            ext.append(
                {
                    "url": EXT_COMMENT,
                    "valueAnnotation": {"text": "Vedlegg (RefDoc) i originalmeldingen er ikke overført."},
                }
            )
        cancel = _cs_display(self.child(sr, "CancellationCode"))
        if cancel:
            ext.append(_other_info("Kanselleringskode", cancel))
        if ext:
            dr["extension"] = ext
        idents = []
        if report_kind == "ServReportId" and report_value:
            idents.append(_ident("ServReportId", self.idsys("ServReportId"), report_value, use="official"))
        if req_id:
            idents.append(
                _ident(
                    "ServReqId",
                    self.idsys("ServReqId"),
                    req_id,
                    use="official" if report_kind == "ServReqId" else "secondary",
                )
            )
        if self.m.msg_id:
            idents.append(_ident("MsgId", self.idsys("MsgId"), self.m.msg_id, use="secondary"))
        if not any(i["type"]["coding"][0]["code"] == report_kind for i in idents):
            idents.insert(0, _ident(report_kind, self.idsys(report_kind), report_value, use="official"))
        dr["identifier"] = idents
        if self.sr_urls:
            dr["basedOn"] = [{"reference": u} for u in self.sr_urls]
        dr["status"] = dr_status or "unknown"
        if msg_descr in codes.MSG_DESCR_8202:
            display, main = codes.MSG_DESCR_8202[msg_descr]
            if main:
                dr["category"] = [
                    {
                        "coding": [
                            {"system": codes.MAIN_EXPERTISE_SYSTEM, "code": main, "display": codes.MAIN_EXPERTISE[main]}
                        ]
                    }
                ]
            dr["code"] = {
                "coding": [{"system": codes.kodeverk_system("8202"), "code": msg_descr, "display": display}],
                "text": display,
            }
        else:
            dr["code"] = {"text": msg_descr or "Svarrapport"}
        if self.patient_ref:
            dr["subject"] = self.patient_ref
        effective = [i.effective for i in self.items if i.effective is not None]
        if effective:
            dr["effectiveDateTime"] = min(effective, key=lambda m: m.at).fhir
        elif issue_date or self.m.gen_date:
            dr["effectiveDateTime"] = (issue_date or self.m.gen_date).fhir  # type: ignore[union-attr]
        if self.m.issued:
            dr["issued"] = self.m.issued
        if performer_url:
            dr["performer"] = [{"reference": performer_url}]
        if self.specimen_urls:
            dr["specimen"] = [{"reference": u} for u in self.specimen_urls]
        results = [i.full_url for i in self.items if i.parent is None and not i.referenced]
        if results:
            dr["result"] = [{"reference": u} for u in results]
        form = self.presented_form()
        if form:
            dr["presentedForm"] = [form]
        return dr

    def presented_form(self) -> dict[str, Any] | None:
        """A readable rendering of the text results (pathology, radiology and any XHTML result).

        This is not the original message (NILAR keeps person identification out of the store); it holds
        only the mapped results' names and texts."""
        has_xhtml = any(_has_xhtml(self.child(self.child(i.el, "TextResult"), "TextResultValue")) for i in self.items)
        if not (self.category_code in ("HPAT", "HRAD") or has_xhtml):
            return None
        parts: list[str] = []
        emitted: set[int] = set()

        def emit(it: Item, depth: int) -> None:
            if id(it) in emitted:
                return
            emitted.add(id(it))
            title = (it.code or {}).get("text")
            if title and (it.own_codes or it.parent is None):
                level = min(depth + 2, 6)
                parts.append(f"<h{level}>{html.escape(title)}</h{level}>")
            heading = self.child(self.child(it.el, "TextResult"), "Heading")
            if (
                heading is not None
                and heading.get("DN")
                and (it.code or {}).get("coding", [{}])[0].get("code") != heading.get("V")
            ):
                parts.append(f"<p><b>{html.escape(heading.get('DN'))}</b></p>")
            parts.extend(it.html)
            for member in it.children + it.members:
                emit(member, depth + 1)

        for it in self.items:
            if it.parent is None and not it.referenced:
                emit(it, 0)
        if not any(p for p in parts if not p.startswith("<h")):
            return None
        body = '<div xmlns="http://www.w3.org/1999/xhtml">' + "".join(parts) + "</div>"
        return {
            "contentType": "text/html",
            "language": "nb",
            "data": base64.b64encode(body.encode("utf-8")).decode("ascii"),
            "title": "Tekstsvar",
        }


def _tag(coding: dict[str, str]) -> dict[str, str]:
    return {k: coding[k] for k in ("system", "code", "display") if k in coding}


def _quantity(number: Number, unit: Unit) -> dict[str, Any]:
    q: dict[str, Any] = {"value": number.as_json()}
    if unit.code is not None:
        q["unit"] = unit.original.strip() or unit.code
        q["system"] = UCUM
        q["code"] = unit.code
    return q


def _quantity_text(q: dict[str, Any]) -> str:
    return f"{q.get('comparator', '')}{q['value']} {q.get('unit', '')}".strip()


_RANGE = re.compile(r"^\s*([+-]?\d+(?:[.,]\d+)?)\s*(?:-|–|—)\s*([+-]?\d+(?:[.,]\d+)?)\s*$")
_BOUND = re.compile(r"^\s*([<>])\s*=?\s*([+-]?\d+(?:[.,]\d+)?)\s*$")


def _parse_range(descr: str, quantity: dict[str, Any]) -> dict[str, Any]:
    unit = {k: quantity[k] for k in ("unit", "system", "code") if k in quantity}

    def q(text: str) -> dict[str, Any]:
        number = read_decimal(text.replace(",", "."))
        assert number is not None
        return {"value": number.as_json(), **unit}

    if m := _RANGE.match(descr):
        return {"low": q(m.group(1)), "high": q(m.group(2))}
    if m := _BOUND.match(descr):
        return {"high": q(m.group(2))} if m.group(1) == "<" else {"low": q(m.group(2))}
    return {}
