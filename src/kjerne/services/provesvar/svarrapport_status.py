"""Report and result lifecycle: ServType (kodeverk 7309) and Status (7306) of a ServReport, and what they
make of the DiagnosticReport, ServiceRequest and Observation statuses."""

from __future__ import annotations

from lxml import etree

from kjerne.services.provesvar import codes
from kjerne.services.provesvar.faults import where
from kjerne.services.provesvar.svarrapport_context import ReportContext


def request_status(dr_status: str | None) -> str:
    return {
        "registered": "active",
        "preliminary": "active",
        "final": "completed",
        "amended": "completed",
        "appended": "completed",
        "cancelled": "revoked",
    }.get(dr_status or "", "unknown")


def lifecycle_tags(serv_type: str, status_code: str) -> list[dict[str, str]]:
    """The DiagnosticReport's meta.tag: ServType and Status as coded in the message."""
    tags: list[dict[str, str]] = []
    if serv_type in codes.SERV_TYPE_7309:
        tags.append(
            {
                "system": codes.kodeverk_system("7309"),
                "code": serv_type,
                "display": codes.SERV_TYPE_7309[serv_type],
            }
        )
    if status_code in codes.REPORT_STATUS_7306:
        tags.append(
            {
                "system": codes.kodeverk_system("7306"),
                "code": status_code,
                "display": codes.REPORT_STATUS_7306[status_code],
            }
        )
    return tags


class StatusMixin(ReportContext):
    def report_status(self) -> tuple[str, str | None]:
        """The report's Status code and its DiagnosticReport status; sets serv_type and cancelled."""
        sr = self.sr
        self.serv_type = self.code_v(sr, "ServType") or ""
        status_code = self.code_v(sr, "Status") or ""
        if self.serv_type not in codes.SERV_TYPE_7309:
            self.error("X99", where(sr, "ServType"), f"unknown ServType '{self.serv_type}' (kodeverk 7309)")
        if status_code not in codes.REPORT_STATUS_7306:
            self.error("X99", where(sr, "Status"), f"unknown report Status '{status_code}' (kodeverk 7306)")
        dr_status = codes.diagnostic_report_status(self.serv_type, status_code)
        self.cancelled = self.serv_type == "C"
        return status_code, dr_status

    def observation_status(self, el: etree._Element) -> str:
        if self.cancelled:
            return "cancelled"
        st = self.code_v(el, "ServType") or self.serv_type or "N"
        si = self.code_v(el, "StatusInvestigation") or ""
        if st not in codes.SERV_TYPE_7309:
            self.error("X99", where(el, "ServType"), f"unknown result ServType '{st}'")
            return "unknown"
        if si and si not in codes.STATUS_INVESTIGATION_8245:
            self.error("X99", where(el, "StatusInvestigation"), f"unknown StatusInvestigation '{si}' (kodeverk 8245)")
            return "unknown"
        return codes.observation_status(st, si) or "unknown"
