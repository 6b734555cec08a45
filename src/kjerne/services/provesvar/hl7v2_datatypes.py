"""HL7 v2 data types read into FHIR terms: HD and EI (identifiers and their authorities), TS/DTM dates,
NM numbers, OBX-6 units, reference ranges and person names."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from kjerne.services.provesvar.hl7v2_parse import Rep
from kjerne.services.provesvar.tolerances import OSLO, Moment, Number, ValueProblem, read_decimal
from kjerne.services.provesvar.units import Unit, UnitError, parse_ucum, to_ucum

OID_RE = re.compile(r"^[0-2](\.(0|[1-9]\d*))+$")
UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_TS = re.compile(r"^(\d{4})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:(\d{2})(\.\d{1,4})?)?)?)?)?)?([+-]\d{4})?$")
_NM = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")
_RANGE = re.compile(r"^\s*([+-]?\d+(?:[.,]\d+)?)\s*(?:-|–|—|to)\s*([+-]?\d+(?:[.,]\d+)?)\s*$", re.IGNORECASE)
_BOUND = re.compile(r"^\s*(<=?|>=?|≤|≥)\s*([+-]?\d+(?:[.,]\d+)?)\s*$")


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
        if self.universal and OID_RE.match(self.universal) and self.universal_type in ("ISO", ""):
            return self.universal
        return None

    @property
    def global_system(self) -> str | None:
        """A system that names this authority everywhere (ISO OID, UUID or URI), else None."""
        if self.oid:
            return f"urn:oid:{self.oid}"
        if self.universal_type in ("UUID", "GUID") and UUID_RE.match(self.universal):
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


def token(text: str) -> str:
    return quote(text.strip(), safe="-._~")


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


def read_number(text: str) -> Number:
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


def reference_range(text: str, unit_of: dict[str, Any] | None) -> dict[str, Any]:
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


def person_name(rep: Rep, family: int = 2, given: int = 3, middle: int = 4, suffix: int = 5, prefix: int = 6,
                 degree: int = 7) -> str | None:  # fmt: skip
    parts = [rep.c(prefix), rep.c(given), rep.c(middle), rep.c(family, 1), rep.c(suffix), rep.c(degree)]
    text = " ".join(p for p in parts if p)
    return text or None
