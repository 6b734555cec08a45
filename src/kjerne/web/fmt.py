"""Reading FHIR resources for people: names, values, reference ranges, dates in Norwegian time."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

OSLO = ZoneInfo("Europe/Oslo")
INTERPRETATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
HIGH = ("H", "HH", "HU", ">")
LOW = ("L", "LL", "LU", "<")
ABNORMAL = ("A", "AA", *HIGH, *LOW)


def parse_time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    text = value.replace("Z", "+00:00")
    try:
        if len(text) == 4:
            return dt.datetime(int(text), 1, 1, tzinfo=OSLO)
        if len(text) == 7:
            return dt.datetime(int(text[:4]), int(text[5:7]), 1, tzinfo=OSLO)
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=OSLO)
    return moment


def datetime_text(value: Any) -> str:
    moment = parse_time(value) if not isinstance(value, dt.datetime) else value
    if moment is None:
        return ""
    local = moment.astimezone(OSLO)
    if isinstance(value, str) and len(value) <= 10:
        return local.strftime("%d.%m.%Y")
    return local.strftime("%d.%m.%Y %H:%M")


def date_text(value: Any) -> str:
    moment = parse_time(value) if not isinstance(value, dt.datetime) else value
    return moment.astimezone(OSLO).strftime("%d.%m.%Y") if moment else ""


def number(value: Any) -> str:
    """A number the Norwegian way (decimal comma), without trailing zeros a lab did not send."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = f"{value:.6g}" if abs(value) < 1e6 else f"{value:.0f}"
        if "e" in text:
            text = f"{value:.4f}".rstrip("0").rstrip(".")
        return text.replace(".", ",")
    return str(value)


def concept_text(concept: Mapping[str, Any] | None, prefer_text: bool = True) -> str:
    if not concept:
        return ""
    if prefer_text and concept.get("text"):
        return str(concept["text"])
    for coding in concept.get("coding") or ():
        if coding.get("display"):
            return str(coding["display"])
    for coding in concept.get("coding") or ():
        if coding.get("code"):
            return str(coding["code"])
    return str(concept.get("text") or "")


