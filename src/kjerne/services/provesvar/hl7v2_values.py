"""OBX-5 values by value type (OBX-2), with OBX-6 units and OBX-8 abnormal flags; ED and RP values become
attachments."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from kjerne.services.provesvar import codes
from kjerne.services.provesvar.hl7v2_codes import (
    DATA_ABSENT_REASON,
    V2_0078,
    V2_ONLY_INTERPRETATION,
    V3_INTERPRETATION_DISPLAY,
    CodeMixin,
)
from kjerne.services.provesvar.hl7v2_datatypes import read_number, read_unit
from kjerne.services.provesvar.hl7v2_parse import Rep, Seg
from kjerne.services.provesvar.hl7v2_status import NO_RESULT_STATUSES
from kjerne.services.provesvar.mapping import quantity, with_comparator
from kjerne.services.provesvar.tolerances import Number, ValueProblem
from kjerne.services.provesvar.units import Unit, UnitError

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
_TM = re.compile(r"^(\d{2})(?:(\d{2})(?:(\d{2})(\.\d{1,4})?)?)?([+-]\d{4})?$")


def attachment_type(kind: str, subtype: str) -> str:
    major = MIME_TYPES.get(kind.upper())
    if major and subtype:
        return f"{major}/{subtype.lower()}"
    return "application/octet-stream"


class ValueMixin(CodeMixin):
    def attachment(self, obx: Seg, kind: str) -> dict[str, Any] | None:
        rep = obx.rep(5)
        title = obx.v(3, 9) or obx.v(3, 2) or obx.v(3, 1)
        out: dict[str, Any] = {}
        if kind == "RP":
            pointer = rep.c(1)
            if not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", pointer):
                self.warning("0", obx.where(5), "a reference pointer that is not an absolute URL is not mapped")
                return None
            out["contentType"] = attachment_type(rep.c(3), rep.c(4))
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
            out["contentType"] = attachment_type(rep.c(2), rep.c(3))
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
            n = read_number(text)
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
        return {"valueQuantity": quantity(n, unit)}

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
            q = quantity(a, unit)
            if comparator and comparator != "=":
                q = with_comparator(q, comparator)
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
                return {"valueRange": {"low": quantity(a, unit), "high": quantity(b, unit)}}
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
