"""Shared helpers for the Svarrapport mapping tests."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from lxml import etree

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
SVAR = SHARED / "svarrapport"
EXAMPLES = SVAR / "examples"
ACCEPTANCE = SVAR / "acceptance-tests"

V13 = "http://www.kith.no/xmlstds/labsvar/2008-12-01"
V14 = "http://www.kith.no/xmlstds/labsvar/2012-02-15"
MSGHEAD = "http://www.kith.no/xmlstds/msghead/2006-05-24"

# A fixed reception time after every test message's dates.
RECEIVED = dt.datetime(2025, 1, 1, 12, 0, tzinfo=dt.UTC)

BIOKJEMI_14 = EXAMPLES / "Svarrapport-v-1-4" / "Svar_biokjemi_v1-4_Ny.xml"
BIOKJEMI_14_M = EXAMPLES / "Svarrapport-v-1-4" / "Svar_biokjemi_v1-4_Endring.xml"
BIOKJEMI_14_C = EXAMPLES / "Svarrapport-v-1-4" / "Svar_biokjemi_v1-4_Kansellering.xml"
BIOKJEMI_13 = EXAMPLES / "Svarrapport-v-1-3" / "Svar_biokjemi_v1-3_Ny.xml"
DYRKNING_14 = EXAMPLES / "Svarrapport-v-1-4" / "Svar_mikrobiologi_dyrkning_v1-4_Ny.xml"
HISTOLOGI_14_A = EXAMPLES / "Svarrapport-v-1-4" / "Svar_patologi_histologi_v1-4_Tillegg.xml"
RADIOLOGI_14 = EXAMPLES / "Svarrapport-v-1-4" / "Svar_radiologi_v1-4_Ny.xml"


def example_files() -> list[Path]:
    return sorted(EXAMPLES.glob("*/*.xml"))


def read(path: Path) -> bytes:
    return path.read_bytes()


def resources(bundle: dict[str, Any], resource_type: str | None = None) -> list[dict[str, Any]]:
    return [
        e["resource"]
        for e in bundle["entry"]
        if resource_type is None or e["resource"]["resourceType"] == resource_type
    ]


def by_url(bundle: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["fullUrl"]: e["resource"] for e in bundle["entry"]}


def references(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                yield value
            else:
                yield from references(value)
    elif isinstance(node, list):
        for item in node:
            yield from references(item)


def the_report(bundle: dict[str, Any]) -> dict[str, Any]:
    reports = resources(bundle, "DiagnosticReport")
    assert len(reports) == 1
    return reports[0]


def edit(path: Path, change: Callable[[etree._Element, dict[str, str]], None]) -> bytes:
    """Parse a message, let `change(root, ns)` modify it, serialise it again."""
    root = etree.fromstring(path.read_bytes())
    ns = {"s": root.nsmap[None]}
    change(root, ns)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def first(root: etree._Element, ns: dict[str, str], xpath: str) -> etree._Element:
    found = root.xpath(xpath, namespaces=ns)
    assert found, xpath
    return found[0]


def wrap_in_msghead(payload: bytes, msg_id: str = "envelope-1", sender_herid: str = "59") -> bytes:
    msg = etree.fromstring(payload)
    head = etree.fromstring(
        f"""<MsgHead xmlns="{MSGHEAD}">
 <MsgInfo>
  <Type V="SVAR_LAB" DN="Svarrapport-Laboratoriemedisin"/>
  <MIGversion>v1.2 2006-05-24</MIGversion>
  <GenDate>2017-09-21T10:00:00</GenDate>
  <MsgId>{msg_id}</MsgId>
  <Sender><Organisation><OrganisationName>St. Olavs Hospital HF</OrganisationName>
   <Ident><Id>{sender_herid}</Id><TypeId V="HER" S="2.16.578.1.12.4.1.1.9051" DN="HER-id"/></Ident>
  </Organisation></Sender>
  <Receiver><Organisation><OrganisationName>Norsk helsenett SF</OrganisationName>
   <Ident><Id>112374</Id><TypeId V="HER" S="2.16.578.1.12.4.1.1.9051" DN="HER-id"/></Ident>
  </Organisation></Receiver>
 </MsgInfo>
 <Document><RefDoc><MsgType V="XML" DN="XML-instans"/><Content/></RefDoc></Document>
</MsgHead>""".encode()
    )
    head.find(f".//{{{MSGHEAD}}}Content").append(msg)
    return etree.tostring(head, xml_declaration=True, encoding="UTF-8")