def codings(concept: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    return [
        (str(c.get("system") or ""), str(c.get("code")))
        for c in (concept or {}).get("coding") or ()
        if isinstance(c, Mapping) and c.get("code")
    ]


def has_code(concept: Mapping[str, Any] | None, system: str, code: str) -> bool:
    return (system, code) in codings(concept)


def first_category(res: Mapping[str, Any], system: str) -> str | None:
    for cat in res.get("category") or ():
        for c in cat.get("coding") or ():
            if c.get("system") == system and c.get("code"):
                return str(c["code"])
    return None


def human_name(res: Mapping[str, Any] | None) -> str:
    for name in (res or {}).get("name") or ():
        if name.get("text"):
            return str(name["text"])
        parts = [*name.get("given", []), name.get("family", "")]
        text = " ".join(p for p in parts if p)
        if text:
            return text
    return ""


def effective(res: Mapping[str, Any]) -> str | None:
    for key in ("effectiveDateTime", "effectiveInstant"):
        if res.get(key):
            return str(res[key])
    period = res.get("effectivePeriod") or {}
    return period.get("start") or period.get("end") or res.get("issued")


def performer_name(res: Mapping[str, Any]) -> str:
    performers = [p for p in res.get("performer") or () if isinstance(p, Mapping)]
    for p in performers:
        if str(p.get("reference", "")).startswith("Organization/") and p.get("display"):
            return str(p["display"])
    for p in performers:
        if p.get("display") and not str(p.get("reference", "")).startswith("Patient/"):
            return str(p["display"])
    return ""


UNIT_TEXT = {
    "mm[Hg]": "mmHg",
    "Cel": "°C",
    "{score}": "",
    "kg/m2": "kg/m²",
    "10*9/L": "×10⁹/L",
    "10*12/L": "×10¹²/L",
    "umol/L": "µmol/L",
    "ug/L": "µg/L",
    "ukat/L": "µkat/L",
    "mL/min/{1.73_m2}": "mL/min/1,73 m²",
    "mmol/mol": "mmol/mol",
}


def unit_text(unit: str | None) -> str:
    """A UCUM code as people write it."""
    return UNIT_TEXT.get(unit or "", unit or "")


def quantity_text(q: Mapping[str, Any] | None) -> str:
    if not q or q.get("value") is None:
        return ""
    unit = q.get("unit") or unit_text(q.get("code")) or ""
    comparator = q.get("comparator") or ""
    return f"{comparator}{number(q['value'])} {unit}".strip()


def value_text(obs: Mapping[str, Any], t: Any = None) -> str:
    if "valueQuantity" in obs:
        return quantity_text(obs["valueQuantity"])
    if "valueString" in obs:
        return str(obs["valueString"])
    if "valueCodeableConcept" in obs:
        return concept_text(obs["valueCodeableConcept"])
    if "valueInteger" in obs:
        return str(obs["valueInteger"])
    if "valueBoolean" in obs:
        yes, no = ("Ja", "Nei") if t is None else (t("Ja", "Yes"), t("Nei", "No"))
        return yes if obs["valueBoolean"] else no
    if "valueRange" in obs:
        r = obs["valueRange"]
        return f"{quantity_text(r.get('low'))} – {quantity_text(r.get('high'))}"
    if "valueDateTime" in obs:
        return datetime_text(obs["valueDateTime"])
    if obs.get("component"):
        parts = [value_text(c, t) for c in obs["component"]]
        return " / ".join(p for p in parts if p)
    if obs.get("dataAbsentReason"):
        return concept_text(obs["dataAbsentReason"])
    return ""


def reference_range(obs: Mapping[str, Any]) -> tuple[float | None, float | None, str]:
    for r in obs.get("referenceRange") or ():
        low, high = r.get("low") or {}, r.get("high") or {}
        lo, hi = low.get("value"), high.get("value")
        if lo is None and hi is None:
            if r.get("text"):
                return None, None, str(r["text"])
            continue
        unit = high.get("unit") or low.get("unit") or high.get("code") or low.get("code") or ""
        if lo is not None and hi is not None:
            text = f"{number(lo)}–{number(hi)} {unit}"
        elif lo is not None:
            text = f"> {number(lo)} {unit}"
        else:
            text = f"< {number(hi)} {unit}"
        return lo, hi, text.strip()
    return None, None, ""


def interpretation(obs: Mapping[str, Any]) -> str | None:
    for concept in obs.get("interpretation") or ():
        for c in concept.get("coding") or ():
            if c.get("code"):
                return str(c["code"])
    return None


def flag(obs: Mapping[str, Any]) -> str | None:
    """'high', 'low' or 'abnormal' when the result lies outside its reference range, else None."""
    code = interpretation(obs)
    if code in HIGH:
        return "high"
    if code in LOW:
        return "low"
    if code in ("A", "AA"):
        return "abnormal"
    value = (obs.get("valueQuantity") or {}).get("value")
    if isinstance(value, int | float) and not isinstance(value, bool):
        lo, hi, _ = reference_range(obs)
        if hi is not None and value > hi:
            return "high"
        if lo is not None and value < lo:
            return "low"
    return None


@dataclass(frozen=True, slots=True)
class Attachment:
    title: str
    text: str | None
    content_type: str


def attachments(report: Mapping[str, Any]) -> list[Attachment]:
    """Text forms of a report (radiology and pathology answers); other kinds are named, not shown."""
    out = []
    for form in report.get("presentedForm") or ():
        ctype = str(form.get("contentType") or "")
        text = None
        if ctype.startswith("text/plain") and form.get("data"):
            try:
                text = base64.b64decode(form["data"], validate=False).decode("utf-8", errors="replace")
            except (binascii.Error, ValueError):
                text = None
        out.append(Attachment(str(form.get("title") or ""), text, ctype))
    return out


def ref_id(reference: Any, res_type: str) -> str | None:
    ref = (reference or {}).get("reference") if isinstance(reference, Mapping) else reference
    if isinstance(ref, str) and ref.startswith(res_type + "/"):
        return ref.split("/", 1)[1].split("/", 1)[0]
    return None


def now_oslo() -> dt.datetime:
    return dt.datetime.now(OSLO)
