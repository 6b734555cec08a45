"""HL7 v2.x ORU^R01 (laboratory results) -> FHIR R4 transaction Bundle, and the ACK that answers the message.

`map_oru` reads one message (v2.3 to v2.9; segments separated by CR, LF or CRLF; an optional UTF-8 byte order
mark) and returns the same `MappingResult` as the Svarrapport mapper: a transaction Bundle when the message
can be mapped, otherwise the faults that refuse it. Nothing is stored here. `ack` builds the original-mode
acknowledgement (MSA AA, or AE/AR with one ERR per fault) in the message's own separators and version.

Structure
    The message is read as ORU^R01 groups: PID (one patient, v2.7+ patient observations), then order groups
    ORC?/OBR with their NTE, OBX (+NTE) and SPM (+OBX). Segments that carry no result (PD1, PV1, PRT, TQ1,
    CTD, FT1, CTI, TXA, SFT, Z-segments ...) are skipped. Each OBR becomes a DiagnosticReport, a
    ServiceRequest, the Specimens of its SPM segments (or OBR-15 in older versions) and one Observation per
    OBX. OBX values of type ED and RP (documents, pointers) are not results: they become attachments in
    `DiagnosticReport.presentedForm`.

Identifiers
    The producer is the sending facility (MSH-4, else the sending application MSH-3). An identifier whose
    assigning authority carries an ISO OID (or a UUID) keeps it as the system (`urn:oid:...`). Namespace ids
    are local by definition, so identifiers with only a namespace, or none, are scoped to the producer:
    `urn:kjerne:hl7v2:<producer>:<kind>[:<namespace>]` with <kind> one of patient, filler-order,
    placer-order, placer-group, specimen, observation, practitioner, organization. Two labs' "MR 123" can
    therefore never name the same Patient. Norwegian national identity numbers (identifier type FNR, DNR,
    FHN or NNNOR, or the Volven OIDs as assigning authority) are checked and referenced by identifier only
    (`{"type": "Patient", "identifier": ...}`): the store resolves them to its Patient. Other patients are
    written as a Patient resource, updated conditionally on the first PID-3 identifier and referenced by its
    `urn:uuid:` fullUrl.

    The DiagnosticReport is updated on its filler order number (OBR-3/ORC-3, else the placer number), which
    stays the same across preliminary, final and corrected versions. Observations, Specimens,
    ServiceRequests and PractitionerRoles are updated on a derived key (`urn:kjerne:hl7v2:key`): a UUID made
    from the report identifier and the element's place in it (for a result: its code, OBX-4 sub-id and
    occurrence), from the specimen id, or from the practitioner's identifier. The same message mapped twice
    gives the same Bundle.

Codes
    Coding systems are read from the coded element's coding-system component (CWE-3/6, or the OID in
    CWE-14/17): LN -> http://loinc.org, SCT -> http://snomed.info/sct, HL7nnnn -> the v2 table's code system,
    NPU, NLK, ICD-10, ATC and UCUM by their canonical URIs, an OID as `urn:oid:`. Local codes (L, 99zzz and
    names Kjerne does not know) are scoped to the producer: `urn:kjerne:hl7v2:local:<producer>[:<name>]`.
    Units (OBX-6) are mapped to UCUM by `units.to_ucum`; a unit that cannot be read is a fault.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import logging
import re
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import hl7

from kjerne.fhir.identifiers import (
    OID_DNR,
    OID_FHN,
    OID_FNR,
    OID_HERID,
    OID_HPR,
    birth_date,
    is_dnr,
    is_valid_fnr,
    is_valid_herid,
    is_valid_hpr,
    person_checksum_ok,
)
from kjerne.services.provesvar import codes
from kjerne.services.provesvar.faults import Fault
from kjerne.services.provesvar.svarrapport_map import CLOCK_SKEW, EXT_COMMENT, MappingResult
from kjerne.services.provesvar.tolerances import OSLO, Moment, Number, ValueProblem, read_decimal, read_national_id
from kjerne.services.provesvar.units import UCUM, Unit, UnitError, parse_ucum, to_ucum

logger = logging.getLogger(__name__)

ID_BASE = "urn:kjerne:hl7v2"
KEY_SYSTEM = f"{ID_BASE}:key"
LOCAL_CODES = f"{ID_BASE}:local"
_UUID_NS = uuid.uuid5(uuid.NAMESPACE_URL, ID_BASE)

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"
V2_0078 = "http://terminology.hl7.org/CodeSystem/v2-0078"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
DATA_ABSENT_REASON = "http://terminology.hl7.org/CodeSystem/data-absent-reason"

INTERNAL_ERROR = "the message could not be mapped (internal error)"

# HL7 table 0357 (message error condition codes), used as Fault.code and in ERR-3.
ERROR_CODES = {
    "0": "Message accepted",
    "100": "Segment sequence error",
    "101": "Required field missing",
    "102": "Data type error",
    "103": "Table value not found",
    "200": "Unsupported message type",
    "201": "Unsupported event code",
    "202": "Unsupported processing id",
    "203": "Unsupported version id",
    "204": "Unknown key identifier",
    "205": "Duplicate key identifier",
    "206": "Application record locked",
    "207": "Application internal error",
}
# Faults that reject the message as a whole (MSA-1 AR): it was not a message Kjerne takes, or Kjerne failed.
REJECT_CODES = frozenset({"200", "201", "202", "203", "207"})

# Coding-system names (HL7 table 0396 and Norwegian usage) -> FHIR code system URIs.
CODE_SYSTEMS = {
    "LN": LOINC,
    "LOINC": LOINC,
    "SCT": SNOMED,
    "SNOMEDCT": SNOMED,
    "UCUM": UCUM,
    "I10": "http://hl7.org/fhir/sid/icd-10",
    "ICD10": "http://hl7.org/fhir/sid/icd-10",
    "I9C": "http://hl7.org/fhir/sid/icd-9-cm",
    "ATC": "http://www.whocc.no/atc",
    "NPU": "urn:oid:1.2.208.176.2.1",
    "NLK": codes.kodeverk_system("7280"),
}
# Code-system OIDs with a canonical FHIR URI.
CODE_SYSTEM_OIDS = {
    "2.16.840.1.113883.6.1": LOINC,
    "2.16.840.1.113883.6.96": SNOMED,
    "2.16.840.1.113883.6.8": UCUM,
    "2.16.840.1.113883.6.3": "http://hl7.org/fhir/sid/icd-10",
}

# OBX-11 observation result status (HL7 table 0085) -> Observation.status.
OBSERVATION_STATUS = {
    "A": "amended",
    "B": "amended",
    "C": "corrected",
    "D": "entered-in-error",
    "F": "final",
    "I": "registered",
    "N": "cancelled",
    "O": "registered",
    "P": "preliminary",
    "R": "preliminary",
    "S": "preliminary",
    "U": "final",
    "W": "entered-in-error",
    "X": "cancelled",
}
# Statuses that say there is no result yet (or none will come): a value in OBX-5 is not mapped.
NO_RESULT_STATUSES = frozenset({"I", "O", "N", "X"})

# OBR-25 result status (HL7 table 0123) -> DiagnosticReport.status.
REPORT_STATUS = {
    "O": "registered",
    "I": "registered",
    "S": "registered",
    "A": "partial",
    "P": "preliminary",
    "C": "corrected",
    "R": "partial",
    "F": "final",
    "X": "cancelled",
}

# ORC-5 order status (HL7 table 0038) -> ServiceRequest.status.
ORDER_STATUS = {
    "A": "active",
    "CA": "revoked",
    "CM": "completed",
    "DC": "revoked",
    "ER": "entered-in-error",
    "HD": "on-hold",
    "IP": "active",
    "RP": "revoked",
    "SC": "active",
}

# OBX-8 abnormal flags (HL7 table 0078) with the HL7 v3 ObservationInterpretation code of the same meaning.
V3_INTERPRETATION_DISPLAY = {
    "<": "Off scale low",
    ">": "Off scale high",
    "A": "Abnormal",
    "AA": "Critical abnormal",
    "B": "Better",
    "D": "Significant change down",
    "DET": "Detected",
    "E": "Equivocal",
    "H": "High",
    "HH": "Critical high",
    "HU": "Significantly high",
    "I": "Intermediate",
    "IND": "Indeterminate",
    "L": "Low",
    "LL": "Critical low",
    "LU": "Significantly low",
    "MS": "moderately susceptible",
    "N": "Normal",
    "ND": "Not detected",
    "NEG": "Negative",
    "NR": "Non-reactive",
    "NS": "Non-susceptible",
    "POS": "Positive",
    "R": "Resistant",
    "RR": "Reactive",
    "S": "Susceptible",
    "SDD": "Susceptible-dose dependent",
    "SYN-R": "Synergy - resistant",
    "SYN-S": "Synergy - susceptible",
    "U": "Significant change up",
    "VS": "very susceptible",
    "W": "Worse",
    "WR": "Weakly reactive",
}
# Table 0078 flags without a v3 equivalent: kept in the v2 table's code system.
V2_ONLY_INTERPRETATION = {
    "AC": "Anti-complementary substances present",
    "QCF": "Quality Control Failure",
    "TOX": "Cytotoxic substance present",
}

# HL7 table 0074 (diagnostic service section), for DiagnosticReport.category.
SERVICE_SECTIONS = frozenset(
    {
        "AU", "BG", "BLB", "CG", "CH", "CP", "CT", "CTH", "CUS", "EC", "EN", "HM", "ICU", "IMM", "LAB", "MB",
        "MCB", "MYC", "NMR", "NMS", "NRS", "OSL", "OT", "OTH", "OUS", "PAT", "PF", "PHR", "PHY", "PT", "RAD",
        "RC", "RT", "RUS", "RX", "SP", "SR", "TX", "URN", "VR", "VUS", "XRC",
    }
)  # fmt: skip

# PID-8 administrative sex (HL7 table 0001) -> Patient.gender.
GENDER = {"M": "male", "F": "female", "O": "other", "A": "other", "N": "other", "U": "unknown"}
# XPN-7 name type (HL7 table 0200) -> HumanName.use.
NAME_USE = {"L": "official", "D": "usual", "M": "maiden", "N": "nickname", "A": "anonymous"}

# Patient identifier types (CX-5) that are Norwegian national identity numbers.
NATIONAL_ID_TYPES = {"FNR": OID_FNR, "DNR": OID_DNR, "FHN": OID_FHN, "NNNOR": OID_FNR}

# ED/RP type of data (HL7 table 0191) -> MIME type.
MIME_TYPES = {
    "AP": "application",
    "AU": "audio",
    "IM": "image",
    "NS": "application",
    "SD": "image",
    "SI": "image",
    "TEXT": "text",
    "APPLICATION": "application",
    "AUDIO": "audio",
    "IMAGE": "image",
    "VIDEO": "video",
    "MULTIPART": "multipart",
}


_OID = re.compile(r"^[0-2](\.(0|[1-9]\d*))+$")
_TABLE_CODE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{1,9}$")
_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_TS = re.compile(r"^(\d{4})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:(\d{2})(\.\d{1,4})?)?)?)?)?)?([+-]\d{4})?$")
_TM = re.compile(r"^(\d{2})(?:(\d{2})(?:(\d{2})(\.\d{1,4})?)?)?([+-]\d{4})?$")
_NM = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")
_RANGE = re.compile(r"^\s*([+-]?\d+(?:[.,]\d+)?)\s*(?:-|–|—|to)\s*([+-]?\d+(?:[.,]\d+)?)\s*$", re.IGNORECASE)
_BOUND = re.compile(r"^\s*(<=?|>=?|≤|≥)\s*([+-]?\d+(?:[.,]\d+)?)\s*$")
_WHERE = re.compile(r"^([A-Z][A-Z0-9]{2})(?:\[(\d+)\])?(?:-(\d+))?(?:\.(\d+))?$")


# --------------------------------------------------------------------------------------------------
# Reading the message


class NotHL7v2(ValueError):
    """The input is not one HL7 v2 message."""


@dataclass
class Syntax:
    """The message's delimiters (MSH-1 and MSH-2)."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"
    encoding_characters: str = "^~\\&"

    def unescape(self, text: str) -> str:
        """Resolve escape sequences (HL7 v2 chapter 2): delimiters, hex data, formatting commands."""
        e = self.escape
        if not e or e not in text:
            return text
        out: list[str] = []
        i = 0
        while i < len(text):
            ch = text[i]
            if ch != e:
                out.append(ch)
                i += 1
                continue
            j = text.find(e, i + 1)
            if j < 0:
                out.append(text[i:])
                break
            out.append(self._sequence(text[i + 1 : j]))
            i = j + 1
        return "".join(out)

    def _sequence(self, seq: str) -> str:
        simple = {
            "F": self.field,
            "S": self.component,
            "T": self.subcomponent,
            "R": self.repetition,
            "E": self.escape,
            "P": "#",
            "H": "",
            "N": "",
        }
        if seq in simple:
            return simple[seq]
        if seq == ".br":
            return "\n"
        if seq.startswith(".sp"):
            n = seq[3:].strip().lstrip("+")
            return "\n" * (int(n) if n.isdigit() else 1)
        if seq[:3] in (".in", ".ti", ".sk", ".ce", ".fi", ".nf"):
            return ""
        if seq.startswith("X") and len(seq) > 1:
            try:
                raw = bytes.fromhex(seq[1:])
            except ValueError:
                return f"{self.escape}{seq}{self.escape}"
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                return raw.decode("latin-1")
        if seq[:1] in ("C", "M", "Z"):
            return ""
        return f"{self.escape}{seq}{self.escape}"

    def escape_text(self, text: str) -> str:
        """Text for a field of an outgoing segment: delimiters escaped, line breaks as spaces."""
        e = self.escape
        out = text.replace(e, f"{e}E{e}")
        for ch, code in (
            (self.field, "F"),
            (self.component, "S"),
            (self.repetition, "R"),
            (self.subcomponent, "T"),
        ):
            out = out.replace(ch, f"{e}{code}{e}")
        return re.sub(r"[\r\n]+", " ", out)


