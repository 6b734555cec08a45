"""AppRec v1.1 receipts (`http://www.kith.no/xmlstds/apprec/2012-02-15`) for received Svarrapport messages.

Status (kodeverk 8222):
    1 OK                      the message was accepted as it is
    3 OK, feil i delmelding   accepted, with deviations that were tolerated (one Error per warning)
    2 Avvist                  refused (one Error per fault)

Error codes (kodeverk 8221) used by the mapper, each with the fault's location and text in `OT`:
    T01  not well-formed XML / unreadable
    T02  the XML does not validate (schema faults that are not tolerated; tolerated schema deviations are
         reported with this code in status-3 receipts)
    T10  message format not supported (unknown namespace or version, no Svarrapport in the MsgHead,
         report on an animal or material)
    T99  other format deviation that was tolerated (digit grouping in ids, D-number typed as FNR ...)
    E10  message id (MsgId) missing
    E20  a health professional is not identified (requester or responsible physician) - warning only
    E30  the patient's national identity number is missing
    E31  the patient's national identity number is wrong (check digits, birth date, type mismatch)
    E36  patient information is insufficient (no Patient, missing or non-national identifier type)
    X99  other errors: unknown codes or code systems, units that are not UCUM, results without an analysis,
         broken result links, dates in the future, no results, unidentified service provider
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from functools import cache
from importlib import metadata

from lxml import etree

from kjerne.services.provesvar import codes
from kjerne.services.provesvar.faults import Fault
from kjerne.services.provesvar.svarrapport_map import MappingResult
from kjerne.services.provesvar.svarrapport_schema import NS_APPREC
from kjerne.services.provesvar.tolerances import ValueProblem, read_ts

MIG_VERSION = "v1.1 2012-02-15"
SOFTWARE_NAME = "Kjerne"
KJERNE_PARTY = {"name": "Kjerne - pasientens prøvesvar"}

_A = f"{{{NS_APPREC}}}"
_XSD_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})?$")
_SCRAPE = {
    "gen_date": re.compile(rb"<(?:[\w.-]+:)?GenDate(?:\s+V=\"([^\"]*)\"[^>]*/>|>\s*([^<]*)</)"),
    "type": re.compile(rb"<(?:[\w.-]+:)?Type\s+V=\"([^\"]*)\""),
}


@cache  # reading the installed package's metadata costs more than building the receipt
def _version() -> str:
    try:
        return metadata.version("kjerne")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0"


def _sub(parent: etree._Element, name: str, text: str | None = None, **attrs: str) -> etree._Element:
    el = etree.SubElement(parent, _A + name, {k: v for k, v in attrs.items() if v})
    if text is not None:
        el.text = text
    return el


def _hcp(parent: etree._Element, party: dict[str, str]) -> None:
    hcp = _sub(parent, "HCP")
    inst = _sub(hcp, "Inst")
    _sub(inst, "Name", party.get("name") or "Ukjent")
    if party.get("herid"):
        _sub(inst, "Id", party["herid"])
        _sub(inst, "TypeId", V="HER", DN="HER-id")
    elif party.get("orgnr"):
        _sub(inst, "Id", party["orgnr"])
        _sub(inst, "TypeId", V="ENH", DN="Organisasjonsnummeret i Enhetsregister")


def _datetime(value: str | None, fallback: dt.datetime) -> str:
    """An xs:dateTime for the receipt: the original value when it is one, else the same moment re-written."""
    if value and _XSD_DATETIME.match(value.strip()):
        return value.strip()
    try:
        m = read_ts(value)
    except ValueProblem:
        m = None
    moment = m.at if m is not None else fallback
    return moment.isoformat(timespec="seconds")


def _error(parent: etree._Element, fault: Fault) -> None:
    code = fault.code if fault.code in codes.APPREC_ERROR_8221 else "X99"
    _sub(
        parent,
        "Error",
        V=code,
        S=f"{codes.KODEVERK_OID_PREFIX}8221",
        DN=codes.APPREC_ERROR_8221[code],
        OT=str(fault)[:1000],
    )


def apprec(
    result: MappingResult,
    original_xml: bytes,
    *,
    receiver: dict[str, str] | None = None,
    receipt_id: str | None = None,
    now: dt.datetime | None = None,
) -> bytes:
    """The AppRec receipt answering `original_xml`, given what `map_svarrapport` made of it.

    `receiver` names Kjerne as the party that received the message (defaults to the MsgHead's receiver,
    else a name only); `receipt_id` and `now` make the receipt reproducible in tests."""
    now = now or dt.datetime.now(dt.UTC)
    if receiver is None:
        receiver = (result.envelope.receiver if result.envelope and result.envelope.receiver else None) or KJERNE_PARTY
    root = etree.Element(_A + "AppRec", nsmap={None: NS_APPREC})
    _sub(root, "MsgType", V="APPREC", DN="Applikasjonskvittering")
    _sub(root, "MIGversion", MIG_VERSION)
    _sub(root, "SoftwareName", SOFTWARE_NAME)
    _sub(root, "SoftwareVersion", _version())
    _sub(root, "GenDate", now.isoformat(timespec="seconds"))
    _sub(root, "Id", receipt_id or str(uuid.uuid4()))
    _hcp(_sub(root, "Sender"), receiver)
    _hcp(_sub(root, "Receiver"), result.sender or {"name": "Ukjent avsender"})
    if not result.ok:
        status = "2"
        faults = result.error_faults or [Fault("X99", "Message", "; ".join(result.errors) or "refused")]
    elif result.warning_faults:
        status, faults = "3", result.warning_faults
    else:
        status, faults = "1", []
    _sub(root, "Status", V=status, DN=codes.APPREC_STATUS_8222[status])
    for fault in faults:
        _error(root, fault)
    original = _sub(root, "OriginalMsgId")
    msg_type = (result.envelope.msg_type if result.envelope else None) or result.message_type
    gen_date = (result.envelope.gen_date if result.envelope else None) or result.gen_date
    if not msg_type or not gen_date:
        head = (original_xml or b"")[:8192]
        if not gen_date and (m := _SCRAPE["gen_date"].search(head)):
            gen_date = (m.group(1) or m.group(2) or b"").decode("utf-8", "replace").strip() or None
        if not msg_type and (m := _SCRAPE["type"].search(head)):
            msg_type = m.group(1).decode("utf-8", "replace").strip() or None
    _sub(original, "MsgType", V=msg_type or "SVAR_LAB", DN="Svarrapport")
    _sub(original, "IssueDate", _datetime(gen_date, now))
    _sub(original, "Id", result.msg_id or "ukjent")
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
