"""OBR with its ORC, SPM and OBX -> DiagnosticReport, ServiceRequest and Specimens (and, through
`ObservationMixin`, one Observation per OBX)."""

from __future__ import annotations

from typing import Any

from kjerne.services.provesvar.hl7v2_codes import SERVICE_SECTIONS, V2_0074, V2_0203
from kjerne.services.provesvar.hl7v2_context import KEY_SYSTEM, KEYS
from kjerne.services.provesvar.hl7v2_datatypes import EI, HD
from kjerne.services.provesvar.hl7v2_observations import ObservationMixin, Order
from kjerne.services.provesvar.hl7v2_parse import ObxItem, OrderGroup, Seg, SpecimenGroup
from kjerne.services.provesvar.hl7v2_patient import Subject
from kjerne.services.provesvar.hl7v2_status import ORDER_STATUS, REPORT_STATUS, derived_status, request_status
from kjerne.services.provesvar.mapping import conditional
from kjerne.services.provesvar.svarrapport_fhir import EXT_COMMENT
from kjerne.services.provesvar.tolerances import Moment


class ResultMixin(ObservationMixin):
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
        report_url = KEYS.full_url("DiagnosticReport", report_key)
        request_key = KEYS.uuid("ServiceRequest", report_key)
        request_url = KEYS.full_url("ServiceRequest", request_key)

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
            report_status = derived_status(statuses)
            self.warning(
                "101", obr.where(25), f"result status missing; '{report_status}' derived from the results' statuses"
            )
        else:
            report_status = "unknown"

        # ServiceRequest
        request: dict[str, Any] = {"resourceType": "ServiceRequest", "identifier": [*idents, KEYS.ident(request_key)]}
        order_status = orc.v(5).upper() if orc else ""
        if orc is not None and order_status and order_status not in ORDER_STATUS:
            self.warning("103", orc.where(5), f"order status '{order_status}' is not in HL7 table 0038")
        request["status"] = ORDER_STATUS.get(order_status) or request_status(report_status)
        request["intent"] = "order"
        if code:
            request["code"] = code
        if subject:
            request["subject"] = subject.reference
        if requester:
            request["requester"] = {"reference": requester}
        if specimen_urls:
            request["specimen"] = [{"reference": u} for u in specimen_urls]
        self.add(request, request_url, conditional("ServiceRequest", KEY_SYSTEM, request_key))

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
        self.add(report, report_url, conditional("DiagnosticReport", report_ident["system"], report_ident["value"]))

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
            key = KEYS.uuid("Specimen", patient_key, f"{idents[0]['system']}|{idents[0]['value']}")
        else:
            key = KEYS.uuid("Specimen", report_key, f"#{index}")
        url = KEYS.full_url("Specimen", key)
        res: dict[str, Any] = {"resourceType": "Specimen", "identifier": [*idents, KEYS.ident(key)]}
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
            if self.entries.resource(self.specimen_keys[key]) != res:
                self.warning("102", spm.where(2), "the specimen is described twice with different details; the "
                             "first description is used")  # fmt: skip
            return self.specimen_keys[key], start
        self.specimen_keys[key] = url
        self.add(res, url, conditional("Specimen", KEY_SYSTEM, key))
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
        key = KEYS.uuid("Specimen", report_key, "OBR-15")
        url = KEYS.full_url("Specimen", key)
        res: dict[str, Any] = {"resourceType": "Specimen", "identifier": [KEYS.ident(key)]}
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
        self.add(res, url, conditional("Specimen", KEY_SYSTEM, key))
        return url, observed
