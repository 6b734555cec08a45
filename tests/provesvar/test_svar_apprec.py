"""AppRec v1.1 receipts."""

from __future__ import annotations

import datetime as dt

from lxml import etree
from provesvar_helpers import ACCEPTANCE, BIOKJEMI_14, RECEIVED, edit, first, wrap_in_msghead

from kjerne.services.provesvar.apprec import apprec
from kjerne.services.provesvar.svarrapport_map import map_svarrapport
from kjerne.services.provesvar.svarrapport_schema import apprec_validator

NS = {"a": "http://www.kith.no/xmlstds/apprec/2012-02-15"}
NOW = dt.datetime(2025, 1, 1, 13, 0, tzinfo=dt.UTC)


def _receipt(xml: bytes) -> etree._Element:
    result = map_svarrapport(xml, received_at=RECEIVED)
    receipt = etree.fromstring(apprec(result, xml, receipt_id="r-1", now=NOW))
    assert apprec_validator().validate(receipt), apprec_validator().error_log
    return receipt


def _x(receipt: etree._Element, xpath: str) -> list:
    return receipt.xpath(xpath, namespaces=NS)


def test_ok_receipt() -> None:
    receipt = _receipt(BIOKJEMI_14.read_bytes())
    assert _x(receipt, "string(a:Status/@V)") == "1"
    assert _x(receipt, "a:Error") == []
    assert _x(receipt, "string(a:Id)") == "r-1"
    assert _x(receipt, "string(a:MsgType/@V)") == "APPREC"
    assert _x(receipt, "string(a:MIGversion)") == "v1.1 2012-02-15"
    assert _x(receipt, "string(a:OriginalMsgId/a:Id)") == "01c59bd0-c6a5-11e6-9598-0800200c9a66"
    assert _x(receipt, "string(a:OriginalMsgId/a:MsgType/@V)") == "SVAR_LAB"
    assert _x(receipt, "string(a:OriginalMsgId/a:IssueDate)") == "2017-09-20T09:05:11"
    # the receipt goes back to the laboratory that sent the report
    assert _x(receipt, "string(a:Receiver/a:HCP/a:Inst/a:Id)") == "91126"
    assert _x(receipt, "string(a:Receiver/a:HCP/a:Inst/a:TypeId/@V)") == "HER"


def test_warning_receipt() -> None:
    xml = edit(BIOKJEMI_14, lambda root, ns: first(root, ns, "s:ServReport/s:IssueDate").set("V", ""))
    receipt = _receipt(xml)
    assert _x(receipt, "string(a:Status/@V)") == "3"
    assert _x(receipt, "string(a:Status/@DN)") == "OK, feil i delmelding"
    errors = _x(receipt, "a:Error")
    assert errors and all(e.get("S") == "2.16.578.1.12.4.1.1.8221" for e in errors)
    assert any("T03-MISSING-ISSUEDATE" in e.get("OT") for e in errors)


def test_rejection_receipt_has_one_error_per_fault() -> None:
    xml = (ACCEPTANCE / "Testcase-MBKsvar-20090824/Case2-20a.xml").read_bytes()
    result = map_svarrapport(xml, received_at=RECEIVED)
    receipt = _receipt(xml)
    assert _x(receipt, "string(a:Status/@V)") == "2"
    errors = _x(receipt, "a:Error")
    assert [e.get("V") for e in errors] == [f.code for f in result.error_faults]
    assert errors[0].get("V") == "E30"
    assert errors[0].get("DN") == "Pasientens fødselsnummer mangler"
    assert errors[0].get("OT") == "Patient/OffId: national identity number missing"


def test_receipt_for_unreadable_message() -> None:
    xml = (ACCEPTANCE / "Testcase-MBKsvar-20090824/Case2-6.xml").read_bytes()
    receipt = _receipt(xml)
    assert _x(receipt, "string(a:Status/@V)") == "2"
    assert _x(receipt, "string(a:Error/@V)") == "T01"
    # the original message id and date are still found
    assert _x(receipt, "string(a:OriginalMsgId/a:Id)") == "38781300-28f7-11de-8c30-0800200c9a66"
    assert _x(receipt, "string(a:OriginalMsgId/a:IssueDate)") == "2009-03-21T16:12:10"


def test_receipt_for_garbage() -> None:
    receipt = _receipt(b"\x00\x01garbage")
    assert _x(receipt, "string(a:Status/@V)") == "2"
    assert _x(receipt, "string(a:OriginalMsgId/a:Id)") == "ukjent"


def test_receipt_for_msghead_answers_the_envelope() -> None:
    xml = wrap_in_msghead(BIOKJEMI_14.read_bytes(), msg_id="env-42")
    receipt = _receipt(xml)
    assert _x(receipt, "string(a:OriginalMsgId/a:Id)") == "env-42"
    assert _x(receipt, "string(a:OriginalMsgId/a:MsgType/@V)") == "SVAR_LAB"
    # sender of the receipt is the envelope's receiver, receiver is the envelope's sender
    assert _x(receipt, "string(a:Sender/a:HCP/a:Inst/a:Id)") == "112374"
    assert _x(receipt, "string(a:Receiver/a:HCP/a:Inst/a:Id)") == "59"
