"""ServReq -> ServiceRequest, with the requester as a PractitionerRole."""

from __future__ import annotations

from typing import Any

from lxml import etree

from kjerne.services.provesvar import codes
from kjerne.services.provesvar.faults import where
from kjerne.services.provesvar.mapping import conditional
from kjerne.services.provesvar.svarrapport_actors import Actor
from kjerne.services.provesvar.svarrapport_fhir import KEY_SYSTEM, KEYS, annotation, ident, other_info
from kjerne.services.provesvar.svarrapport_parse import cs_display, text_of
from kjerne.services.provesvar.svarrapport_roles import RoleMixin
from kjerne.services.provesvar.svarrapport_status import request_status


class RequestMixin(RoleMixin):
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
        sr_status = request_status(dr_status)
        for i, req in enumerate(servreqs, start=1):
            req_id = self.text(req, "Id")
            key = KEYS.uuid("ServiceRequest", self.report_key or "", req_id or f"#{i}")
            url = KEYS.full_url("ServiceRequest", key)
            res: dict[str, Any] = {"resourceType": "ServiceRequest"}
            idents = []
            if req_id:
                idents.append(ident("ServReqId", self.idsys("ServReqId"), req_id))
            by_prov = self.text(req, "IdByServProvider")
            if by_prov:
                idents.append(ident("ServReqIdByServProvider", self.idsys("ServReqIdByServProvider"), by_prov))
            idents.append(KEYS.ident(key))
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
                txt = text_of(self.child(reason, "TextResultValue"))
                if txt:
                    rc["text"] = txt
                if rc:
                    reasons.append(rc)
            if reasons:
                res["reasonCode"] = reasons
            notes = []
            req_comment = self.text(req, "ReqComment")
            if req_comment:
                notes.append(annotation(f"Rekvirentens kommentar: {req_comment}"))
            for comment in self.kids(req, "Comment"):
                txt = self.text(comment, "TextResultValue") or cs_display(self.child(comment, "TextCode"))
                if txt:
                    notes.append(annotation(txt))
            if notes:
                res["note"] = notes
            ext = []
            for label, el_name in (
                ("Betalingskategori", "PaymentCat"),
                ("Ønsket svarrapporteringsprioritet", "RequestedPrioReport"),
            ):
                disp = cs_display(self.child(req, el_name))
                if disp:
                    ext.append(other_info(label, disp))
            receipt = self.moment(req, "ReceiptDate")
            if receipt:
                ext.append(other_info("Tidspunkt for mottak", receipt.fhir))
            for reservation in self.kids(req, "Reservation"):
                disp = cs_display(reservation)
                if disp:
                    ext.append(other_info("Reservasjon", disp))
            if ext:
                res["extension"] = ext
            if self.specimen_urls:
                res["specimen"] = [{"reference": u} for u in self.specimen_urls]
            self.sr_urls.append(url)
            self.m.add(res, url, conditional("ServiceRequest", KEY_SYSTEM, key))
