"""The ORU^R01 message as a whole: the header checks, the segment groups, and each patient's orders."""

from __future__ import annotations

import re

from kjerne.services.provesvar.hl7v2_parse import ObxItem, OrderGroup, PatientGroup, SpecimenGroup
from kjerne.services.provesvar.hl7v2_patient import PatientMixin
from kjerne.services.provesvar.hl7v2_results import ResultMixin


class OruMapper(ResultMixin, PatientMixin):
    """The whole mapping of one message; `run` collects the faults and Bundle entries."""

    def run(self) -> None:
        msh = self.msg.msh
        kind, event = msh.v(9, 1).upper(), msh.v(9, 2).upper()
        if kind != "ORU":
            shown = "^".join(p for p in (kind, event) if p) or "(empty)"
            self.error(
                "200", msh.where(9), f"message type {shown} is not supported; Kjerne takes ORU^R01 (laboratory results)"
            )
        elif event != "R01":
            self.error("201", msh.where(9), f"event ORU^{event or '(empty)'} is not supported; Kjerne takes ORU^R01")
        version = msh.v(12)
        if not re.fullmatch(r"2\.(3(\.1)?|[4-9](\.\d+)*)", version):
            self.error("203", msh.where(12), f"HL7 version '{version}' is not supported (2.3 to 2.9)")
        if self.errors:
            return
        if not msh.v(10):
            self.error("101", msh.where(10), "message control id missing")
        self.message_time = self.moment(msh, 7)
        self.identify_sender()
        groups = self.walk()
        if not groups:
            self.error("100", "PID", "PID segment missing: the results name no patient")
            return
        if not any(pg.orders for pg in groups):
            self.error("100", "OBR", "OBR segment missing: the message holds no report")
        if not any(pg.obx or any(o.obx or any(s.obx for s in o.specimens) for o in pg.orders) for pg in groups):
            self.error("100", "OBX", "OBX segment missing: the message holds no results")
        for pg in groups:
            self.patient_group(pg)

    def walk(self) -> list[PatientGroup]:
        patients: list[PatientGroup] = []
        patient: PatientGroup | None = None
        order: OrderGroup | None = None
        specimen: SpecimenGroup | None = None
        last_obx: ObxItem | None = None
        for seg in self.msg.segments[1:]:
            name = seg.name
            if name == "PID":
                patient = PatientGroup(seg)
                patients.append(patient)
                order, specimen, last_obx = None, None, None
            elif name in ("ORC", "OBR"):
                if patient is None:
                    self.error("100", seg.where(), f"{name} before PID: the results name no patient")
                    continue
                if name == "OBR" and order is not None and order.obr is None:
                    order.obr = seg  # the OBR of the preceding ORC
                else:
                    order = OrderGroup(orc=seg) if name == "ORC" else OrderGroup(obr=seg)
                    patient.orders.append(order)
                specimen, last_obx = None, None
            elif name == "SPM":
                if order is None:
                    self.error("100", seg.where(), "SPM outside an order group (no OBR before it)")
                    continue
                specimen = SpecimenGroup(seg)
                order.specimens.append(specimen)
                last_obx = None
            elif name == "OBX":
                item = ObxItem(seg)
                if specimen is not None:
                    specimen.obx.append(item)
                elif order is not None:
                    item.before_obr = order.obr is None
                    order.obx.append(item)
                elif patient is not None:
                    patient.obx.append(item)
                else:
                    self.error("100", seg.where(), "OBX before PID: the result names no patient")
                    continue
                last_obx = item
            elif name == "NTE":
                if last_obx is not None:
                    last_obx.notes.append(seg)
                elif specimen is not None:
                    specimen.notes.append(seg)
                elif order is not None:
                    order.notes.append(seg)
                else:
                    self.warning("0", seg.where(), "a note outside any order or result is not mapped")
            # every other segment (PD1, PV1, PRT, TQ1, CTD, FT1, CTI, TXA, Z-segments ...) carries no result
        return patients

    def patient_group(self, pg: PatientGroup) -> None:
        subject = self.patient(pg.pid)
        if not pg.orders:
            self.error("100", pg.pid.where(), "the patient has no OBR (order/report) in the message")
        for i, item in enumerate(pg.obx, start=1):
            self.patient_observation(item, subject, i)
        for og in pg.orders:
            if og.obr is None:
                assert og.orc is not None
                self.error("100", og.orc.where(), "ORC without OBR")
                continue
            self.order(og, subject)
