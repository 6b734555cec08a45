"""The original-mode acknowledgement (ACK) that answers an HL7 v2 message."""

from __future__ import annotations

import datetime as dt
import hashlib
import re

from kjerne.services.provesvar.faults import Fault
from kjerne.services.provesvar.hl7v2_parse import Message, NotHL7v2, Syntax, read_message
from kjerne.services.provesvar.mapping import MappingResult
from kjerne.services.provesvar.tolerances import OSLO

# HL7 table 0357 (message error condition codes), used as Fault.code and in ERR-3.
ERROR_CODES = {
    "0": "Message accepted",
    "100": "Segment sequence error",
    "101": "Required field missing",
    "102": "Data type error",
    "103": "Table value not found",
    "200": "Unsupported message type",
    "201": "Unsupported event code",
    "202": "Unsupported processing id",
    "203": "Unsupported version id",
    "204": "Unknown key identifier",
    "205": "Duplicate key identifier",
    "206": "Application record locked",
    "207": "Application internal error",
}
# Faults that reject the message as a whole (MSA-1 AR): it was not a message Kjerne takes, or Kjerne failed.
REJECT_CODES = frozenset({"200", "201", "202", "203", "207"})
_WHERE = re.compile(r"^([A-Z][A-Z0-9]{2})(?:\[(\d+)\])?(?:-(\d+))?(?:\.(\d+))?$")


def ack(
    message: bytes | str,
    result: MappingResult,
    *,
    now: dt.datetime | None = None,
    control_id: str | None = None,
) -> str:
    """The original-mode ACK for `message`: MSA AA when `result` is ok, AR when the message type, event or
    version is not taken (or Kjerne failed), AE for faults in the content, with one ERR per fault (and per
    warning from v2.5). MSH swaps sender and receiver and keeps the processing id and version; MSA-2 is the
    message's control id. Segments end with CR."""
    now = now or dt.datetime.now(dt.UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=dt.UTC)
    try:
        msg: Message | None = read_message(message)[0]
    except NotHL7v2:
        msg = None
    syntax = msg.syntax if msg else Syntax()
    msh = msg.msh if msg else None
    fs, cs = syntax.field, syntax.component
    if result.ok:
        code = "AA"
    elif any(f.code in REJECT_CODES for f in result.error_faults):
        code = "AR"
    else:
        code = "AE"
    version = (msh.v(12) if msh else "") or "2.5"
    original_id = msh.raw(10) if msh else ""
    stamp = now.astimezone(OSLO).strftime("%Y%m%d%H%M%S%z")
    control = control_id or hashlib.sha1(f"{original_id}|{code}|{stamp}".encode()).hexdigest()[:20].upper()
    event = msh.v(9, 2) if msh else ""
    if _version_at_least(version, (2, 3, 1)):
        message_type = cs.join(["ACK", event, "ACK"]) if event else f"ACK{cs}{cs}ACK"
    else:
        message_type = f"ACK{cs}{event}" if event else "ACK"
    header = [
        "MSH",
        syntax.encoding_characters,
        msh.raw(5) if msh else "",
        msh.raw(6) if msh else "",
        msh.raw(3) if msh else "",
        msh.raw(4) if msh else "",
        stamp,
        "",
        message_type,
        syntax.escape_text(control),
        msh.raw(11) if msh and msh.raw(11) else "P",
        msh.raw(12) if msh and msh.raw(12) else version,
    ]
    if msh and msh.raw(18):
        header += ["", "", "", "", "", msh.raw(18)]
    segments = [fs.join(header)]
    msa = ["MSA", code, original_id]
    modern = _version_at_least(version, (2, 5))
    if code != "AA" and not modern and result.error_faults:
        msa.append(syntax.escape_text(result.error_faults[0].text)[:80])
    segments.append(fs.join(msa))
    if modern:
        for fault, severity in [(f, "E") for f in result.error_faults] + [(f, "W") for f in result.warning_faults]:
            segments.append(_err_segment(fault, severity, syntax))
    elif result.error_faults:
        locations = [_err_location_v24(f, syntax) for f in result.error_faults]
        segments.append(fs.join(["ERR", syntax.repetition.join(locations)]))
    return "\r".join(segments) + "\r"


def _version_at_least(version: str, wanted: tuple[int, ...]) -> bool:
    parts = tuple(int(p) for p in re.findall(r"\d+", version)[:3])
    return parts >= wanted


def _location(fault: Fault) -> tuple[str, str, str, str]:
    m = _WHERE.match(fault.where)
    if not m:
        return "", "", "", ""
    return m.group(1), m.group(2) or "", m.group(3) or "", m.group(4) or ""


def _err_segment(fault: Fault, severity: str, syntax: Syntax) -> str:
    cs = syntax.component
    seg, seq, fld, comp = _location(fault)
    location = cs.join([seg, seq, fld, "", comp]).rstrip(cs) if seg else ""
    condition = cs.join([fault.code, ERROR_CODES.get(fault.code, ""), "HL70357"])
    fields = ["ERR", "", location, condition, severity, "", "", "", syntax.escape_text(fault.text)]
    return syntax.field.join(fields)


def _err_location_v24(fault: Fault, syntax: Syntax) -> str:
    cs, ss = syntax.component, syntax.subcomponent
    seg, seq, fld, _ = _location(fault)
    condition = ss.join([fault.code, ERROR_CODES.get(fault.code, ""), "HL70357"])
    return cs.join([seg, seq, fld, condition])
