"""One ServReport -> DiagnosticReport with everything it references: the patient, PractitionerRoles,
Specimens, ServiceRequests and the Observations of its results."""

from __future__ import annotations

import base64
import html
from typing import Any

from kjerne.fhir.identifiers import OID_HERID, OID_ORGNR
from kjerne.services.provesvar import codes
from kjerne.services.provesvar.faults import where
from kjerne.services.provesvar.mapping import conditional
from kjerne.services.provesvar.svarrapport_actors import PRODUCER_PREFIX
from kjerne.services.provesvar.svarrapport_context import Item
from kjerne.services.provesvar.svarrapport_fhir import (
    EXT_APPROVAL_DATE,
    EXT_COMMENT,
    EXT_REPORT_DATE,
    KEYS,
    ident,
    other_info,
)
from kjerne.services.provesvar.svarrapport_parse import cs_display, has_xhtml
from kjerne.services.provesvar.svarrapport_patient import PatientMixin
from kjerne.services.provesvar.svarrapport_requests import RequestMixin
from kjerne.services.provesvar.svarrapport_results import ResultMixin
from kjerne.services.provesvar.svarrapport_specimens import SpecimenMixin
from kjerne.services.provesvar.svarrapport_status import lifecycle_tags
from kjerne.services.provesvar.tolerances import Moment


class Report(ResultMixin, SpecimenMixin, RequestMixin, PatientMixin):
    def run(self) -> None:
        sr = self.sr
        n_errors = len(self.m.errors)
        # Service type and status
        status_code, dr_status = self.report_status()
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
        producer_ident = producer.inst_ident or producer.org_ident or producer.person_ident
        if producer_el is None:
            self.error("X99", where(sr, "ServProvider"), "service provider (sender of the report) missing")
        elif producer_ident is None:
            self.error(
                "X99",
                where(producer_el),
                "the service provider is not identified (no organisation number, HER-id or HPR number)",
            )
        else:
            self.producer_key = f"{PRODUCER_PREFIX[producer_ident['system']]}-{producer_ident['value']}"
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
        self.dr_url = KEYS.full_url("DiagnosticReport", self.report_key)

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
        self.m.add(dr, self.dr_url, conditional("DiagnosticReport", dr_ident["system"], dr_ident["value"]))

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
        tags = lifecycle_tags(self.serv_type, status_code)
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
        cancel = cs_display(self.child(sr, "CancellationCode"))
        if cancel:
            ext.append(other_info("Kanselleringskode", cancel))
        if ext:
            dr["extension"] = ext
        idents = []
        if report_kind == "ServReportId" and report_value:
            idents.append(ident("ServReportId", self.idsys("ServReportId"), report_value, use="official"))
        if req_id:
            idents.append(
                ident(
                    "ServReqId",
                    self.idsys("ServReqId"),
                    req_id,
                    use="official" if report_kind == "ServReqId" else "secondary",
                )
            )
        if self.m.msg_id:
            idents.append(ident("MsgId", self.idsys("MsgId"), self.m.msg_id, use="secondary"))
        if not any(i["type"]["coding"][0]["code"] == report_kind for i in idents):
            idents.insert(0, ident(report_kind, self.idsys(report_kind), report_value, use="official"))
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
        any_xhtml = any(has_xhtml(self.child(self.child(i.el, "TextResult"), "TextResultValue")) for i in self.items)
        if not (self.category_code in ("HPAT", "HRAD") or any_xhtml):
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