@dataclass
class Rep:
    """One repetition of a field: its components, each a list of (still escaped) subcomponents."""

    comps: list[list[str]]
    syntax: Syntax

    def c(self, n: int, s: int = 1) -> str:
        """Component n (1-based), subcomponent s; unescaped and stripped; the HL7 null '""' is empty."""
        if n < 1 or n > len(self.comps):
            return ""
        subs = self.comps[n - 1]
        if s < 1 or s > len(subs):
            return ""
        value = subs[s - 1].strip()
        return "" if value == '""' else self.syntax.unescape(value).strip()

    def text(self) -> str:
        """The whole repetition as text (components joined again, for values a sender left unescaped)."""
        syntax = self.syntax
        parts = [syntax.subcomponent.join(syntax.unescape(s) for s in subs) for subs in self.comps]
        while parts and not parts[-1].strip():
            parts.pop()
        text = syntax.component.join(parts).strip()
        return "" if text == '""' else text

    def subs(self, n: int) -> list[str]:
        if n < 1 or n > len(self.comps):
            return []
        return [self.c(n, s) for s in range(1, len(self.comps[n - 1]) + 1)]

    def sub_rep(self, n: int) -> Rep:
        """Component n read as a repetition whose components are its subcomponents (e.g. CX-4 as an HD)."""
        if n < 1 or n > len(self.comps):
            return Rep([], self.syntax)
        return Rep([[s] for s in self.comps[n - 1]], self.syntax)

    @property
    def empty(self) -> bool:
        return not any(
            self.c(i, s) for i in range(1, len(self.comps) + 1) for s in range(1, 1 + len(self.comps[i - 1]))
        )


@dataclass
class Seg:
    name: str
    occurrence: int  # 1-based among segments with this name
    fields: list[list[Rep]]  # index = field number; fields[0] is the segment name
    raw_fields: list[str]

    def reps(self, n: int) -> list[Rep]:
        """The non-empty repetitions of field n."""
        if n < 1 or n >= len(self.fields):
            return []
        return [r for r in self.fields[n] if not r.empty]

    def rep(self, n: int) -> Rep:
        reps = self.reps(n)
        return reps[0] if reps else Rep([], Syntax())

    def v(self, n: int, c: int = 1, s: int = 1) -> str:
        return self.rep(n).c(c, s)

    def raw(self, n: int) -> str:
        return self.raw_fields[n] if 0 <= n < len(self.raw_fields) else ""

    def where(self, n: int | None = None, c: int | None = None) -> str:
        out = f"{self.name}[{self.occurrence}]"
        if n is not None:
            out += f"-{n}"
            if c is not None:
                out += f".{c}"
        return out


@dataclass
class Message:
    syntax: Syntax
    segments: list[Seg]
    text: str

    @property
    def msh(self) -> Seg:
        return self.segments[0]


def _decode(message: bytes | str) -> tuple[str, list[str]]:
    notes: list[str] = []
    if isinstance(message, str):
        return message.lstrip("\ufeff"), notes
    data = bytes(message)
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    elif data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16"), notes
    try:
        return data.decode("utf-8"), notes
    except UnicodeDecodeError:
        notes.append("the message is not UTF-8; read as ISO 8859-1")
        return data.decode("latin-1"), notes


def normalise(message: bytes | str) -> tuple[str, list[str]]:
    """One message as text with CR segment separators: byte order mark, MLLP framing, blank lines and
    surrounding whitespace removed; LF and CRLF turned into CR."""
    text, notes = _decode(message)
    text = text.strip().strip("\x0b\x1c").replace("\r\n", "\r").replace("\n", "\r")
    lines = [line.strip("\x0b\x1c") for line in text.split("\r")]
    lines = [line.rstrip() if line.strip() else "" for line in lines]
    return "\r".join(line for line in lines if line), notes


def _norm_field(f: Any, syntax: Syntax) -> list[Rep]:
    if isinstance(f, str):
        return [Rep([[f]], syntax)]
    reps: list[Rep] = []
    for rep in f:
        if isinstance(rep, str):
            reps.append(Rep([[rep]], syntax))
            continue
        comps: list[list[str]] = []
        for comp in rep:
            comps.append([comp] if isinstance(comp, str) else [str(s) for s in comp])
        reps.append(Rep(comps, syntax))
    return reps


def read_message(message: bytes | str) -> tuple[Message, list[str]]:
    """Parse one HL7 v2 message. Raises NotHL7v2 when the input is not one."""
    text, notes = normalise(message)
    if text.startswith(("FHS", "BHS")) or sum(1 for line in text.split("\r") if line.startswith("MSH")) > 1:
        raise NotHL7v2("the input holds more than one message (batches are not accepted)")
    if not text.startswith("MSH") or len(text) < 8:
        raise NotHL7v2("the input is not an HL7 v2 message (it does not start with an MSH segment)")
    field_sep = text[3]
    if field_sep.isalnum() or field_sep.isspace():
        raise NotHL7v2("the MSH segment has no valid field separator")
    end = text.find(field_sep, 4)
    enc = text[4:end] if end > 0 else text[4:]
    if (
        not 4 <= len(enc) <= 5
        or field_sep in enc
        or len(set(enc)) != len(enc)
        or any(ch.isalnum() or ch.isspace() for ch in enc)
    ):
        raise NotHL7v2(
            "MSH-2 (encoding characters) must hold the component, repetition, escape and subcomponent separators"
        )
    syntax = Syntax(field_sep, enc[0], enc[1], enc[2], enc[3], enc)
    try:
        parsed = hl7.parse(text)
    except Exception as exc:  # python-hl7 raises several types on malformed input
        raise NotHL7v2(f"the message cannot be parsed: {exc}") from None
    counts: dict[str, int] = {}
    segments: list[Seg] = []
    for seg in parsed:
        name = str(seg[0]).strip()
        counts[name] = counts.get(name, 0) + 1
        raw = [str(f) for f in seg]
        if name == "MSH":
            fields = [[Rep([[name]], syntax)], [Rep([[field_sep]], syntax)], [Rep([[enc]], syntax)]]
            fields += [_norm_field(f, syntax) for f in seg[3:]]
        else:
            fields = [_norm_field(f, syntax) for f in seg]
        segments.append(Seg(name, counts[name], fields, raw))
    return Message(syntax, segments, text), notes


