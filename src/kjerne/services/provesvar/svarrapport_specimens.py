"""AnalysedSubject -> Specimen (nested subjects become child Specimens), keyed on the service provider's
specimen id."""

from __future__ import annotations

from typing import Any

from lxml import etree

from kjerne.services.provesvar import codes
from kjerne.services.provesvar.faults import where
from kjerne.services.provesvar.mapping import conditional
from kjerne.services.provesvar.svarrapport_fhir import KEY_SYSTEM, KEYS, annotation, ident, other_info
from kjerne.services.provesvar.svarrapport_parse import cs_display
from kjerne.services.provesvar.svarrapport_roles import RoleMixin


class SpecimenMixin(RoleMixin):
    def specimen(self, el: etree._Element, parent_url: str | None) -> None:
        accession = self.text(el, "IdByServProvider")
        if not accession:
            self.error("X99", where(el, "IdByServProvider"), "specimen has no id from the service provider")
            return
        if accession in self.specimens:
            self.error("X99", where(el, "IdByServProvider"), f"specimen id '{accession}' is used twice")
            return
        key = KEYS.uuid("Specimen", self.report_key or "", accession)
        url = KEYS.full_url("Specimen", key)
        res: dict[str, Any] = {"resourceType": "Specimen"}
        idents = [ident("AnalysedSubjectId", self.idsys("AnalysedSubjectId"), accession)]
        by_req = self.text(el, "IdByRequester")
        if by_req:
            idents.append(ident("AnalysedSubjectIdByRequester", self.idsys("AnalysedSubjectIdByRequester"), by_req))
        idents.append(KEYS.ident(key))
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
                notes.append(annotation(f"{label}: {value}" if label != "Kommentar" else value))
        if sample is not None:
            for coded in self.kids(sample, "CollectorCommentCoded"):
                disp = cs_display(coded)
                if disp:
                    notes.append(annotation(f"Prøvetakers kommentar: {disp}"))
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
            ext.append(other_info("Antall prøveglass", number))
        if sample is not None and (logistics := self.text(sample, "Logistics")):
            ext.append(other_info("Logistikk", logistics))
        for handling in self.kids(el, "SampleHandling"):
            if handling.text and handling.text.strip():
                ext.append(other_info("Håndtering av prøve", handling.text.strip()))
        pre = self.child(el, "Pretreatment")
        if pre is not None:
            pre_text = " ".join(
                x for x in (cs_display(self.child(pre, "Heading")), self.text(pre, "TextResultValue")) if x
            )
            if pre_text:
                ext.append(other_info("Forbehandling", pre_text))
        if product is not None:
            prod_text = " ".join(x for x in (self.text(product, "Type"), self.text(product, "RefRelatedProd")) if x)
            if prod_text:
                ext.append(other_info("Tatt annet objekt", prod_text))
        if ext:
            res["extension"] = ext
        self.specimens[accession] = (url, collected, el)
        self.specimen_urls.append(url)
        self.m.add(res, url, conditional("Specimen", KEY_SYSTEM, key))
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
