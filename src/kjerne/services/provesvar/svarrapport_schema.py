"""Schemas for KITH Svarrapport v1.3/v1.4, the MsgHead v1.2 envelope and AppRec v1.1.

The schemas are compiled once per process into one validator (a small wrapper schema imports all four
namespaces, so a MsgHead whose RefDoc/Content carries a Svarrapport is validated envelope and payload in one
pass). Nothing is fetched from the network: `kith.xsd` is imported from the local copy and the W3C
XML-Signature schema that MsgHead imports by URL is answered with a local stand-in.

Besides the validator this module exposes each element's content model (allowed children, their counts,
simple type), which `tolerances.py` uses to tell harmless deviations (element order, empty dates) from
real faults.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lxml import etree

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "data" / "svarrapport"

NS_V13 = "http://www.kith.no/xmlstds/labsvar/2008-12-01"
NS_V14 = "http://www.kith.no/xmlstds/labsvar/2012-02-15"
NS_MSGHEAD = "http://www.kith.no/xmlstds/msghead/2006-05-24"
NS_APPREC = "http://www.kith.no/xmlstds/apprec/2012-02-15"
NS_KITH = "http://www.kith.no/xmlstds"
NS_XSD = "http://www.w3.org/2001/XMLSchema"
NS_XMLDSIG = "http://www.w3.org/2000/09/xmldsig#"

VERSIONS = {NS_V13: "1.3", NS_V14: "1.4"}
SCHEMA_FILES = {
    NS_V13: "svar-v13.xsd",
    NS_V14: "svar-v1.4.xsd",
    NS_MSGHEAD: "MsgHead-v1_2.xsd",
    NS_APPREC: "AppRec-v1.1.xsd",
}
_LABSVAR_NS_PATTERN = re.compile(r"^http://www\.kith\.no/xmlstds/labsvar/")


class SvarrapportFormatError(Exception):
    """The input cannot be read as a Svarrapport at all. `code` is a kodeverk 8221 value."""

    def __init__(self, code: str, where: str, text: str) -> None:
        super().__init__(f"{where}: {text}")
        self.code, self.where, self.text = code, where, text


class _LocalResolver(etree.Resolver):
    """Serve every schema import from SCHEMA_DIR; nothing may come from the network."""

    def resolve(self, system_url: str | None, public_id: str | None, context: Any) -> Any:
        if not system_url:
            return None
        name = system_url.rsplit("/", 1)[-1]
        if system_url.startswith("http") and "xmldsig" in system_url:
            return self.resolve_filename(str(SCHEMA_DIR / "xmldsig-stub.xsd"), context)
        local = SCHEMA_DIR / name
        if system_url.startswith("http") and local.is_file():
            return self.resolve_filename(str(local), context)
        return None


def _schema_parser() -> etree.XMLParser:
    parser = etree.XMLParser(no_network=True, resolve_entities=False, load_dtd=False)
    parser.resolvers.add(_LocalResolver())
    return parser


def secure_parser() -> etree.XMLParser:
    """Parser for untrusted messages: no DTDs, no entity expansion, no network, comments dropped."""
    return etree.XMLParser(
        no_network=True,
        resolve_entities=False,
        load_dtd=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )


_PARSER = secure_parser()


# libxml2 compiles a schema that imports others unreliably when two threads do it at once (a cold
# server's first concurrent messages): compile each schema once, under a lock.
_COMPILING = threading.Lock()


def validator() -> etree.XMLSchema:
    with _COMPILING:
        return _validator()


def apprec_validator() -> etree.XMLSchema:
    with _COMPILING:
        return _apprec_validator()


@functools.cache
def _validator() -> etree.XMLSchema:
    imports = "".join(
        f'<import namespace="{ns}" schemaLocation="{(SCHEMA_DIR / f).as_uri()}"/>' for ns, f in SCHEMA_FILES.items()
    )
    wrapper = f'<schema xmlns="{NS_XSD}" targetNamespace="urn:kjerne:svarrapport-schemas">{imports}</schema>'
    doc = etree.fromstring(wrapper.encode(), _schema_parser(), base_url=SCHEMA_DIR.as_uri() + "/")
    return etree.XMLSchema(doc)


@functools.cache
def _apprec_validator() -> etree.XMLSchema:
    doc = etree.parse(str(SCHEMA_DIR / SCHEMA_FILES[NS_APPREC]), _schema_parser())
    return etree.XMLSchema(doc)


# --------------------------------------------------------------------------------------------------
# Content models


@dataclass(eq=False)
class Decl:
    """An element declaration: which children it may have and how many of each."""

    name: str
    ns: str
    simple_type: str | None = None  # local name of a kith:/xsd: type (TS, CS, CV, PQ, ST, BL, string ...)
    open: bool = False  # anyType / xs:any content / foreign complex type: children are not checked
    children: dict[str, tuple[Decl, int, int | None]] = field(default_factory=dict)
    required: list[tuple[str, ...]] = field(default_factory=list)  # each tuple: one of these must exist


class _ModelBuilder:
    def __init__(self, schema_file: Path) -> None:
        self.doc = etree.parse(str(schema_file), _schema_parser()).getroot()
        self.tns = self.doc.get("targetNamespace")
        self.globals = {e.get("name"): e for e in self.doc if _is(e, "element")}
        self.types = {e.get("name"): e for e in self.doc if _is(e, "complexType")}
        self.memo: dict[int, Decl] = {}
        self.keep: list[etree._Element] = []  # lxml proxies must stay alive for id() keys to stay unique

    def decl(self, node: etree._Element) -> Decl:
        if node.get("ref"):
            prefix, local = _split_qname(node.get("ref"))
            ref_ns = node.nsmap.get(prefix)
            if ref_ns != self.tns or local not in self.globals:
                return Decl(local, ref_ns or "", open=True)
            node = self.globals[local]
        key = id(node)
        if key in self.memo:
            return self.memo[key]
        d = Decl(node.get("name"), self.tns)
        self.memo[key] = d
        self.keep.append(node)
        typ = node.get("type")
        if typ:
            prefix, local = _split_qname(typ)
            ns = node.nsmap.get(prefix)
            if ns == self.tns and local in self.types:
                self._complex(d, self.types[local])
            elif local == "anyType" or ns not in (NS_KITH, NS_XSD):
                d.open = True
            else:
                d.simple_type = local
            return d
        complex_type = _first(node, "complexType")
        if complex_type is None:
            d.simple_type = "string"
        else:
            self._complex(d, complex_type)
        return d

    def _complex(self, d: Decl, ct: etree._Element) -> None:
        body = ct
        content = _first(ct, "complexContent")
        if content is not None:
            for kind in ("restriction", "extension"):
                found = _first(content, kind)
                if found is not None:
                    body = found
                    break
        for child in body:
            if _is(child, "sequence") or _is(child, "choice") or _is(child, "all"):
                self._group(d, child, outer_min=1, outer_max=1, in_choice=False)

    def _group(self, d: Decl, group: etree._Element, outer_min: int, outer_max: int | None, in_choice: bool) -> bool:
        """Add a model group's particles to d. Returns True when the group can be empty."""
        gmin = int(group.get("minOccurs", "1")) * outer_min
        gmax = _mul(_max(group.get("maxOccurs", "1")), outer_max)
        is_choice = _is(group, "choice")
        alternatives: list[tuple[str, ...]] = []
        can_be_empty = not is_choice
        for p in group:
            if _is(p, "element"):
                child = self.decl(p)
                pmin = int(p.get("minOccurs", "1"))
                pmax = _mul(_max(p.get("maxOccurs", "1")), gmax)
                prev = d.children.get(child.name)
                if pmax is None or (prev is not None and prev[2] is None):
                    total_max = None
                else:
                    total_max = pmax + (prev[2] if prev is not None else 0)
                d.children[child.name] = (child, 0, total_max)
                if is_choice:
                    alternatives.append((child.name,))
                    can_be_empty = can_be_empty or pmin == 0
                elif pmin and gmin and not in_choice:
                    d.required.append((child.name,))
                elif pmin == 0:
                    pass
            elif _is(p, "any"):
                d.open = True
                can_be_empty = True
            elif _is(p, "sequence") or _is(p, "choice"):
                empty = self._group(d, p, gmin, gmax, in_choice=in_choice or is_choice)
                if is_choice:
                    can_be_empty = can_be_empty or empty
        if is_choice and not can_be_empty and gmin and not in_choice:
            d.required.append(tuple(name for alt in alternatives for name in alt))
        return can_be_empty or gmin == 0


