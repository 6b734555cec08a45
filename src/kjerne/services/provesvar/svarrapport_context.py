"""The state of one mapping: the message (`MessageContext`) and each ServReport in it (`ReportContext`),
with the readers of coded values every part of a report uses."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from kjerne.services.provesvar import codes
from kjerne.services.provesvar.faults import where
from kjerne.services.provesvar.mapping import BundleEntries
from kjerne.services.provesvar.svarrapport_actors import ActorReader
from kjerne.services.provesvar.svarrapport_fhir import EXT_ACCREDITED, ID_BASE
from kjerne.services.provesvar.svarrapport_schema import Located
from kjerne.services.provesvar.tolerances import Moment, ValueProblem, read_bool


class MessageContext(ActorReader):
    """The message being mapped: what its reports add to the Bundle and the MappingResult."""

    def __init__(self, located: Located, received: dt.datetime) -> None:
        super().__init__(located, received)
        self.entries = BundleEntries()
        self.sender: dict[str, str] = {}
        self.msg_id: str | None = None
        self.service_type = ""
        self.report_ids: list[str] = []
        self.issued: str | None = None
        self.message_type: str | None = None
        self.gen_date_raw: str | None = None
        self.gen_date: Moment | None = None
        self.sender_key: str | None = None

    def add(self, resource: dict[str, Any], full_url: str, request: dict[str, str]) -> None:
        self.entries.add(resource, full_url, request)


@dataclass
class Item:
    """One ResultItem and what it becomes."""

    el: etree._Element
    parent: Item | None
    index_path: str
    children: list[Item] = field(default_factory=list)
    members: list[Item] = field(default_factory=list)  # RefIdResultItem links
    referenced: bool = False  # a member of some other item
    key: str = ""
    full_url: str = ""
    code: dict[str, Any] | None = None
    code_key: str = "item"
    own_codes: bool = False
    has_value: bool = False
    effective: Moment | None = None
    own_moment: Moment | None = None
    specimen_url: str | None = None
    resource: dict[str, Any] = field(default_factory=dict)
    tags: list[dict[str, str]] = field(default_factory=list)
    html: list[str] = field(default_factory=list)


class ReportContext:
    """One ServReport being mapped. Its parts (patient, roles, specimens, requests, results) are mixins on
    this class, combined in `svarrapport_report.Report`; the readers and fault collectors are the message's."""

    def __init__(self, m: MessageContext, sr: etree._Element) -> None:
        self.m = m
        self.sr = sr
        self.patient_ref: dict[str, Any] | None = None
        self.producer_key: str | None = None
        self.report_key: str | None = None
        self.dr_url = ""
        self.specimens: dict[str, tuple[str, Moment | None, etree._Element]] = {}  # accession -> (url, collected, el)
        self.specimen_urls: list[str] = []
        self.sr_urls: list[str] = []
        self.items: list[Item] = []
        self.roles: dict[str, str] = {}
        self.fallback_warned = False
        self.category_code: str | None = None
        self.cancelled = False
        self.serv_type = ""
        self.issue_date: Moment | None = None
        # the mapper's readers and fault collectors
        self.q, self.child, self.kids, self.text, self.code_v = m.q, m.child, m.kids, m.text, m.code_v
        self.error, self.warning, self.tolerate, self.moment = m.error, m.warning, m.tolerate, m.moment

    def idsys(self, kind: str) -> str:
        return f"{ID_BASE}:{self.producer_key}:{kind}"

    def coding(self, el: etree._Element, allowed: dict[str, codes.Kodeverk] | None) -> dict[str, str] | None:
        """A CV element as a Coding; None (and an error) when it cannot be read. None without error when the
        element only has original text (caller uses it as text)."""
        v = (el.get("V") or "").strip()
        s = (el.get("S") or "").strip()
        dn = (el.get("DN") or "").strip() or (el.get("OT") or "").strip()
        if not s:
            if v:
                self.error("X99", where(el), f"code '{v}' has no code system (S)")
            return None
        num = codes.kodeverk_number(s)
        if num is None or (allowed is not None and num not in allowed):
            self.error("X99", where(el), f"unknown code system {s}" + (f" for code '{v}'" if v else ""))
            return None
        if not v:
            return None
        if num == "7010" and " " in v:
            fixed = v.replace(" ", "")
            self.tolerate("T09-CODE-WHITESPACE", where(el), f"NORPAT code '{v}' read as {fixed}")
            v = fixed
        out = {"system": codes.kodeverk_system(num), "code": v}
        if dn:
            out["display"] = dn
        return out

    def concept(self, el: etree._Element, allowed: dict[str, codes.Kodeverk] | None) -> dict[str, Any]:
        c = self.coding(el, allowed) if el.get("S") or el.get("V") else None
        out: dict[str, Any] = {}
        if c:
            out["coding"] = [c]
        text = (el.get("OT") or "").strip() or (el.get("DN") or "").strip()
        if text:
            out["text"] = text
        return out

    def accredited(self, el: etree._Element) -> dict[str, Any] | None:
        acc = self.child(el, "Accredited")
        if acc is None:
            return None
        try:
            value = read_bool(acc.get("V"))
        except ValueProblem as exc:
            self.error("T02", where(acc), str(exc))
            return None
        if value is None:
            return None
        if value[1]:
            self.tolerate(value[1], where(acc), f"boolean '{acc.get('V')}' read as {str(value[0]).lower()}")
        return {"url": EXT_ACCREDITED, "valueBoolean": value[0]}