# --------------------------------------------------------------------------------------------------
# Data types


@dataclass(frozen=True)
class HD:
    """Hierarchic designator: namespace id, universal id, universal id type."""

    namespace: str = ""
    universal: str = ""
    universal_type: str = ""

    @classmethod
    def of(cls, rep: Rep) -> HD:
        return cls(rep.c(1), rep.c(2), rep.c(3).upper())

    @property
    def empty(self) -> bool:
        return not (self.namespace or self.universal)

    @property
    def oid(self) -> str | None:
        if self.universal and _OID.match(self.universal) and self.universal_type in ("ISO", ""):
            return self.universal
        return None

    @property
    def global_system(self) -> str | None:
        """A system that names this authority everywhere (ISO OID, UUID or URI), else None."""
        if self.oid:
            return f"urn:oid:{self.oid}"
        if self.universal_type in ("UUID", "GUID") and _UUID_RE.match(self.universal):
            return f"urn:uuid:{self.universal.lower()}"
        if self.universal_type == "URI" and re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", self.universal):
            return self.universal
        return None

    @property
    def label(self) -> str:
        return self.namespace or self.universal


@dataclass(frozen=True)
class EI:
    """Entity identifier: id with its assigning authority."""

    id: str
    authority: HD

    @classmethod
    def of(cls, rep: Rep) -> EI | None:
        if len(rep.comps) >= 1 and len(rep.comps[0]) > 1 and len(rep.comps) <= 2:
            # an EIP (placer^filler) or an EI written in subcomponents: the first EI
            sub = rep.sub_rep(1)
            return cls(sub.c(1), HD(sub.c(2), sub.c(3), sub.c(4).upper())) if sub.c(1) else None
        return cls(rep.c(1), HD(rep.c(2), rep.c(3), rep.c(4).upper())) if rep.c(1) else None


def _token(text: str) -> str:
    return quote(text.strip(), safe="-._~")


def _uuid(*parts: str) -> str:
    return str(uuid.uuid5(_UUID_NS, "|".join(parts)))


def _full_url(resource_type: str, key: str) -> str:
    return f"urn:uuid:{_uuid(resource_type, key)}"


def _conditional(resource_type: str, system: str, value: str) -> dict[str, str]:
    return {"method": "PUT", "url": f"{resource_type}?identifier={quote(system, safe=':/')}|{quote(value, safe='')}"}


def _key_ident(value: str) -> dict[str, str]:
    return {"use": "secondary", "system": KEY_SYSTEM, "value": value}


