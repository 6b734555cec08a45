"""Which deviations from the Svarrapport schema and conventions are accepted, and which are refused.

Real producers break the schema in harmless ways. A deviation is accepted (with a warning, which ends up in
the AppRec receipt) only when the content stays unambiguous; whenever the patient, a value, a code, a
status or the identity of the report or its producer could only be determined by guessing, the message is
refused. Every accepted deviation has an id in TOLERANCES; docs/svarrapport-tolerances.md lists the same
table with examples.

This module also holds the value readers (dates, decimals, booleans) so that the schema review and the
mapper agree on which spellings are accepted.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from lxml import etree

from kjerne.services.provesvar.faults import Fault, where
from kjerne.services.provesvar.svarrapport_schema import Decl, decl_for, element_children

OSLO = ZoneInfo("Europe/Oslo")


@dataclass(frozen=True, slots=True)
class Tolerance:
    id: str
    title: str
    accepted_when: str
    effect: str


TOLERANCES: dict[str, Tolerance] = {
    t.id: t
    for t in (
        Tolerance(
            "T01-ELEMENT-ORDER",
            "Elements out of schema order",
            "Every child element is allowed in its parent and occurs no more often than the schema allows; "
            "only their order differs from the schema sequence.",
            "Elements are read by name, so the content is the same as in a correctly ordered message.",
        ),
        Tolerance(
            "T02-EMPTY-DATE",
            'Empty date/time value (V="")',
            "A date/time element is present with an empty V attribute.",
            "Treated as absent. If the element is required (ServReport/IssueDate) T03 applies as well.",
        ),
        Tolerance(
            "T03-MISSING-ISSUEDATE",
            "ServReport/IssueDate missing",
            "The report has no usable IssueDate (missing or empty) but Message/GenDate is valid.",
            "DiagnosticReport.issued comes from GenDate as always; the report date extension is left out "
            "and effective falls back to the results' dates or GenDate.",
        ),
        Tolerance(
            "T04-RELSERVPROV-WITHOUT-HCP",
            "RelServProv without HCP",
            "A related service provider names a relation but no health care party.",
            "The relation carries no identity and is ignored.",
        ),
        Tolerance(
            "T05-DECIMAL-COMMA",
            "Decimal comma in a numeric value",
            "A numeric V attribute is written with a Norwegian decimal comma and otherwise matches a "
            'decimal number exactly (e.g. V="6,0").',
            "Read as the decimal number (6.0).",
        ),
        Tolerance(
            "T06-ID-GROUPING",
            "Digit grouping in HPR numbers, HER-ids and organisation numbers",
            "An identifier of a health professional or organisation contains only digits separated by '.' or "
            "spaces (e.g. 369.767).",
            "The separators are removed (369767) before the identifier is checked.",
        ),
        Tolerance(
            "T07-DNR-TYPED-AS-FNR",
            "D-number sent with TypeOffId FNR",
            "Patient/OffId is a valid D-number (first digit 4-7, valid check digits) but TypeOffId says FNR.",
            "The patient is referenced with the D-number system; the number itself is unchanged.",
        ),
        Tolerance(
            "T08-MIGVERSION",
            "MIGversion disagrees with the namespace",
            "Message/MIGversion names another version than the message namespace.",
            "The namespace decides the version.",
        ),
        Tolerance(
            "T09-CODE-WHITESPACE",
            "Whitespace inside a NORPAT code",
            "A code in kodeverk 7010 (NORPAT) contains spaces (e.g. 'M 00100'); NORPAT codes never do.",
            "The spaces are removed (M00100).",
        ),
        Tolerance(
            "T10-NO-SAMPLING-TIME",
            "No sampling or investigation time for a result",
            "Neither the specimen's CollectedDate/ProducedDate nor the result's InvDate gives a time, but the "
            "report has an IssueDate or GenDate.",
            "Observation.effective falls back to ServReport/IssueDate, then Message/GenDate (NILAR's order); "
            "the warning says so.",
        ),
        Tolerance(
            "T11-DATETIME-VARIANT",
            "Date/time written in a common non-XSD form",
            "A date/time is 'YYYY-MM-DD hh:mm[:ss]', 'YYYY-MM-DDThh:mm' or 'DD.MM.YYYY[ hh:mm[:ss]]'.",
            "Read as the same date/time; times without zone are Norwegian local time, as for every KITH message.",
        ),
        Tolerance(
            "T13-NIN-SEPARATOR",
            "National identity number split in two",
            "Patient/OffId is six digits, one space, dot or hyphen, and five digits (e.g. '131169 00216').",
            "The separator is removed; the eleven digits must then pass the usual check-digit test.",
        ),
        Tolerance(
            "T12-BOOLEAN-VARIANT",
            "Boolean written as True/False/1/0",
            "A boolean V attribute (Accredited) uses another case or 1/0.",
            "Read as true/false.",
        ),
    )
}


# AppRec error code (kodeverk 8221) used when a tolerance is reported: schema deviations are "XML validerer
# ikke", other format deviations "Annen feil på format", the date fallback "Annen feil".
_APPREC_CODE = {
    "T01-ELEMENT-ORDER": "T02",
    "T02-EMPTY-DATE": "T02",
    "T03-MISSING-ISSUEDATE": "T02",
    "T04-RELSERVPROV-WITHOUT-HCP": "T02",
    "T05-DECIMAL-COMMA": "T02",
    "T11-DATETIME-VARIANT": "T02",
    "T12-BOOLEAN-VARIANT": "T02",
    "T10-NO-SAMPLING-TIME": "X99",
}


def warn(tolerance_id: str, where_: str, text: str) -> Fault:
    assert tolerance_id in TOLERANCES, tolerance_id
    return Fault(_APPREC_CODE.get(tolerance_id, "T99"), where_, text, tolerance_id)


# --------------------------------------------------------------------------------------------------
# Value readers


class ValueProblem(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Moment:
    """A KITH TS value read into FHIR terms."""

    fhir: str  # FHIR dateTime (date, partial date, or date-time with offset)
    at: dt.datetime  # aware instant used for ordering and "in the future" checks
    has_time: bool
    tolerance: str | None = None


_XSD_DATETIME = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})?$")
_XSD_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(Z|[+-]\d{2}:\d{2})?$")
_XSD_YEAR_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_XSD_YEAR = re.compile(r"^(\d{4})$")
_VARIANT_ISO = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:[ T])(\d{2}):(\d{2})(?::(\d{2}))?$")
_VARIANT_NO = re.compile(r"^(\d{2})\.(\d{2})\.(\d{4})(?: (\d{2}):(\d{2})(?::(\d{2}))?)?$")


def _aware(
    y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0, us: int = 0, tz: str | None = None
) -> dt.datetime:
    if tz is None:
        return dt.datetime(y, mo, d, h, mi, s, us, tzinfo=OSLO)
    if tz == "Z":
        return dt.datetime(y, mo, d, h, mi, s, us, tzinfo=dt.UTC)
    sign = 1 if tz[0] == "+" else -1
    offset = dt.timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6])) * sign
    return dt.datetime(y, mo, d, h, mi, s, us, tzinfo=dt.timezone(offset))


def _fhir_datetime(at: dt.datetime, fraction: str | None = None) -> str:
    base = at.strftime("%Y-%m-%dT%H:%M:%S")
    if fraction:
        base += fraction
    offset = at.utcoffset() or dt.timedelta(0)
    if offset == dt.timedelta(0) and at.tzinfo is dt.UTC:
        return base + "Z"
    total = int(offset.total_seconds() // 60)
    sign = "+" if total >= 0 else "-"
    total = abs(total)
    return f"{base}{sign}{total // 60:02d}:{total % 60:02d}"


def read_ts(value: str | None) -> Moment | None:
    """A KITH TS attribute -> Moment. None for absent/empty; ValueProblem when unreadable."""
    if value is None:
        return None
    v = value.strip()
    if not v:
        return None
    try:
        if m := _XSD_DATETIME.match(v):
            y, mo, d, h, mi, s = (int(x) for x in m.groups()[:6])
            fraction, tz = m.group(7), m.group(8)
            us = int((fraction or ".0")[1:7].ljust(6, "0"))
            at = _aware(y, mo, d, h, mi, s, us, tz)
            return Moment(_fhir_datetime(at, fraction), at, True)
        if m := _XSD_DATE.match(v):
            y, mo, d = (int(x) for x in m.groups()[:3])
            at = _aware(y, mo, d)
            return Moment(f"{y:04d}-{mo:02d}-{d:02d}", at, False)
        if m := _XSD_YEAR_MONTH.match(v):
            y, mo = int(m.group(1)), int(m.group(2))
            return Moment(f"{y:04d}-{mo:02d}", _aware(y, mo, 1), False)
        if m := _XSD_YEAR.match(v):
            y = int(m.group(1))
            return Moment(f"{y:04d}", _aware(y, 1, 1), False)
        if m := _VARIANT_ISO.match(v):
            y, mo, d, h, mi = (int(x) for x in m.groups()[:5])
            s = int(m.group(6) or 0)
            at = _aware(y, mo, d, h, mi, s)
            return Moment(_fhir_datetime(at), at, True, "T11-DATETIME-VARIANT")
        if m := _VARIANT_NO.match(v):
            d, mo, y = int(m.group(1)), int(m.group(2)), int(m.group(3))
            if m.group(4):
                h, mi, s = int(m.group(4)), int(m.group(5)), int(m.group(6) or 0)
                at = _aware(y, mo, d, h, mi, s)
                return Moment(_fhir_datetime(at), at, True, "T11-DATETIME-VARIANT")
            at = _aware(y, mo, d)
            return Moment(f"{y:04d}-{mo:02d}-{d:02d}", at, False, "T11-DATETIME-VARIANT")
    except ValueError:
        raise ValueProblem(f"'{value}' is not a valid date/time") from None
    raise ValueProblem(f"'{value}' is not a date/time")


_XSD_DECIMAL = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_COMMA_DECIMAL = re.compile(r"^[+-]?\d+,\d+$")


@dataclass(frozen=True, slots=True)
class Number:
    value: Decimal
    tolerance: str | None = None

    def as_json(self) -> int | float:
        """FHIR decimal as a JSON number (integers stay integers)."""
        if self.value == self.value.to_integral_value() and "." not in str(self.value) and "E" not in str(self.value):
            return int(self.value)
        return float(self.value)


def read_decimal(value: str | None) -> Number | None:
    if value is None:
        return None
    v = value.strip()
    if not v:
        return None
    tolerance = None
    if _COMMA_DECIMAL.match(v):
        v, tolerance = v.replace(",", "."), "T05-DECIMAL-COMMA"
    elif not _XSD_DECIMAL.match(v):
        raise ValueProblem(f"'{value}' is not a number")
    try:
        return Number(Decimal(v), tolerance)
    except InvalidOperation:
        raise ValueProblem(f"'{value}' is not a number") from None


def read_bool(value: str | None) -> tuple[bool, str | None] | None:
    if value is None or not value.strip():
        return None
    v = value.strip()
    if v in ("true", "false"):
        return v == "true", None
    if v.lower() in ("true", "false", "1", "0"):
        return v.lower() in ("true", "1"), "T12-BOOLEAN-VARIANT"
    raise ValueProblem(f"'{value}' is not a boolean")


_GROUPED_DIGITS = re.compile(r"^\d+(?:[. ]\d+)+$")
_SPLIT_NIN = re.compile(r"^(\d{6})[ .-](\d{5})$")


def read_register_id(value: str) -> tuple[str, str | None]:
    """HPR/HER/org numbers: strip digit grouping ('369.767' -> '369767')."""
    v = value.strip()
    if _GROUPED_DIGITS.match(v):
        return re.sub(r"[. ]", "", v), "T06-ID-GROUPING"
    return v, None


def read_national_id(value: str) -> tuple[str, str | None]:
    """Patient/OffId: '131169 00216' -> '13116900216' (birth date and personal number split)."""
    v = value.strip()
    if m := _SPLIT_NIN.match(v):
        return m.group(1) + m.group(2), "T13-NIN-SEPARATOR"
    return v, None


# --------------------------------------------------------------------------------------------------
# Reviewing schema errors

# Required elements whose absence is accepted, with the tolerance that covers it.
TOLERABLE_MISSING: dict[tuple[str, str], str] = {
    ("ServReport", "IssueDate"): "T03-MISSING-ISSUEDATE",
    ("RelServProv", "HCP"): "T04-RELSERVPROV-WITHOUT-HCP",
}

_DATE_TYPES = {"TS"}
_NUMBER_TYPES = {"PQ", "REAL", "MO"}
_BOOL_TYPES = {"BL"}


@dataclass
class SchemaReview:
    warnings: list[Fault]
    errors: list[Fault]


def _structure(el: etree._Element, decl: Decl) -> list[tuple[str, str, str]]:
    """Order-insensitive check of el's children: (kind, where, text) for each problem."""
    problems: list[tuple[str, str, str]] = []
    if decl.open or decl.simple_type is not None:
        if decl.simple_type is not None and not decl.open and any(True for _ in element_children(el)):
            problems.append(("unexpected", where(el), "has child elements but the schema allows none"))
        return problems
    counts: dict[str, int] = {}
    for child in element_children(el):
        qn = etree.QName(child)
        if qn.namespace != decl.ns or qn.localname not in decl.children:
            problems.append(("unexpected", where(child), f"element {qn.localname} is not allowed here"))
            continue
        counts[qn.localname] = counts.get(qn.localname, 0) + 1
    for name, n in counts.items():
        limit = decl.children[name][2]
        if limit is not None and n > limit:
            problems.append(("too-many", where(el, name), f"occurs {n} times, at most {limit} allowed"))
    for alternatives in decl.required:
        if not any(counts.get(a) for a in alternatives):
            label = "|".join(alternatives)
            problems.append(("missing", where(el, label), f"required element {label} is missing"))
    return problems


