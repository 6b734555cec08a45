"""Reading a Svarrapport element tree: namespace-bound element access, faults, dates, and text content
(XHTML flattened)."""

from __future__ import annotations

import datetime as dt
import re

from lxml import etree

from kjerne.services.provesvar.faults import Fault, where
from kjerne.services.provesvar.mapping import CLOCK_SKEW
from kjerne.services.provesvar.svarrapport_schema import Located, element_children
from kjerne.services.provesvar.tolerances import Moment, ValueProblem, read_ts, warn

MSGID_RE = re.compile(rb"<(?:[\w.-]+:)?MsgId>\s*([^<\s]{1,128})\s*</")


def scrape_msg_id(xml: bytes) -> str | None:
    """Best effort for unreadable input, so a rejection receipt can still refer to the message."""
    m = MSGID_RE.search(xml or b"")
    return m.group(1).decode("utf-8", "replace") if m else None


def text_of(el: etree._Element | None) -> str | None:
    """Text content, XHTML flattened, line breaks kept as \\n, surrounding whitespace removed."""
    if el is None:
        return None
    if any(True for _ in element_children(el)):
        blocks: list[str] = []
        for node in el.iter():
            if not isinstance(node.tag, str):
                continue
            local = etree.QName(node).localname
            if local in ("p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4") and blocks and blocks[-1] != "\n":
                blocks.append("\n")
            if node.text:
                blocks.append(node.text)
            if node is not el and node.tail:
                blocks.append(node.tail)
        text = "".join(blocks)
    else:
        text = el.text or ""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = [re.sub(r"[ \t]+", " ", line).strip() for line in text.split("\n")]
    out = "\n".join(lines).strip()
    out = re.sub(r"\n{3,}", "\n\n", out)
    return out or None


def has_xhtml(el: etree._Element | None) -> bool:
    return el is not None and any(True for _ in element_children(el))


def cs_display(el: etree._Element | None) -> str | None:
    if el is None:
        return None
    dn, v = (el.get("DN") or "").strip(), (el.get("V") or "").strip()
    if dn and v:
        return f"{dn} ({v})"
    return dn or v or (el.get("OT") or "").strip() or None


class XmlReader:
    """Element access in the message's namespace, and the faults found while reading."""

    def __init__(self, located: Located, received: dt.datetime) -> None:
        self.loc = located
        self.ns = f"{{{located.namespace}}}"
        self.received = received
        self.errors: list[Fault] = []
        self.warnings: list[Fault] = []

    def q(self, name: str) -> str:
        return self.ns + name

    def child(self, el: etree._Element | None, name: str) -> etree._Element | None:
        return None if el is None else el.find(self.ns + name)

    def kids(self, el: etree._Element | None, name: str) -> list[etree._Element]:
        return [] if el is None else el.findall(self.ns + name)

    def text(self, el: etree._Element | None, name: str) -> str | None:
        c = self.child(el, name)
        if c is None or c.text is None:
            return None
        return c.text.strip() or None

    def code_v(self, el: etree._Element | None, name: str) -> str | None:
        c = self.child(el, name)
        if c is None:
            return None
        return (c.get("V") or "").strip() or None

    def error(self, code: str, w: str, text: str) -> None:
        self.errors.append(Fault(code, w, text))

    def warning(self, code: str, w: str, text: str) -> None:
        self.warnings.append(Fault(code, w, text))

    def tolerate(self, tolerance: str | None, w: str, text: str) -> None:
        if tolerance:
            self.warnings.append(warn(tolerance, w, text))

    def moment(self, el: etree._Element | None, name: str, *, future_ok: bool = False) -> Moment | None:
        c = self.child(el, name)
        if c is None:
            return None
        raw = c.get("V")
        try:
            m = read_ts(raw)
        except ValueProblem as exc:
            self.error("T02", where(c), str(exc))
            return None
        if m is None:
            return None
        if m.tolerance:
            self.tolerate(m.tolerance, where(c), f"date/time '{raw}' read as {m.fhir}")
        if not future_ok and m.at > self.received + CLOCK_SKEW:
            self.error("X99", where(c), f"date {m.fhir} is in the future")
        return m
