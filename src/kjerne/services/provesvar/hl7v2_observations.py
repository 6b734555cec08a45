"""OBX -> Observation, updated on a key made from its report, code, sub-id and occurrence."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kjerne.services.provesvar.hl7v2_actors import ActorMixin
from kjerne.services.provesvar.hl7v2_context import KEY_SYSTEM, KEYS
from kjerne.services.provesvar.hl7v2_datatypes import EI, reference_range
from kjerne.services.provesvar.hl7v2_parse import ObxItem, Seg
from kjerne.services.provesvar.hl7v2_patient import Subject
from kjerne.services.provesvar.hl7v2_status import OBSERVATION_STATUS, REPORT_STATUS
from kjerne.services.provesvar.hl7v2_values import ValueMixin
from kjerne.services.provesvar.mapping import OBSERVATION_CATEGORY, conditional
from kjerne.services.provesvar.tolerances import Moment


@dataclass
class Order:
    """What one OBR becomes, as far as its results need it."""

    report_key: str
    report_url: str
    request_url: str
    status_code: str
    specimen_urls: list[str]
    collected: Moment | None
    effective: Moment | None
    issued: str | None
    forms: list[dict[str, Any]] = field(default_factory=list)


class ObservationMixin(ValueMixin, ActorMixin):
    def note_text(self, nte: Seg) -> str | None:
        lines = [r.text() for r in nte.reps(3)]
        text = "\n".join(lines).strip()
        return text or None

    def patient_observation(self, item: ObxItem, subject: Subject | None, index: int) -> None:
        obx = item.seg
        kind = obx.v(2).upper()
        if kind in ("ED", "RP"):
            self.warning("0", obx.where(2), f"a {kind} value outside a report (no OBR) is not mapped")
            return
        patient_key = subject.key if subject else "unknown-patient"
        ctx = Order(
            report_key=f"{patient_key}|patient-observations",
            report_url="",
            request_url="",
            status_code="",
            specimen_urls=[],
            collected=None,
            effective=None,
            issued=self.message_time.fhir if self.message_time and self.message_time.has_time else None,
        )
        self.observation(item, subject, ctx, None, {}, stamp=obx.v(14) or f"#{index}")

    def observation(
        self,
        item: ObxItem,
        subject: Subject | None,
        ctx: Order,
        specimen_url: str | None,
        occurrences: dict[str, int],
        stamp: str = "",
    ) -> tuple[str, str] | None:
        obx = item.seg
        kind = obx.v(2).upper()
        if kind in ("ED", "RP"):
            form = self.attachment(obx, kind)
            if form:
                ctx.forms.append(form)
            return None
        code = self.concept(obx.rep(3), obx.where(3))
        if code is None:
            self.error("101", obx.where(3), "observation identifier missing: the result names no analysis")
            return None
        first = (code.get("coding") or [{}])[0]
        code_key = f"{first['system']}|{first['code']}" if first else f"text|{code.get('text', '')}"
        code_key += f"|{obx.v(4)}"
        occurrences[code_key] = occurrences.get(code_key, 0) + 1
        key = KEYS.uuid("Observation", ctx.report_key, code_key, stamp, f"#{occurrences[code_key]}")
        url = KEYS.full_url("Observation", key)

        raw_status = obx.v(11).upper()
        if raw_status and raw_status not in OBSERVATION_STATUS:
            self.error("103", obx.where(11), f"result status '{raw_status}' is not in HL7 table 0085")
            status = "unknown"
        elif not raw_status:
            status = REPORT_STATUS.get(ctx.status_code, "unknown") if ctx.status_code else "unknown"
            status = {"partial": "preliminary", "registered": "registered"}.get(status, status)
            self.warning("101", obx.where(11), f"result status missing; read as '{status}' from the report")
        else:
            status = OBSERVATION_STATUS[raw_status]

        res: dict[str, Any] = {"resourceType": "Observation"}
        idents: list[dict[str, Any]] = []
        instance = EI.of(obx.rep(21)) if obx.reps(21) else None
        if instance:
            idents.append({"system": self.id_system("observation", instance.authority), "value": instance.id})
        res["identifier"] = [*idents, KEYS.ident(key)]
        if ctx.request_url:
            res["basedOn"] = [{"reference": ctx.request_url}]
        res["status"] = status
        res["category"] = [
            {"coding": [{"system": OBSERVATION_CATEGORY, "code": "laboratory", "display": "Laboratory"}]}
        ]
        res["code"] = code
        if subject:
            res["subject"] = subject.reference
        effective = self.moment(obx, 14) or ctx.effective or ctx.collected
        self.moment(obx, 19)  # analysis time: checked, not mapped
        if effective:
            res["effectiveDateTime"] = effective.fhir
        if ctx.issued:
            res["issued"] = ctx.issued
        performers = []
        if obx.reps(16):
            url_role = self.role(*self.practitioner(obx.rep(16), obx.where(16)))
            if url_role:
                performers.append({"reference": url_role})
        if obx.reps(23):
            org = self.organization(obx.rep(23))
            if org:
                performers.append(org)
        if not performers and self.sender_org:
            performers.append(dict(self.sender_org))
        if performers:
            res["performer"] = performers

        value = self.value(obx, kind, raw_status)
        if value:
            res.update(value)
        interpretation = self.interpretation(obx)
        if interpretation:
            res["interpretation"] = interpretation
        notes = [t for t in (self.note_text(n) for n in item.notes) if t]
        if notes:
            res["note"] = [{"text": t} for t in notes]
        if obx.reps(20):
            site = self.concept(obx.rep(20), obx.where(20))
            if site:
                res["bodySite"] = site
        if obx.reps(17):
            method = self.concept(obx.rep(17), obx.where(17))
            if method:
                res["method"] = method
        if specimen_url:
            res["specimen"] = {"reference": specimen_url}
        if obx.v(7):
            res["referenceRange"] = [reference_range(obx.v(7), res.get("valueQuantity"))]
        self.add(res, url, conditional("Observation", KEY_SYSTEM, key))
        return url, status
