"""ResultItem -> Observation: status, code, effective time, performers, value, notes and NILAR extensions."""

from __future__ import annotations

from typing import Any

from lxml import etree

from kjerne.services.provesvar import codes
from kjerne.services.provesvar.faults import where
from kjerne.services.provesvar.mapping import OBSERVATION_CATEGORY
from kjerne.services.provesvar.svarrapport_context import Item
from kjerne.services.provesvar.svarrapport_fhir import (
    EXT_DIAGNOSTIC_REPORT_REF,
    KEYS,
    annotation,
    ident,
    other_info,
)
from kjerne.services.provesvar.svarrapport_parse import cs_display
from kjerne.services.provesvar.svarrapport_roles import RoleMixin
from kjerne.services.provesvar.svarrapport_status import StatusMixin
from kjerne.services.provesvar.svarrapport_values import ValueMixin
from kjerne.services.provesvar.tolerances import Moment


class ObservationMixin(ValueMixin, StatusMixin, RoleMixin):
    def observation(self, item: Item, performer_url: str | None) -> None:
        el = item.el
        res: dict[str, Any] = {"resourceType": "Observation"}
        idents = []
        rid = self.text(el, "IdResultItem")
        if rid:
            idents.append(ident("ResultItemId", self.idsys("ResultItemId"), rid))
        idents.append(KEYS.ident(item.key))
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
                res["extension"].append(other_info(label, m.fhir))
        for info in self.kids(el, "StructuredInfo"):
            text = self.structured_info(info)
            if text:
                res["extension"].append(other_info("Strukturert info", text))
        item.resource = res

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

    def notes(self, el: etree._Element) -> list[dict[str, str]]:
        notes = []
        comment = self.text(el, "Comment")
        if comment:
            notes.append(annotation(comment))
        for inv in self.kids(el, "Investigation"):
            c = self.text(inv, "Comment")
            if c:
                notes.append(annotation(f"Kommentar til undersøkelse: {c}"))
        diag = self.child(el, "DiagComment")
        if diag is not None:
            parts = [cs_display(self.child(diag, "Concept"))]
            for mod in self.kids(diag, "Modifier"):
                parts.append(
                    " ".join(
                        x
                        for x in [cs_display(self.child(mod, "Name"))]
                        + [cs_display(v) for v in self.kids(mod, "Value")]
                        if x
                    )
                )
            text = "; ".join(p for p in parts if p)
            if text:
                notes.append(annotation(f"Diagnostisk kommentar: {text}"))
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

    def structured_info(self, info: etree._Element) -> str | None:
        parts = [cs_display(self.child(info, "Type"))]
        for name, sub in (("TextInfo", "Text"), ("IntegerInfo", "Integer")):
            for x in self.kids(info, name):
                parts.append(self.text(x, sub))
        for x in self.kids(info, "PhysicalInfo"):
            q = self.child(x, "Quantity")
            if q is not None:
                parts.append(" ".join(p for p in (q.get("V"), q.get("U")) if p))
        for x in self.kids(info, "CodedInfo"):
            parts.append(cs_display(self.child(x, "Code")))
        for x in self.kids(info, "BooleanInfo"):
            f = self.child(x, "Flag")
            if f is not None and f.get("V"):
                parts.append("ja" if f.get("V").strip().lower() in ("true", "1") else "nei")
        text = ": ".join(p for p in parts[:1] if p)
        rest = ", ".join(p for p in parts[1:] if p)
        return f"{text}: {rest}" if text and rest else (text or rest or None)
