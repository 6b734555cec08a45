"""Result values: NumResult, Interval, DateResult and TextResult -> Observation.value[x], with
deviation flags (kodeverk 8244) and reference intervals."""

from __future__ import annotations

import html
import re
from typing import Any

from lxml import etree

from kjerne.services.provesvar import codes
from kjerne.services.provesvar.faults import where
from kjerne.services.provesvar.mapping import quantity, with_comparator
from kjerne.services.provesvar.svarrapport_context import Item, ReportContext
from kjerne.services.provesvar.svarrapport_parse import has_xhtml, text_of
from kjerne.services.provesvar.svarrapport_schema import element_children
from kjerne.services.provesvar.tolerances import Number, ValueProblem, read_decimal
from kjerne.services.provesvar.units import UnitError, to_ucum

_RANGE = re.compile(r"^\s*([+-]?\d+(?:[.,]\d+)?)\s*(?:-|–|—)\s*([+-]?\d+(?:[.,]\d+)?)\s*$")
_BOUND = re.compile(r"^\s*([<>])\s*=?\s*([+-]?\d+(?:[.,]\d+)?)\s*$")


def quantity_text(q: dict[str, Any]) -> str:
    return f"{q.get('comparator', '')}{q['value']} {q.get('unit', '')}".strip()


def parse_range(descr: str, measured: dict[str, Any]) -> dict[str, Any]:
    unit: dict[str, Any] = {k: measured[k] for k in ("unit", "system", "code") if k in measured}

    def q(text: str) -> dict[str, Any]:
        number = read_decimal(text.replace(",", "."))
        assert number is not None
        return {"value": number.as_json(), **unit}

    if m := _RANGE.match(descr):
        return {"low": q(m.group(1)), "high": q(m.group(2))}
    if m := _BOUND.match(descr):
        return {"high": q(m.group(2))} if m.group(1) == "<" else {"low": q(m.group(2))}
    return {}


class ValueMixin(ReportContext):
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
        return quantity(number, unit)

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
                q = with_comparator(q, symbol)
            item.html.append(html.escape(quantity_text(q)))
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
        text = text_of(value_el)
        if has_xhtml(value_el):
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
            match = re.match(r"^([<>]=?)?\s*([+-]?\d+(?:[.,]\d+)?)$", text)
            if match:
                try:
                    unit = to_ucum(unit_text)
                    number = read_decimal(match.group(2))
                except (UnitError, ValueProblem) as exc:
                    self.error("X99", where(tr, "Unit"), str(exc))
                    return None
                assert number is not None
                q = quantity(Number(number.value), unit)
                if match.group(1):
                    q = with_comparator(q, match.group(1))
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

    def reference_ranges(self, el: etree._Element, measured: dict[str, Any] | None) -> list[dict[str, Any]]:
        out = []
        for ri in self.kids(el, "RefInterval"):
            descr = self.text(ri, "Descr")
            if not descr:
                continue
            rr: dict[str, Any] = {"text": descr}
            if measured:
                rr.update(parse_range(descr, measured))
            out.append(rr)
        return out
