"""Faults found while reading a Svarrapport, and where in the message they are."""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

from kjerne.services.provesvar.svarrapport_schema import NS_MSGHEAD, NS_V13, NS_V14


@dataclass(frozen=True, slots=True)
class Fault:
    """One problem in a message.

    `code` is the kodeverk 8221 error code used in the AppRec receipt; `where` names the element (e.g.
    "Patient/OffId"); `tolerance` is the TOLERANCES id when the deviation was accepted with a warning.
    """

    code: str
    where: str
    text: str
    tolerance: str | None = None

    def __str__(self) -> str:
        tag = f" [{self.tolerance}]" if self.tolerance else ""
        return f"{self.where}: {self.text}{tag}"


def where(el: etree._Element | None, child: str | None = None) -> str:
    """A readable path such as 'Patient/ResultItem[3]/Investigation' for messages with one ServReport,
    'ServReport[2]/Patient/OffId' when there are several, 'Message/GenDate' above the report level."""
    parts: list[str] = []
    node = el
    in_report = False
    while node is not None:
        qn = etree.QName(node)
        name = qn.localname
        parent = node.getparent()
        if qn.namespace in (NS_V13, NS_V14) and name == "Message":
            if not in_report:
                parts.append("Message")
            break
        if qn.namespace == NS_MSGHEAD and name == "MsgHead":
            parts.append("MsgHead")
            break
        if name == "ServReport" and qn.namespace in (NS_V13, NS_V14):
            in_report = True
        if parent is not None:
            same = [c for c in parent if isinstance(c.tag, str) and c.tag == node.tag]
            if len(same) > 1:
                name = f"{name}[{same.index(node) + 1}]"
            elif name == "ServReport":
                node = parent
                continue
        parts.append(name)
        node = parent
    path = "/".join(reversed(parts))
    if child:
        path = f"{path}/{child}" if path else child
    return path or (child or "Message")