def _fhir_offset(at: dt.datetime) -> str:
    offset = at.utcoffset() or dt.timedelta(0)
    total = int(offset.total_seconds() // 60)
    sign = "+" if total >= 0 else "-"
    total = abs(total)
    return f"{sign}{total // 60:02d}:{total % 60:02d}"


def read_ts(raw: str) -> Moment | None:
    """An HL7 TS/DTM/DT value -> Moment. None when empty; ValueProblem when unreadable. A time without an
    offset is Norwegian local time."""
    v = raw.strip()
    if not v:
        return None
    m = _TS.match(v)
    if not m:
        raise ValueProblem(f"'{raw}' is not an HL7 date/time")
    y, mo, d, h, mi, s, fraction, tz = m.groups()
    try:
        tzinfo: dt.tzinfo = OSLO
        if tz:
            hours, minutes = int(tz[1:3]), int(tz[3:5])
            if hours > 14 or minutes > 59:
                raise ValueError(tz)
            delta = dt.timedelta(hours=hours, minutes=minutes)
            tzinfo = dt.timezone(delta if tz[0] == "+" else -delta)
        if h is not None:
            us = int((fraction or ".0")[1:].ljust(6, "0"))
            at = dt.datetime(int(y), int(mo), int(d), int(h), int(mi or 0), int(s or 0), us, tzinfo=tzinfo)
            text = at.strftime("%Y-%m-%dT%H:%M:%S") + (fraction or "") + _fhir_offset(at)
            return Moment(text, at, True)
        at = dt.datetime(int(y), int(mo or 1), int(d or 1), tzinfo=tzinfo)
        text = y + (f"-{mo}" if mo else "") + (f"-{d}" if d else "")
        return Moment(text, at, False)
    except ValueError:
        raise ValueProblem(f"'{raw}' is not a valid date/time") from None


def _number(text: str) -> Number:
    """An HL7 NM value. A decimal comma is read with a warning (by the caller); anything else is refused."""
    v = text.strip()
    if _NM.match(v):
        return Number(Decimal(v))
    n = read_decimal(v)  # raises ValueProblem for what is not a number
    if n is None:
        raise ValueProblem(f"'{text}' is not a number")
    return n


_ISO_FACTORS = {"tera": "10*12", "giga": "10*9", "mega": "10*6", "kilo": "10*3"}


def _unit_variant(raw: str) -> str:
    """ISO 2955 style spellings (`tera.l-1`, `giga/l`) in UCUM terms: spelled-out factors as powers of ten, a
    trailing single reciprocal as a division."""
    parts = re.split(r"([./])", raw.strip())
    text = "".join(_ISO_FACTORS.get(p.lower(), p) for p in parts)
    m = re.match(r"^(.+)\.([A-Za-z\[\]]+)-1$", text)
    return f"{m.group(1)}/{m.group(2)}" if m else text


def read_unit(rep: Rep) -> Unit:
    """OBX-6 (CE/CWE) -> UCUM. Raises UnitError when the unit cannot be read."""
    code, text, system = rep.c(1), rep.c(2), rep.c(3).upper()
    if not code and not text:
        return Unit(None, "")
    shown = text or code
    if system == "UCUM" and code:
        try:
            return Unit(parse_ucum(code), shown)
        except UnitError as exc:
            raise UnitError(f"unit '{code}' is marked UCUM but is not a UCUM expression ({exc})") from None
    raw = code or text
    try:
        return Unit(to_ucum(raw).code, shown)
    except UnitError as first:
        variant = _unit_variant(raw)
        if variant != raw:
            try:
                return Unit(to_ucum(variant).code, shown)
            except UnitError:
                pass
        raise first from None


def _quantity(number: Number, unit: Unit) -> dict[str, Any]:
    q: dict[str, Any] = {"value": number.as_json()}
    if unit.code is not None:
        q["unit"] = unit.original.strip() or unit.code
        q["system"] = UCUM
        q["code"] = unit.code
    return q


def _reference_range(text: str, unit_of: dict[str, Any] | None) -> dict[str, Any]:
    rr: dict[str, Any] = {"text": text}
    if unit_of is None:
        return rr
    unit: dict[str, Any] = {k: unit_of[k] for k in ("unit", "system", "code") if k in unit_of}

    def q(value: str) -> dict[str, Any]:
        return {"value": Number(Decimal(value.replace(",", "."))).as_json(), **unit}

    if m := _RANGE.match(text):
        rr["low"], rr["high"] = q(m.group(1)), q(m.group(2))
    elif m := _BOUND.match(text):
        if m.group(1) in ("<", "<=", "≤"):
            rr["high"] = q(m.group(2))
        else:
            rr["low"] = q(m.group(2))
    return rr


def _person_name(rep: Rep, family: int = 2, given: int = 3, middle: int = 4, suffix: int = 5, prefix: int = 6,
                 degree: int = 7) -> str | None:  # fmt: skip
    parts = [rep.c(prefix), rep.c(given), rep.c(middle), rep.c(family, 1), rep.c(suffix), rep.c(degree)]
    text = " ".join(p for p in parts if p)
    return text or None


def _attachment_type(kind: str, subtype: str) -> str:
    major = MIME_TYPES.get(kind.upper())
    if major and subtype:
        return f"{major}/{subtype.lower()}"
    return "application/octet-stream"


# --------------------------------------------------------------------------------------------------
# Message groups


@dataclass
class ObxItem:
    seg: Seg
    notes: list[Seg] = field(default_factory=list)
    before_obr: bool = False


@dataclass
class SpecimenGroup:
    seg: Seg
    notes: list[Seg] = field(default_factory=list)
    obx: list[ObxItem] = field(default_factory=list)


@dataclass
class OrderGroup:
    orc: Seg | None = None
    obr: Seg | None = None
    notes: list[Seg] = field(default_factory=list)
    obx: list[ObxItem] = field(default_factory=list)
    specimens: list[SpecimenGroup] = field(default_factory=list)


@dataclass
class PatientGroup:
    pid: Seg
    obx: list[ObxItem] = field(default_factory=list)
    orders: list[OrderGroup] = field(default_factory=list)


@dataclass
class Subject:
    reference: dict[str, Any]
    key: str  # system|value of the identifier the patient is known by


@dataclass
class Order:
    """What one OBR becomes, as far as its results need it."""

    report_key: str
    report_url: str
    request_url: str
    status_code: str
    specimen_urls: list[str]
    collected: Moment | None
    effective: Moment | None
    issued: str | None
    forms: list[dict[str, Any]] = field(default_factory=list)


# --------------------------------------------------------------------------------------------------
# The mapper


def map_oru(message: bytes | str, *, received_at: dt.datetime | None = None) -> MappingResult:
    """Map one HL7 v2 ORU^R01 message to a FHIR transaction Bundle. Never raises on bad input."""
    received = received_at or dt.datetime.now(dt.UTC)
    if received.tzinfo is None:
        received = received.replace(tzinfo=dt.UTC)
    try:
        msg, notes = read_message(message)
    except NotHL7v2 as exc:
        fault = Fault("200", "message", str(exc))
        return MappingResult(ok=False, bundle=None, warnings=[], errors=[str(fault)], error_faults=[fault])
    mapper = _Mapper(msg, received)
    for note in notes:
        mapper.warning("102", "message", note)
    try:
        mapper.run()
    except Exception as exc:  # a message the mapper cannot handle is refused, never half-mapped
        logger.exception("HL7 v2 mapping failed")
        mapper.errors.append(Fault("207", "message", f"{INTERNAL_ERROR}: {type(exc).__name__}"))
    errors = _dedupe(mapper.errors)
    warnings = _dedupe(mapper.warnings)
    ok = not errors
    msh = msg.msh
    return MappingResult(
        ok=ok,
        bundle=mapper.bundle() if ok else None,
        warnings=[str(w) for w in warnings],
        errors=[str(e) for e in errors],
        msg_id=msh.v(10) or None,
        sender={k: v for k, v in (("name", mapper.sender_name), ("id", mapper.sender)) if v},
        version=msh.v(12),
        service_type=",".join(dict.fromkeys(mapper.service_types)),
        report_ids=mapper.report_ids,
        issued=mapper.message_time.fhir if mapper.message_time and mapper.message_time.has_time else None,
        warning_faults=warnings,
        error_faults=errors,
        message_type="^".join(p for p in (msh.v(9, 1), msh.v(9, 2)) if p) or None,
        gen_date=msh.v(7) or None,
    )


def _dedupe(faults: list[Fault]) -> list[Fault]:
    seen: set[tuple[str, str, str]] = set()
    out = []
    for f in faults:
        if (f.code, f.where, f.text) not in seen:
            seen.add((f.code, f.where, f.text))
            out.append(f)
    return out


class _Mapper:
    def __init__(self, msg: Message, received: dt.datetime) -> None:
        self.msg = msg
        self.received = received
        self.errors: list[Fault] = []
        self.warnings: list[Fault] = []
        self.entries: dict[str, dict[str, Any]] = {}
        self.sender = ""  # producer token used in identifier and code systems
        self.sender_name: str | None = None
        self.sender_org: dict[str, Any] | None = None
        self.message_time: Moment | None = None
        self.report_ids: list[str] = []
        self.service_types: list[str] = []
        self.report_keys: set[str] = set()
        self.roles: dict[str, str] = {}
        self.specimen_keys: dict[str, str] = {}
        self.warned_systems: set[str] = set()

    # -- faults --------------------------------------------------------------------------------------

    def error(self, code: str, where: str, text: str) -> None:
        self.errors.append(Fault(code, where, text))

    def warning(self, code: str, where: str, text: str) -> None:
        self.warnings.append(Fault(code, where, text))

    def moment(self, seg: Seg, n: int, c: int = 1, *, future_ok: bool = False) -> Moment | None:
        raw = seg.v(n, c)
        try:
            m = read_ts(raw)
        except ValueProblem as exc:
            self.error("102", seg.where(n, c if c > 1 else None), str(exc))
            return None
        if m is not None and not future_ok and m.at > self.received + CLOCK_SKEW:
            self.error("102", seg.where(n, c if c > 1 else None), f"date/time {m.fhir} is in the future")
        return m

    # -- bundle --------------------------------------------------------------------------------------

    def add(self, resource: dict[str, Any], full_url: str, request: dict[str, str]) -> None:
        if full_url not in self.entries:
            self.entries[full_url] = {"fullUrl": full_url, "resource": resource, "request": request}

    def bundle(self) -> dict[str, Any]:
        out: dict[str, Any] = {"resourceType": "Bundle", "type": "transaction"}
        control_id = self.msg.msh.v(10)
        if control_id and self.sender:
            out["identifier"] = {"system": f"{ID_BASE}:{self.sender}:message", "value": control_id}
        if self.message_time and self.message_time.has_time:
            out["timestamp"] = self.message_time.fhir
        out["entry"] = list(self.entries.values())
        return out

    # -- systems ---------------------------------------------------------------------------------------

    def id_system(self, kind: str, authority: HD | None) -> str:
        if authority is not None and authority.global_system:
            return authority.global_system
        base = f"{ID_BASE}:{self.sender}:{kind}"
        if authority is not None and authority.label:
            return f"{base}:{_token(authority.label)}"
        return base

    def code_system(self, name: str, oid: str, where: str, default_table: int | None = None) -> str:
        if oid and _OID.match(oid):
            return CODE_SYSTEM_OIDS.get(oid, f"urn:oid:{oid}")
        up = name.upper()
        if not name:
            if default_table:
                return f"http://terminology.hl7.org/CodeSystem/v2-{default_table:04d}"
            self.warn_system("", where, "a code without coding system is read as local to the sender")
            return f"{LOCAL_CODES}:{self.sender}"
        if up in CODE_SYSTEMS:
            return CODE_SYSTEMS[up]
        if m := re.fullmatch(r"HL7(\d{4})", up):
            return f"http://terminology.hl7.org/CodeSystem/v2-{m.group(1)}"
        if _OID.match(name):
            return CODE_SYSTEM_OIDS.get(name, f"urn:oid:{name}")
        if up in ("L", "LOCAL"):
            return f"{LOCAL_CODES}:{self.sender}"
        if not up.startswith("99"):
            self.warn_system(name, where, f"coding system '{name}' is not known; its codes are read as local")
        return f"{LOCAL_CODES}:{self.sender}:{_token(name)}"

    def warn_system(self, name: str, where: str, text: str) -> None:
        if name not in self.warned_systems:
            self.warned_systems.add(name)
            self.warning("103", where, text)

    def concept(self, rep: Rep, where: str, default_table: int | None = None) -> dict[str, Any] | None:
        """A CE/CWE/CNE as a CodeableConcept (primary and alternate coding, original text)."""
        codings = []
        for code_c, text_c, sys_c, ver_c, oid_c in ((1, 2, 3, 7, 14), (4, 5, 6, 8, 17)):
            code = rep.c(code_c)
            if not code:
                continue
            coding = {"system": self.code_system(rep.c(sys_c), rep.c(oid_c), where, default_table), "code": code}
            if rep.c(ver_c):
                coding["version"] = rep.c(ver_c)
            if rep.c(text_c):
                coding["display"] = rep.c(text_c)
            codings.append(coding)
            default_table = None  # the field's default table names the primary code only
        out: dict[str, Any] = {}
        if codings:
            out["coding"] = codings
        text = rep.c(9) or rep.c(2) or rep.c(5)
        if text:
            out["text"] = text
        return out or None

    def table_concept(self, rep: Rep, where: str, table: int, what: str) -> dict[str, Any] | None:
        """A coded field whose default table is `table`; an uncoded value that does not look like a table
        code is kept as text only."""
        if rep.c(1) and not (rep.c(3) or rep.c(14)) and not _TABLE_CODE.match(rep.c(1)):
            self.warning("103", where, f"'{rep.c(1)}' is not a code from HL7 table {table:04d} ({what}); kept as text")
            return {"text": rep.c(9) or rep.c(2) or rep.c(1)}
        return self.concept(rep, where, default_table=table)

    # -- message level -----------------------------------------------------------------------------

    def run(self) -> None:
        msh = self.msg.msh
        kind, event = msh.v(9, 1).upper(), msh.v(9, 2).upper()
        if kind != "ORU":
            shown = "^".join(p for p in (kind, event) if p) or "(empty)"
            self.error(
                "200", msh.where(9), f"message type {shown} is not supported; Kjerne takes ORU^R01 (laboratory results)"
            )
        elif event != "R01":
            self.error("201", msh.where(9), f"event ORU^{event or '(empty)'} is not supported; Kjerne takes ORU^R01")
        version = msh.v(12)
        if not re.fullmatch(r"2\.(3(\.1)?|[4-9](\.\d+)*)", version):
            self.error("203", msh.where(12), f"HL7 version '{version}' is not supported (2.3 to 2.9)")
        if self.errors:
            return
        if not msh.v(10):
            self.error("101", msh.where(10), "message control id missing")
        self.message_time = self.moment(msh, 7)
        self.identify_sender()
        groups = self.walk()
        if not groups:
            self.error("100", "PID", "PID segment missing: the results name no patient")
            return
        if not any(pg.orders for pg in groups):
            self.error("100", "OBR", "OBR segment missing: the message holds no report")
        if not any(pg.obx or any(o.obx or any(s.obx for s in o.specimens) for o in pg.orders) for pg in groups):
            self.error("100", "OBX", "OBX segment missing: the message holds no results")
        for pg in groups:
            self.patient_group(pg)

    def identify_sender(self) -> None:
        msh = self.msg.msh
        facility, app = HD.of(msh.rep(4)), HD.of(msh.rep(3))
        source = facility
        if facility.empty:
            source = app
            if not app.empty:
                self.warning("101", msh.where(4), "sending facility missing; the sending application (MSH-3) "
                             "names the producer")  # fmt: skip
        if source.empty:
            self.error("101", msh.where(4), "sending facility (MSH-4) and application (MSH-3) missing: the "
                       "producer is not identified")  # fmt: skip
            self.sender = "unknown"
            return
        self.sender = _token(source.oid or source.namespace or source.universal)
        self.sender_name = source.namespace or source.universal
        if not facility.empty:
            org: dict[str, Any] = {"type": "Organization"}
            ident = self.org_identifier(facility)
            if ident:
                org["identifier"] = ident
            org["display"] = facility.namespace or facility.universal
            self.sender_org = org

    def org_identifier(self, hd: HD) -> dict[str, str] | None:
        if hd.universal_type in codes.ORG_ID_TYPES and hd.universal:
            return {"system": codes.ORG_ID_TYPES[hd.universal_type], "value": hd.universal}
        if hd.oid:
            return {"system": "urn:ietf:rfc:3986", "value": f"urn:oid:{hd.oid}"}
        return None

    def walk(self) -> list[PatientGroup]:
        patients: list[PatientGroup] = []
        patient: PatientGroup | None = None
        order: OrderGroup | None = None
        specimen: SpecimenGroup | None = None
        last_obx: ObxItem | None = None
        for seg in self.msg.segments[1:]:
            name = seg.name
            if name == "PID":
                patient = PatientGroup(seg)
                patients.append(patient)
                order, specimen, last_obx = None, None, None
            elif name in ("ORC", "OBR"):
                if patient is None:
                    self.error("100", seg.where(), f"{name} before PID: the results name no patient")
                    continue
                if name == "OBR" and order is not None and order.obr is None:
                    order.obr = seg  # the OBR of the preceding ORC
                else:
                    order = OrderGroup(orc=seg) if name == "ORC" else OrderGroup(obr=seg)
                    patient.orders.append(order)
                specimen, last_obx = None, None
            elif name == "SPM":
                if order is None:
                    self.error("100", seg.where(), "SPM outside an order group (no OBR before it)")
                    continue
                specimen = SpecimenGroup(seg)
                order.specimens.append(specimen)
                last_obx = None
            elif name == "OBX":
                item = ObxItem(seg)
                if specimen is not None:
                    specimen.obx.append(item)
                elif order is not None:
                    item.before_obr = order.obr is None
                    order.obx.append(item)
                elif patient is not None:
                    patient.obx.append(item)
                else:
                    self.error("100", seg.where(), "OBX before PID: the result names no patient")
                    continue
                last_obx = item
            elif name == "NTE":
                if last_obx is not None:
                    last_obx.notes.append(seg)
                elif specimen is not None:
                    specimen.notes.append(seg)
                elif order is not None:
                    order.notes.append(seg)
                else:
                    self.warning("0", seg.where(), "a note outside any order or result is not mapped")
            # every other segment (PD1, PV1, PRT, TQ1, CTD, FT1, CTI, TXA, Z-segments ...) carries no result
        return patients

    # -- patient ---------------------------------------------------------------------------------------

    def patient_group(self, pg: PatientGroup) -> None:
        subject = self.patient(pg.pid)
        if not pg.orders:
            self.error("100", pg.pid.where(), "the patient has no OBR (order/report) in the message")
        for i, item in enumerate(pg.obx, start=1):
            self.patient_observation(item, subject, i)
        for og in pg.orders:
            if og.obr is None:
                assert og.orc is not None
                self.error("100", og.orc.where(), "ORC without OBR")
                continue
            self.order(og, subject)

    def patient(self, pid: Seg) -> Subject | None:
        reps = pid.reps(3)
        field_no = 3
        if not reps and pid.reps(2):
            reps, field_no = pid.reps(2), 2
            self.warning("101", pid.where(3), "patient identifier list (PID-3) empty; PID-2 is used")
        if not reps:
            self.error("101", pid.where(3), "patient identifier missing")
            return None
        national: list[tuple[str, str]] = []
        local: list[dict[str, Any]] = []
        failed = False
        for rep in reps:
            value, kind, authority = rep.c(1), rep.c(5).upper(), HD.of(rep.sub_rep(4))
            if not value:
                continue
            nat_system = NATIONAL_ID_TYPES.get(kind)
            if nat_system is None and authority.oid and f"urn:oid:{authority.oid}" in (OID_FNR, OID_DNR, OID_FHN):
                nat_system = f"urn:oid:{authority.oid}"
                kind = {OID_FNR: "FNR", OID_DNR: "DNR", OID_FHN: "FHN"}[nat_system]
            if nat_system is not None:
                checked = self.national_id(value, kind, nat_system, pid.where(field_no))
                if checked is None:
                    failed = True
                else:
                    national.append(checked)
                continue
            ident: dict[str, Any] = {}
            if kind:
                ident["type"] = {"coding": [{"system": V2_0203, "code": kind}]} if kind.isalnum() else {"text": kind}
            ident["system"] = self.id_system("patient", authority)
            ident["value"] = value
            local.append(ident)
        if failed:
            return None
        if national:
            system, value = national[0]
            if len({v for _, v in national}) > 1:
                self.warning("102", pid.where(field_no), f"several national identity numbers; {value} is used")
            self.check_birth_date(pid, value)
            return Subject({"type": "Patient", "identifier": {"system": system, "value": value}}, f"{system}|{value}")
        if not local:
            self.error("101", pid.where(field_no), "patient identifier missing")
            return None
        first = local[0]
        self.warning(
            "0",
            pid.where(field_no),
            f"the patient has no Norwegian national identity number; a Patient is written for identifier "
            f"{first['value']} ({first['system']})",
        )
        key = f"{first['system']}|{first['value']}"
        url = _full_url("Patient", key)
        resource: dict[str, Any] = {"resourceType": "Patient", "identifier": local}
        names = self.names(pid)
        if names:
            resource["name"] = names
        gender = pid.v(8).upper()
        if gender:
            if gender in GENDER:
                resource["gender"] = GENDER[gender]
            else:
                self.warning("103", pid.where(8), f"administrative sex '{gender}' is not in HL7 table 0001; left out")
        born = self.birth_date(pid)
        if born:
            resource["birthDate"] = born
        self.add(resource, url, _conditional("Patient", first["system"], first["value"]))
        return Subject({"reference": url}, key)

    def national_id(self, raw: str, kind: str, system: str, where: str) -> tuple[str, str] | None:
        value, tolerance = read_national_id(raw)
        if tolerance:
            self.warning("102", where, f"'{raw}' read as {value}")
        if not (len(value) == 11 and value.isdigit()):
            self.error("102", where, f"'{raw}' is not an 11-digit national identity number")
            return None
        if system == OID_FHN:
            if not person_checksum_ok(value):
                self.error("102", where, f"check digits wrong in {value}")
                return None
            return system, value
        if not person_checksum_ok(value):
            self.error("102", where, f"check digits wrong in {value}")
            return None
        if not is_valid_fnr(value):
            self.error("102", where, f"{value} does not encode a valid birth date")
            return None
        if is_dnr(value):
            if kind == "FNR":
                self.warning("102", where, f"{value} is a D-number; referenced as D-number")
            return OID_DNR, value
        if kind == "DNR":
            self.error("102", where, f"{value} is typed DNR but is not a D-number")
            return None
        return OID_FNR, value

    def check_birth_date(self, pid: Seg, national_id: str) -> None:
        born = self.birth_date(pid)
        encoded = birth_date(national_id)
        if born and encoded and len(born) == 10 and born != encoded.isoformat():
            self.warning("102", pid.where(7), f"birth date {born} differs from the one in the national identity number")

    def birth_date(self, pid: Seg) -> str | None:
        raw = pid.v(7)
        try:
            m = read_ts(raw)
        except ValueProblem as exc:
            self.warning("102", pid.where(7), f"{exc}; birth date left out")
            return None
        if m is None:
            return None
        if m.at > self.received:
            self.warning("102", pid.where(7), f"birth date {m.fhir} is in the future; left out")
            return None
        return m.fhir[:10]

    def names(self, pid: Seg) -> list[dict[str, Any]]:
        out = []
        for rep in pid.reps(5):
            name: dict[str, Any] = {}
            use = NAME_USE.get(rep.c(7).upper())
            if use:
                name["use"] = use
            if rep.c(1, 1):
                name["family"] = rep.c(1, 1)
            given = [g for g in (rep.c(2), *rep.c(3).split()) if g]
            if given:
                name["given"] = given
            if rep.c(5):
                name["prefix"] = [rep.c(5)]
            if rep.c(4):
                name["suffix"] = [rep.c(4)]
            if len(name) > (1 if "use" in name else 0):
                out.append(name)
        return out

    # -- actors -----------------------------------------------------------------------------------------

    def practitioner(
        self, rep: Rep, where: str, authority: HD | None = None
    ) -> tuple[dict[str, str] | None, str | None]:
        """An XCN (id, name, assigning authority, identifier type) -> (identifier, display name). A CNN passes
        its assigning authority, which it spreads over three components."""
        name = _person_name(rep)
        value, kind = rep.c(1), rep.c(13).upper() if authority is None else ""
        authority = authority if authority is not None else HD.of(rep.sub_rep(9))
        if not value:
            return None, name
        auth_system = f"urn:oid:{authority.oid}" if authority.oid else None
        if kind in codes.PRIVATE_PERSON_ID_TYPES or auth_system in (OID_FNR, OID_DNR):
            self.warning("0", where, "a health professional's national identity number is not passed on")
            return None, name
        if kind == "HPR" or auth_system == OID_HPR:
            if not is_valid_hpr(value):
                self.warning("102", where, f"'{value}' is not a valid HPR number; identifier left out")
                return None, name
            return {"system": OID_HPR, "value": value}, name
        if kind == "HER" or auth_system == OID_HERID:
            if not is_valid_herid(value):
                self.warning("102", where, f"'{value}' is not a valid HER-id; identifier left out")
                return None, name
            return {"system": OID_HERID, "value": value}, name
        return {"system": self.id_system("practitioner", authority), "value": value}, name

    def role(self, ident: dict[str, str] | None, name: str | None) -> str | None:
        """A PractitionerRole for a person named in the message, updated on a key from the identifier, or from
        the producer and the name when there is none (such a role carries nothing but the name)."""
        if ident is None and not name:
            return None
        if ident is not None:
            key = _uuid("PractitionerRole", f"{ident['system']}|{ident['value']}")
        else:
            key = _uuid("PractitionerRole", self.sender, f"name|{name}")
        if key in self.roles:
            return self.roles[key]
        practitioner: dict[str, Any] = {"type": "Practitioner"}
        if ident:
            practitioner["identifier"] = ident
        if name:
            practitioner["display"] = name
        resource = {"resourceType": "PractitionerRole", "identifier": [_key_ident(key)], "practitioner": practitioner}
        url = _full_url("PractitionerRole", key)
        self.add(resource, url, _conditional("PractitionerRole", KEY_SYSTEM, key))
        self.roles[key] = url
        return url

    def organization(self, rep: Rep) -> dict[str, Any] | None:
        """An XON (OBX-23 performing organization) as a logical reference."""
        name = rep.c(1)
        value = rep.c(10) or rep.c(3)
        ref: dict[str, Any] = {"type": "Organization"}
        if value:
            kind, authority = rep.c(7).upper(), HD.of(rep.sub_rep(6))
            if kind in codes.ORG_ID_TYPES:
                ref["identifier"] = {"system": codes.ORG_ID_TYPES[kind], "value": value}
            else:
                ref["identifier"] = {"system": self.id_system("organization", authority), "value": value}
        if name:
            ref["display"] = name
        return ref if len(ref) > 1 else None

    # -- orders -----------------------------------------------------------------------------------------

    def order(self, og: OrderGroup, subject: Subject | None) -> None:
        obr, orc = og.obr, og.orc
        assert obr is not None
        placer = EI.of(obr.rep(2)) or (EI.of(orc.rep(2)) if orc else None)
        filler = EI.of(obr.rep(3)) or (EI.of(orc.rep(3)) if orc else None)
        group = EI.of(orc.rep(4)) if orc else None
        if filler is None and placer is None:
            self.error("101", obr.where(3), "neither filler (OBR-3) nor placer order number (OBR-2): the report "
                       "cannot be identified across versions")  # fmt: skip
            return
        idents: list[dict[str, Any]] = []
        for kind, ei, type_code in (("filler-order", filler, "FILL"), ("placer-order", placer, "PLAC"),
                                    ("placer-group", group, "PGN")):  # fmt: skip
            if ei is not None:
                idents.append(
                    {
                        "use": "official" if not idents else "secondary",
                        "type": {"coding": [{"system": V2_0203, "code": type_code}]},
                        "system": self.id_system(kind, ei.authority),
                        "value": ei.id,
                    }
                )
        if filler is None:
            self.warning("101", obr.where(3), "no filler order number; the report is identified by the placer's")
        report_ident = idents[0]
        report_key = f"{report_ident['system']}|{report_ident['value']}"
        if report_key in self.report_keys:
            self.error("205", obr.where(3), f"order number {report_ident['value']} is used by two OBR segments")
            return
        self.report_keys.add(report_key)
        self.report_ids.append(report_ident["value"])
        report_url = _full_url("DiagnosticReport", report_key)
        request_key = _uuid("ServiceRequest", report_key)
        request_url = _full_url("ServiceRequest", request_key)

        code = self.concept(obr.rep(4), obr.where(4))
        if code is None:
            self.error("101", obr.where(4), "universal service identifier (what was examined) missing")
        status_code = obr.v(25).upper()
        if status_code and status_code not in REPORT_STATUS:
            self.error("103", obr.where(25), f"result status '{status_code}' is not in HL7 table 0123")
        self.service_types.append({"X": "C", "C": "M"}.get(status_code, "N"))

        # times
        observed = self.moment(obr, 7)
        observed_end = self.moment(obr, 8)
        received = self.moment(obr, 14)
        reported = self.moment(obr, 22)
        issued_m = reported if reported and reported.has_time else self.message_time
        issued = issued_m.fhir if issued_m and issued_m.has_time else None

        # specimens
        collector = self.role(*self.practitioner(obr.rep(10), obr.where(10))) if obr.reps(10) else None
        specimen_urls: list[str] = []
        specimen_by_group: dict[int, str] = {}
        collected: Moment | None = None
        for i, group_of_specimen in enumerate(og.specimens, start=1):
            url, when = self.specimen(group_of_specimen, i, report_key, subject, observed, observed_end, received,
                                      collector)  # fmt: skip
            specimen_by_group[id(group_of_specimen)] = url
            if url not in specimen_urls:
                specimen_urls.append(url)
            collected = collected or when
        if not og.specimens and obr.reps(15):
            from_obr = self.obr_specimen(obr, report_key, subject, observed, observed_end, received, collector)
            if from_obr:
                specimen_urls.append(from_obr[0])
                collected = collected or from_obr[1]

        ctx = Order(
            report_key=report_key,
            report_url=report_url,
            request_url=request_url,
            status_code=status_code,
            specimen_urls=specimen_urls,
            collected=collected,
            effective=observed,
            issued=issued,
        )

        # the request
        requester = None
        if obr.reps(16):
            requester = self.role(*self.practitioner(obr.rep(16), obr.where(16)))
        elif orc is not None and orc.reps(12):
            requester = self.role(*self.practitioner(orc.rep(12), orc.where(12)))

        # results
        results: list[str] = []
        statuses: list[str] = []
        occurrences: dict[str, int] = {}
        items: list[tuple[ObxItem, SpecimenGroup | None]] = [(item, None) for item in og.obx]
        items += [(item, group_of_specimen) for group_of_specimen in og.specimens for item in group_of_specimen.obx]
        n_results = 0
        for item, in_specimen in items:
            if item.before_obr:
                self.warning("100", item.seg.where(), "OBX between ORC and OBR is read as part of the order")
            specimen_url = specimen_by_group.get(id(in_specimen)) if in_specimen is not None else None
            if specimen_url is None and len(specimen_urls) == 1:
                specimen_url = specimen_urls[0]
            observation = self.observation(item, subject, ctx, specimen_url, occurrences)
            n_results += 1
            if observation:
                results.append(observation[0])
                statuses.append(observation[1])
        if n_results == 0 and status_code not in ("O", "I", "S", "X"):
            self.error("100", obr.where(), "the report has no results (no OBX after the OBR)")

        # report status
        if status_code in REPORT_STATUS:
            report_status = REPORT_STATUS[status_code]
        elif not status_code:
            report_status = _derived_status(statuses)
            self.warning(
                "101", obr.where(25), f"result status missing; '{report_status}' derived from the results' statuses"
            )
        else:
            report_status = "unknown"

        # ServiceRequest
        request: dict[str, Any] = {"resourceType": "ServiceRequest", "identifier": [*idents, _key_ident(request_key)]}
        order_status = orc.v(5).upper() if orc else ""
        if orc is not None and order_status and order_status not in ORDER_STATUS:
            self.warning("103", orc.where(5), f"order status '{order_status}' is not in HL7 table 0038")
        request["status"] = ORDER_STATUS.get(order_status) or _request_status(report_status)
        request["intent"] = "order"
        if code:
            request["code"] = code
        if subject:
            request["subject"] = subject.reference
        if requester:
            request["requester"] = {"reference": requester}
        if specimen_urls:
            request["specimen"] = [{"reference": u} for u in specimen_urls]
        self.add(request, request_url, _conditional("ServiceRequest", KEY_SYSTEM, request_key))

        # DiagnosticReport
        report: dict[str, Any] = {"resourceType": "DiagnosticReport"}
        comments = [self.note_text(nte) for nte in og.notes]
        comments = [c for c in comments if c]
        if comments:
            report["extension"] = [{"url": EXT_COMMENT, "valueAnnotation": {"text": c}} for c in comments]
        report["identifier"] = idents
        report["basedOn"] = [{"reference": request_url}]
        report["status"] = report_status
        categories = [{"coding": [{"system": V2_0074, "code": "LAB"}]}]
        section = obr.v(24).upper()
        if section and section != "LAB":
            if section in SERVICE_SECTIONS:
                categories.append({"coding": [{"system": V2_0074, "code": section}]})
            else:
                self.warning("103", obr.where(24), f"diagnostic service section '{section}' is not in HL7 table 0074")
        report["category"] = categories
        report["code"] = code or {"text": "Laboratory report"}
        if subject:
            report["subject"] = subject.reference
        if observed and observed_end and observed.has_time and observed_end.has_time:
            report["effectivePeriod"] = {"start": observed.fhir, "end": observed_end.fhir}
        elif observed or collected:
            report["effectiveDateTime"] = (observed or collected).fhir  # type: ignore[union-attr]
        if issued:
            report["issued"] = issued
        if self.sender_org:
            report["performer"] = [dict(self.sender_org)]
        interpreters = []
        for rep in obr.reps(32):
            person = rep.sub_rep(1)  # a CNN in subcomponents
            ident, name = self.practitioner(
                person, obr.where(32), authority=HD(person.c(9), person.c(10), person.c(11).upper())
            )
            interpreter = self.role(ident, name)
            if interpreter:
                interpreters.append({"reference": interpreter})
        if interpreters:
            report["resultsInterpreter"] = interpreters
        if specimen_urls:
            report["specimen"] = [{"reference": u} for u in specimen_urls]
        if results:
            report["result"] = [{"reference": u} for u in results]
        if ctx.forms:
            report["presentedForm"] = ctx.forms
        self.add(report, report_url, _conditional("DiagnosticReport", report_ident["system"], report_ident["value"]))

    def note_text(self, nte: Seg) -> str | None:
        lines = [r.text() for r in nte.reps(3)]
        text = "\n".join(lines).strip()
        return text or None

    # -- specimens ----------------------------------------------------------------------------------------

    def specimen(
        self,
        sg: SpecimenGroup,
        index: int,
        report_key: str,
        subject: Subject | None,
        observed: Moment | None,
        observed_end: Moment | None,
        received: Moment | None,
        collector: str | None,
    ) -> tuple[str, Moment | None]:
        spm = sg.seg
        ids = spm.rep(2)
        placer = EI.of(ids.sub_rep(1)) if ids.c(1) else None
        filler = EI.of(ids.sub_rep(2)) if ids.c(2) else None
        idents: list[dict[str, Any]] = []
        for ei, code in ((filler, "FGN"), (placer, "PGN")):
            if ei is not None:
                idents.append(
                    {
                        "type": {"coding": [{"system": V2_0203, "code": code}]},
                        "system": self.id_system("specimen", ei.authority),
                        "value": ei.id,
                    }
                )
        if idents:  # a specimen number names one specimen of one patient
            patient_key = subject.key if subject else ""
            key = _uuid("Specimen", patient_key, f"{idents[0]['system']}|{idents[0]['value']}")
        else:
            key = _uuid("Specimen", report_key, f"#{index}")
        url = _full_url("Specimen", key)
        res: dict[str, Any] = {"resourceType": "Specimen", "identifier": [*idents, _key_ident(key)]}
        if filler is not None:
            res["accessionIdentifier"] = {k: idents[0][k] for k in ("system", "value")}
        availability = spm.v(20).upper()
        if spm.reps(21):
            res["status"] = "unsatisfactory"
        elif availability in ("Y", "N"):
            res["status"] = "available" if availability == "Y" else "unavailable"
        typ = self.table_concept(spm.rep(4), spm.where(4), 487, "specimen type") if spm.reps(4) else None
        if typ:
            res["type"] = typ
        if subject:
            res["subject"] = subject.reference
        start = self.moment(spm, 17, 1)
        end = self.moment(spm, 17, 2)
        got = self.moment(spm, 18)
        collection: dict[str, Any] = {}
        if start and end and start.has_time and end.has_time and start.fhir != end.fhir:
            collection["collectedPeriod"] = {"start": start.fhir, "end": end.fhir}
        elif start:
            collection["collectedDateTime"] = start.fhir
        elif observed:
            start = observed
            if observed_end and observed.has_time and observed_end.has_time:
                collection["collectedPeriod"] = {"start": observed.fhir, "end": observed_end.fhir}
            else:
                collection["collectedDateTime"] = observed.fhir
        if collector:
            collection["collector"] = {"reference": collector}
        method = self.concept(spm.rep(7), spm.where(7), default_table=488) if spm.reps(7) else None
        if method:
            collection["method"] = method
        site = self.concept(spm.rep(8), spm.where(8)) if spm.reps(8) else None
        if site:
            collection["bodySite"] = site
        if collection:
            res["collection"] = collection
        if got or received:
            res["receivedTime"] = (got or received).fhir  # type: ignore[union-attr]
        notes = [t for t in [spm.v(14), *(self.note_text(n) for n in sg.notes)] if t]
        for rep in spm.reps(21):
            reason = self.concept(rep, spm.where(21), default_table=490)
            if reason and reason.get("text"):
                notes.append(f"Prøven er avvist: {reason['text']}")
        if notes:
            res["note"] = [{"text": t} for t in notes]
        if key in self.specimen_keys:
            if self.entries[self.specimen_keys[key]]["resource"] != res:
                self.warning("102", spm.where(2), "the specimen is described twice with different details; the "
                             "first description is used")  # fmt: skip
            return self.specimen_keys[key], start
        self.specimen_keys[key] = url
        self.add(res, url, _conditional("Specimen", KEY_SYSTEM, key))
        return url, start

    def obr_specimen(
        self,
        obr: Seg,
        report_key: str,
        subject: Subject | None,
        observed: Moment | None,
        observed_end: Moment | None,
        received: Moment | None,
        collector: str | None,
    ) -> tuple[str, Moment | None] | None:
        """A Specimen from OBR-15 (specimen source, before SPM existed)."""
        sps = obr.rep(15)
        source = sps.sub_rep(1)
        if not source.c(1) and not source.c(2):
            return None
        typ = self.table_concept(source, obr.where(15, 1), 70, "specimen source")
        if typ is not None and "coding" not in typ:
            self.warning("102", obr.where(15), "OBR-15 does not hold a specimen source code; no Specimen is made")
            return None
        key = _uuid("Specimen", report_key, "OBR-15")
        url = _full_url("Specimen", key)
        res: dict[str, Any] = {"resourceType": "Specimen", "identifier": [_key_ident(key)]}
        if typ:
            res["type"] = typ
        if subject:
            res["subject"] = subject.reference
        collection: dict[str, Any] = {}
        if observed and observed_end and observed.has_time and observed_end.has_time:
            collection["collectedPeriod"] = {"start": observed.fhir, "end": observed_end.fhir}
        elif observed:
            collection["collectedDateTime"] = observed.fhir
        if collector:
            collection["collector"] = {"reference": collector}
        site = self.concept(sps.sub_rep(4), obr.where(15, 4))
        if site:
            collection["bodySite"] = site
        if collection:
            res["collection"] = collection
        if received:
            res["receivedTime"] = received.fhir
        if sps.c(3):
            res["note"] = [{"text": sps.c(3)}]
        self.add(res, url, _conditional("Specimen", KEY_SYSTEM, key))
        return url, observed

    # -- observations ------------------------------------------------------------------------------------

    def patient_observation(self, item: ObxItem, subject: Subject | None, index: int) -> None:
        obx = item.seg
        kind = obx.v(2).upper()
        if kind in ("ED", "RP"):
            self.warning("0", obx.where(2), f"a {kind} value outside a report (no OBR) is not mapped")
            return
        patient_key = subject.key if subject else "unknown-patient"
        ctx = Order(
            report_key=f"{patient_key}|patient-observations",
            report_url="",
            request_url="",
            status_code="",
            specimen_urls=[],
            collected=None,
            effective=None,
            issued=self.message_time.fhir if self.message_time and self.message_time.has_time else None,
        )
        self.observation(item, subject, ctx, None, {}, stamp=obx.v(14) or f"#{index}")

    def observation(
        self,
        item: ObxItem,
        subject: Subject | None,
        ctx: Order,
        specimen_url: str | None,
        occurrences: dict[str, int],
        stamp: str = "",
    ) -> tuple[str, str] | None:
        obx = item.seg
        kind = obx.v(2).upper()
        if kind in ("ED", "RP"):
            form = self.attachment(obx, kind)
            if form:
                ctx.forms.append(form)
            return None
        code = self.concept(obx.rep(3), obx.where(3))
        if code is None:
            self.error("101", obx.where(3), "observation identifier missing: the result names no analysis")
            return None
        first = (code.get("coding") or [{}])[0]
        code_key = f"{first['system']}|{first['code']}" if first else f"text|{code.get('text', '')}"
        code_key += f"|{obx.v(4)}"
        occurrences[code_key] = occurrences.get(code_key, 0) + 1
        key = _uuid("Observation", ctx.report_key, code_key, stamp, f"#{occurrences[code_key]}")
        url = _full_url("Observation", key)

        raw_status = obx.v(11).upper()
        if raw_status and raw_status not in OBSERVATION_STATUS:
            self.error("103", obx.where(11), f"result status '{raw_status}' is not in HL7 table 0085")
            status = "unknown"
        elif not raw_status:
            status = REPORT_STATUS.get(ctx.status_code, "unknown") if ctx.status_code else "unknown"
            status = {"partial": "preliminary", "registered": "registered"}.get(status, status)
            self.warning("101", obx.where(11), f"result status missing; read as '{status}' from the report")
        else:
            status = OBSERVATION_STATUS[raw_status]

        res: dict[str, Any] = {"resourceType": "Observation"}
        idents: list[dict[str, Any]] = []
        instance = EI.of(obx.rep(21)) if obx.reps(21) else None
        if instance:
            idents.append({"system": self.id_system("observation", instance.authority), "value": instance.id})
        res["identifier"] = [*idents, _key_ident(key)]
        if ctx.request_url:
            res["basedOn"] = [{"reference": ctx.request_url}]
        res["status"] = status
        res["category"] = [
            {"coding": [{"system": OBSERVATION_CATEGORY, "code": "laboratory", "display": "Laboratory"}]}
        ]
        res["code"] = code
        if subject:
            res["subject"] = subject.reference
        effective = self.moment(obx, 14) or ctx.effective or ctx.collected
        self.moment(obx, 19)  # analysis time: checked, not mapped
        if effective:
            res["effectiveDateTime"] = effective.fhir
        if ctx.issued:
            res["issued"] = ctx.issued
        performers = []
        if obx.reps(16):
            url_role = self.role(*self.practitioner(obx.rep(16), obx.where(16)))
            if url_role:
                performers.append({"reference": url_role})
        if obx.reps(23):
            org = self.organization(obx.rep(23))
            if org:
                performers.append(org)
        if not performers and self.sender_org:
            performers.append(dict(self.sender_org))
        if performers:
            res["performer"] = performers

        value = self.value(obx, kind, raw_status)
        if value:
            res.update(value)
        interpretation = self.interpretation(obx)
        if interpretation:
            res["interpretation"] = interpretation
        notes = [t for t in (self.note_text(n) for n in item.notes) if t]
        if notes:
            res["note"] = [{"text": t} for t in notes]
        if obx.reps(20):
            site = self.concept(obx.rep(20), obx.where(20))
            if site:
                res["bodySite"] = site
        if obx.reps(17):
            method = self.concept(obx.rep(17), obx.where(17))
            if method:
                res["method"] = method
        if specimen_url:
            res["specimen"] = {"reference": specimen_url}
        if obx.v(7):
            res["referenceRange"] = [_reference_range(obx.v(7), res.get("valueQuantity"))]
        self.add(res, url, _conditional("Observation", KEY_SYSTEM, key))
        return url, status

    def attachment(self, obx: Seg, kind: str) -> dict[str, Any] | None:
        rep = obx.rep(5)
        title = obx.v(3, 9) or obx.v(3, 2) or obx.v(3, 1)
        out: dict[str, Any] = {}
        if kind == "RP":
            pointer = rep.c(1)
            if not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", pointer):
                self.warning("0", obx.where(5), "a reference pointer that is not an absolute URL is not mapped")
                return None
            out["contentType"] = _attachment_type(rep.c(3), rep.c(4))
            out["url"] = pointer
        else:
            data, encoding = rep.c(5), rep.c(4).upper()
            if not data:
                self.warning("0", obx.where(5), "encapsulated data without content is not mapped")
                return None
            try:
                if encoding == "BASE64":
                    raw = base64.b64decode(data, validate=True)
                elif encoding == "HEX":
                    raw = bytes.fromhex(data)
                elif encoding in ("A", ""):
                    raw = data.encode("utf-8")
                else:
                    self.warning("103", obx.where(5, 4), f"data encoding '{encoding}' is not supported; not mapped")
                    return None
            except (binascii.Error, ValueError):
                self.error("102", obx.where(5, 5), f"encapsulated data is not valid {encoding.lower() or 'text'}")
                return None
            out["contentType"] = _attachment_type(rep.c(2), rep.c(3))
            out["data"] = base64.b64encode(raw).decode("ascii")
        if title:
            out["title"] = title
        return out

    def value(self, obx: Seg, kind: str, raw_status: str) -> dict[str, Any] | None:
        reps = obx.reps(5)
        w = obx.where(5)
        if not reps:
            return None
        if not kind:
            self.error("101", obx.where(2), "value type missing for a result with a value")
            return None
        if raw_status in NO_RESULT_STATUSES:
            self.warning("0", w, f"result status {raw_status} means there is no result; the value is not mapped")
            return None
        if kind in ("TX", "FT", "ST", "ID", "IS"):
            return {"valueString": "\n".join(r.text() for r in reps)}
        if len(reps) > 1:
            self.error("102", w, f"a {kind} value cannot repeat ('{obx.raw(5)}')")
            return None
        rep = reps[0]
        if kind == "NM":
            return self.numeric(obx, rep.c(1), None)
        if kind == "SN":
            return self.structured_numeric(obx, rep)
        if kind == "CQ":
            return self.numeric(obx, rep.c(1), rep.sub_rep(2))
        if kind in ("CE", "CWE", "CNE", "CF"):
            cc = self.concept(rep, w)
            return {"valueCodeableConcept": cc} if cc else None
        if kind in ("DT", "TS", "DTM"):
            m = self.moment(obx, 5, future_ok=True)
            return {"valueDateTime": m.fhir} if m else None
        if kind == "TM":
            tm = _TM.match(rep.c(1))
            if not tm:
                self.error("102", w, f"'{rep.c(1)}' is not a time")
                return None
            h, mi, s = int(tm.group(1)), int(tm.group(2) or 0), int(tm.group(3) or 0)
            if h > 23 or mi > 59 or s > 59:
                self.error("102", w, f"'{rep.c(1)}' is not a time")
                return None
            return {"valueTime": f"{h:02d}:{mi:02d}:{s:02d}"}
        self.warning("103", obx.where(2), f"value type {kind} is not supported; the result is stored without value")
        return {
            "dataAbsentReason": {
                "coding": [{"system": DATA_ABSENT_REASON, "code": "unsupported", "display": "Unsupported"}],
                "text": f"HL7 v2 value type {kind}",
            }
        }

    def unit(self, obx: Seg, rep: Rep | None = None) -> Unit | None:
        rep = rep if rep is not None else obx.rep(6)
        try:
            return read_unit(rep)
        except UnitError as exc:
            self.error("103", obx.where(6), str(exc))
            return None

    def number(self, obx: Seg, text: str, where: str) -> Number | None:
        try:
            n = _number(text)
        except ValueProblem:
            self.error("102", where, f"'{text}' is not a number")
            return None
        if n.tolerance:
            self.warning("102", where, f"decimal comma in '{text}' read as {n.value}")
        return n

    def numeric(self, obx: Seg, text: str, unit_rep: Rep | None) -> dict[str, Any] | None:
        if not text:
            return None
        n = self.number(obx, text, obx.where(5))
        unit = self.unit(obx, unit_rep if unit_rep is not None and not unit_rep.empty else None)
        if n is None or unit is None:
            return None
        return {"valueQuantity": _quantity(n, unit)}

    def structured_numeric(self, obx: Seg, rep: Rep) -> dict[str, Any] | None:
        """SN: comparator ^ number ^ separator/suffix ^ number."""
        w = obx.where(5)
        comparator, first, sep, second = rep.c(1), rep.c(2), rep.c(3), rep.c(4)
        if comparator not in ("", "=", "<", ">", "<=", ">="):
            self.error("102", w, f"comparator '{comparator}' cannot be represented")
            return None
        if not first:
            if comparator or sep or second:
                self.error("102", w, f"structured numeric value '{obx.raw(5)}' has no number")
            return None
        a = self.number(obx, first, w)
        if a is None:
            return None
        if not sep and not second:
            unit = self.unit(obx)
            if unit is None:
                return None
            q = _quantity(a, unit)
            if comparator and comparator != "=":
                q = {"value": q["value"], "comparator": comparator, **{k: v for k, v in q.items() if k != "value"}}
            return {"valueQuantity": q}
        if sep in ("-", ":", "/") and second:
            if comparator and comparator != "=":
                self.error("102", w, f"a comparator cannot go with a range or ratio ('{obx.raw(5)}')")
                return None
            b = self.number(obx, second, w)
            if b is None:
                return None
            if sep == "-":
                unit = self.unit(obx)
                if unit is None:
                    return None
                return {"valueRange": {"low": _quantity(a, unit), "high": _quantity(b, unit)}}
            return {"valueRatio": {"numerator": {"value": a.as_json()}, "denominator": {"value": b.as_json()}}}
        if sep == "+" and not second and not comparator:
            return {"valueString": f"{first}+"}
        self.error("102", w, f"structured numeric value '{obx.raw(5)}' cannot be represented")
        return None

    def interpretation(self, obx: Seg) -> list[dict[str, Any]] | None:
        out = []
        for rep in obx.reps(8):
            flag = rep.c(1)
            up = flag.upper()
            if up in V3_INTERPRETATION_DISPLAY:
                coding = {"system": codes.V3_INTERPRETATION, "code": up, "display": V3_INTERPRETATION_DISPLAY[up]}
            elif up in V2_ONLY_INTERPRETATION:
                coding = {"system": V2_0078, "code": up, "display": V2_ONLY_INTERPRETATION[up]}
            else:
                self.warning("103", obx.where(8), f"abnormal flag '{flag}' is not in HL7 table 0078; kept as text")
                out.append({"text": rep.c(2) or flag})
                continue
            concept: dict[str, Any] = {"coding": [coding]}
            if rep.c(2) and rep.c(2) != up:
                concept["text"] = rep.c(2)
            out.append(concept)
        return out or None


def _derived_status(statuses: list[str]) -> str:
    """DiagnosticReport.status from the results when OBR-25 is empty."""
    found = set(statuses)
    if not found:
        return "unknown"
    if found <= {"final"}:
        return "final"
    if found <= {"final", "corrected", "amended"}:
        return "corrected"
    if found <= {"cancelled"}:
        return "cancelled"
    if found <= {"registered"}:
        return "registered"
    if "preliminary" in found:
        return "preliminary"
    return "partial"


def _request_status(report_status: str) -> str:
    return {
        "registered": "active",
        "partial": "active",
        "preliminary": "active",
        "final": "completed",
        "corrected": "completed",
        "amended": "completed",
        "cancelled": "revoked",
    }.get(report_status, "unknown")


# --------------------------------------------------------------------------------------------------
# Acknowledgement


def ack(
    message: bytes | str,
    result: MappingResult,
    *,
    now: dt.datetime | None = None,
    control_id: str | None = None,
) -> str:
    """The original-mode ACK for `message`: MSA AA when `result` is ok, AR when the message type, event or
    version is not taken (or Kjerne failed), AE for faults in the content, with one ERR per fault (and per
    warning from v2.5). MSH swaps sender and receiver and keeps the processing id and version; MSA-2 is the
    message's control id. Segments end with CR."""
    now = now or dt.datetime.now(dt.UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=dt.UTC)
    try:
        msg: Message | None = read_message(message)[0]
    except NotHL7v2:
        msg = None
    syntax = msg.syntax if msg else Syntax()
    msh = msg.msh if msg else None
    fs, cs = syntax.field, syntax.component
    if result.ok:
        code = "AA"
    elif any(f.code in REJECT_CODES for f in result.error_faults):
        code = "AR"
    else:
        code = "AE"
    version = (msh.v(12) if msh else "") or "2.5"
    original_id = msh.raw(10) if msh else ""
    stamp = now.astimezone(OSLO).strftime("%Y%m%d%H%M%S%z")
    control = control_id or hashlib.sha1(f"{original_id}|{code}|{stamp}".encode()).hexdigest()[:20].upper()
    event = msh.v(9, 2) if msh else ""
    if _version_at_least(version, (2, 3, 1)):
        message_type = cs.join(["ACK", event, "ACK"]) if event else f"ACK{cs}{cs}ACK"
    else:
        message_type = f"ACK{cs}{event}" if event else "ACK"
    header = [
        "MSH",
        syntax.encoding_characters,
        msh.raw(5) if msh else "",
        msh.raw(6) if msh else "",
        msh.raw(3) if msh else "",
        msh.raw(4) if msh else "",
        stamp,
        "",
        message_type,
        syntax.escape_text(control),
        msh.raw(11) if msh and msh.raw(11) else "P",
        msh.raw(12) if msh and msh.raw(12) else version,
    ]
    if msh and msh.raw(18):
        header += ["", "", "", "", "", msh.raw(18)]
    segments = [fs.join(header)]
    msa = ["MSA", code, original_id]
    modern = _version_at_least(version, (2, 5))
    if code != "AA" and not modern and result.error_faults:
        msa.append(syntax.escape_text(result.error_faults[0].text)[:80])
    segments.append(fs.join(msa))
    if modern:
        for fault, severity in [(f, "E") for f in result.error_faults] + [(f, "W") for f in result.warning_faults]:
            segments.append(_err_segment(fault, severity, syntax))
    elif result.error_faults:
        locations = [_err_location_v24(f, syntax) for f in result.error_faults]
        segments.append(fs.join(["ERR", syntax.repetition.join(locations)]))
    return "\r".join(segments) + "\r"


def _version_at_least(version: str, wanted: tuple[int, ...]) -> bool:
    parts = tuple(int(p) for p in re.findall(r"\d+", version)[:3])
    return parts >= wanted


def _location(fault: Fault) -> tuple[str, str, str, str]:
    m = _WHERE.match(fault.where)
    if not m:
        return "", "", "", ""
    return m.group(1), m.group(2) or "", m.group(3) or "", m.group(4) or ""


def _err_segment(fault: Fault, severity: str, syntax: Syntax) -> str:
    cs = syntax.component
    seg, seq, fld, comp = _location(fault)
    location = cs.join([seg, seq, fld, "", comp]).rstrip(cs) if seg else ""
    condition = cs.join([fault.code, ERROR_CODES.get(fault.code, ""), "HL70357"])
    fields = ["ERR", "", location, condition, severity, "", "", "", syntax.escape_text(fault.text)]
    return syntax.field.join(fields)


def _err_location_v24(fault: Fault, syntax: Syntax) -> str:
    cs, ss = syntax.component, syntax.subcomponent
    seg, seq, fld, _ = _location(fault)
    condition = ss.join([fault.code, ERROR_CODES.get(fault.code, ""), "HL70357"])
    return cs.join([seg, seq, fld, condition])