def _walk(el: etree._Element, decl: Decl, out: list[tuple[etree._Element, list[tuple[str, str, str]]]]) -> None:
    problems = _structure(el, decl)
    if problems:
        out.append((el, problems))
    if decl.open or decl.simple_type is not None:
        return
    for child in element_children(el):
        qn = etree.QName(child)
        entry = decl.children.get(qn.localname) if qn.namespace == decl.ns else None
        if entry is not None:
            _walk(child, entry[0], out)


def review_schema(tree: etree._ElementTree, message: etree._Element, errors: list[Any]) -> SchemaReview:
    """Sort the validator's errors into accepted deviations (warnings) and faults (errors)."""
    review = SchemaReview([], [])
    if not errors:
        return review
    root = tree.getroot()
    # 1. Structure, order-insensitively, for the whole payload (and envelope, if any).
    structural: list[tuple[etree._Element, list[tuple[str, str, str]]]] = []
    top = decl_for(root)
    if top is not None:
        _walk(root, top, structural)
    if root is not message:
        decl = decl_for(message)
        if decl is not None:
            _walk(message, decl, structural)
    parents_with_problems = set()
    for el, problems in structural:
        parents_with_problems.add(el)
        for kind, w, text in problems:
            if kind == "missing":
                parent_name = etree.QName(el).localname
                child_name = w.rsplit("/", 1)[-1]
                tol = TOLERABLE_MISSING.get((parent_name, child_name))
                if tol:
                    review.warnings.append(warn(tol, w, text))
                    continue
            review.errors.append(Fault("T02", w, text))
    # 2. The validator's own errors.
    seen_order: set[Any] = set()
    for err in errors:
        try:
            flagged = tree.xpath(err.path) if err.path else []
        except etree.XPathError:
            flagged = []
        el = flagged[0] if flagged and isinstance(flagged[0], etree._Element) else None
        msg = err.message or ""
        if el is None:
            review.errors.append(Fault("T02", "Message", msg))
            continue
        if err.type_name == "SCHEMAV_ELEMENT_CONTENT" or "not expected" in msg or "Missing child" in msg:
            parent = el if "Missing child" in msg else el.getparent()
            if parent in parents_with_problems or el in parents_with_problems:
                continue  # reported by the structural check above
            if parent is not None and parent not in seen_order:
                seen_order.add(parent)
                review.warnings.append(
                    warn("T01-ELEMENT-ORDER", where(parent), "child elements are not in schema order")
                )
            continue
        attr = re.search(r"attribute '(\w+)'", msg)
        decl = decl_for(el)
        simple = decl.simple_type if decl else None
        if attr and simple:
            fault = _review_value(el, attr.group(1), simple, msg)
            (review.warnings if fault.tolerance else review.errors).append(fault)
            continue
        review.errors.append(Fault("T02", where(el), msg))
    return review


def _review_value(el: etree._Element, attr: str, simple: str, msg: str) -> Fault:
    value = el.get(attr)
    w = where(el)
    if simple in _DATE_TYPES:
        if value is not None and not value.strip():
            return warn("T02-EMPTY-DATE", w, "empty date/time, treated as absent")
        try:
            m = read_ts(value)
        except ValueProblem as exc:
            return Fault("T02", w, str(exc))
        if m is not None and m.tolerance:
            return warn(m.tolerance, w, f"date/time '{value}' read as {m.fhir}")
    elif simple in _NUMBER_TYPES:
        try:
            n = read_decimal(value)
        except ValueProblem as exc:
            return Fault("T02", w, str(exc))
        if n is not None and n.tolerance:
            return warn(n.tolerance, w, f"number '{value}' read as {n.value}")
    elif simple in _BOOL_TYPES:
        try:
            b = read_bool(value)
        except ValueProblem as exc:
            return Fault("T02", w, str(exc))
        if b is not None and b[1]:
            return warn(b[1], w, f"boolean '{value}' read as {str(b[0]).lower()}")
    return Fault("T02", w, msg)