def _is(node: Any, local: str) -> bool:
    return isinstance(node.tag, str) and node.tag == f"{{{NS_XSD}}}{local}"


def _first(node: etree._Element, local: str) -> etree._Element | None:
    for child in node:
        if _is(child, local):
            return child
    return None


def _split_qname(q: str) -> tuple[str | None, str]:
    return tuple(q.split(":", 1)) if ":" in q else (None, q)  # type: ignore[return-value]


def _local(q: str) -> str:
    return q.split(":", 1)[-1]


def _max(v: str) -> int | None:
    return None if v == "unbounded" else int(v)


def _mul(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None else a * b


@functools.cache
def root_decl(ns: str, root: str) -> Decl:
    builder = _ModelBuilder(SCHEMA_DIR / SCHEMA_FILES[ns])
    return builder.decl(builder.globals[root])


def decl_for(el: etree._Element, stop: etree._Element | None = None) -> Decl | None:
    """The declaration governing `el`, found by walking down from the nearest Message/MsgHead root."""
    chain: list[etree._Element] = []
    node: etree._Element | None = el
    while node is not None:
        chain.append(node)
        qn = etree.QName(node)
        if qn.namespace in (NS_V13, NS_V14) and qn.localname == "Message":
            break
        if qn.namespace == NS_MSGHEAD and qn.localname == "MsgHead":
            break
        node = node.getparent()
    else:
        return None
    top = chain[-1]
    qn = etree.QName(top)
    decl = root_decl(qn.namespace, qn.localname)
    for node in reversed(chain[:-1]):
        qn = etree.QName(node)
        entry = decl.children.get(qn.localname) if qn.namespace == decl.ns else None
        if entry is None:
            return None
        decl = entry[0]
    return decl


def element_children(el: etree._Element) -> Iterator[etree._Element]:
    for child in el:
        if isinstance(child.tag, str):
            yield child


# --------------------------------------------------------------------------------------------------
# Reading a message


@dataclass
class Envelope:
    """What the MsgHead says about the transport."""

    msg_id: str | None
    gen_date: str | None
    msg_type: str | None
    sender: dict[str, str]
    receiver: dict[str, str]


@dataclass
class Located:
    tree: etree._ElementTree
    message: etree._Element  # the Svarrapport Message element
    namespace: str
    version: str
    envelope: Envelope | None


def parse(xml: bytes) -> etree._ElementTree:
    if not xml or not xml.strip():
        raise SvarrapportFormatError("T01", "Message", "empty input")
    try:
        root = etree.fromstring(xml, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise SvarrapportFormatError(
            "T01", "Message", "not well-formed XML: " + re.sub(r" \(<string>, line \d+\)$", "", str(exc))
        ) from None
    return root.getroottree()


def _organisation(org: etree._Element | None) -> dict[str, str]:
    """MsgHead Organisation -> {'name', 'orgnr', 'herid', ...}; a nested Organisation adds dept_* keys."""
    out: dict[str, str] = {}
    if org is None:
        return out
    ns = f"{{{NS_MSGHEAD}}}"

    def collect(o: etree._Element, prefix: str) -> None:
        name = o.findtext(f"{ns}OrganisationName")
        if name:
            out[prefix + "name"] = name.strip()
        for ident in o.findall(f"{ns}Ident"):
            value = (ident.findtext(f"{ns}Id") or "").strip()
            type_el = ident.find(f"{ns}TypeId")
            kind = (type_el.get("V") or "").strip().upper() if type_el is not None else ""
            key = {"ENH": "orgnr", "HER": "herid", "RSH": "resh"}.get(kind)
            if key and value:
                out[prefix + key] = value

    collect(org, "")
    sub = org.find(f"{ns}Organisation")
    if sub is not None:
        collect(sub, "dept_")
    return out


def locate(tree: etree._ElementTree) -> Located:
    root = tree.getroot()
    qn = etree.QName(root)
    if qn.namespace == NS_MSGHEAD and qn.localname == "MsgHead":
        ns = f"{{{NS_MSGHEAD}}}"
        info = root.find(f"{ns}MsgInfo")
        messages = [
            el
            for content in root.iterfind(f"{ns}Document/{ns}RefDoc/{ns}Content")
            for el in element_children(content)
            if etree.QName(el).localname == "Message" and _LABSVAR_NS_PATTERN.match(etree.QName(el).namespace or "")
        ]
        if not messages:
            raise SvarrapportFormatError(
                "T10", "MsgHead/Document", "the envelope carries no Svarrapport (Document/RefDoc/Content/Message)"
            )
        if len(messages) > 1:
            raise SvarrapportFormatError(
                "T10", "MsgHead/Document", f"the envelope carries {len(messages)} Svarrapport documents; send one"
            )
        message = messages[0]
        type_el = info.find(f"{ns}Type") if info is not None else None
        envelope = Envelope(
            msg_id=(info.findtext(f"{ns}MsgId") or "").strip() or None if info is not None else None,
            gen_date=(info.findtext(f"{ns}GenDate") or "").strip() or None if info is not None else None,
            msg_type=type_el.get("V") if type_el is not None else None,
            sender=_organisation(info.find(f"{ns}Sender/{ns}Organisation") if info is not None else None),
            receiver=_organisation(info.find(f"{ns}Receiver/{ns}Organisation") if info is not None else None),
        )
    elif qn.localname == "Message" and _LABSVAR_NS_PATTERN.match(qn.namespace or ""):
        message, envelope = root, None
    else:
        raise SvarrapportFormatError(
            "T10", qn.localname, f"root element {{{qn.namespace}}}{qn.localname} is not a Svarrapport or MsgHead"
        )
    mns = etree.QName(message).namespace or ""
    if mns not in VERSIONS:
        raise SvarrapportFormatError(
            "T10", "Message", f"Svarrapport namespace {mns} is not supported (v1.3 {NS_V13} or v1.4 {NS_V14})"
        )
    return Located(tree, message, mns, VERSIONS[mns], envelope)


def validate(tree: etree._ElementTree) -> list[Any]:
    """Schema errors (lxml log entries); empty when valid."""
    schema = validator()
    if schema.validate(tree):
        return []
    return list(schema.error_log)


def version_of(xml_root: etree._Element) -> str | None:
    return VERSIONS.get(etree.QName(xml_root).namespace or "")
