"""Reading the message: versions by namespace, MsgHead envelopes, schema loading, unreadable input."""

from __future__ import annotations

import time

import pytest
from lxml import etree
from provesvar_helpers import BIOKJEMI_13, BIOKJEMI_14, MSGHEAD, RECEIVED, SVAR, V13, V14, wrap_in_msghead

from kjerne.services.provesvar import svarrapport_schema as schema
from kjerne.services.provesvar.svarrapport_map import map_svarrapport


def test_version_is_taken_from_the_namespace() -> None:
    r13 = map_svarrapport(BIOKJEMI_13.read_bytes(), received_at=RECEIVED)
    r14 = map_svarrapport(BIOKJEMI_14.read_bytes(), received_at=RECEIVED)
    assert (r13.version, r14.version) == ("1.3", "1.4")
    assert schema.version_of(etree.fromstring(BIOKJEMI_13.read_bytes())) == "1.3"
    assert etree.QName(etree.fromstring(BIOKJEMI_14.read_bytes())).namespace == V14 == schema.NS_V14
    assert schema.NS_V13 == V13


def test_unsupported_namespace_is_refused() -> None:
    xml = BIOKJEMI_14.read_bytes().replace(V14.encode(), b"http://www.kith.no/xmlstds/labsvar/2005-05-12")
    result = map_svarrapport(xml, received_at=RECEIVED)
    assert not result.ok
    assert result.error_faults[0].code == "T10"
    assert "not supported" in result.errors[0]


def test_other_documents_are_refused() -> None:
    result = map_svarrapport(b"<Foo xmlns='urn:x'/>", received_at=RECEIVED)
    assert result.error_faults[0].code == "T10"


@pytest.mark.parametrize("data", [b"", b"   ", b"<Message>", b"not xml at all"])
def test_unreadable_input(data: bytes) -> None:
    result = map_svarrapport(data, received_at=RECEIVED)
    assert not result.ok
    assert result.error_faults[0].code == "T01"


def test_entities_are_not_expanded() -> None:
    xml = b"""<?xml version="1.0"?>
<!DOCTYPE m [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<Message xmlns="http://www.kith.no/xmlstds/labsvar/2012-02-15"><MsgId>&x;</MsgId></Message>"""
    result = map_svarrapport(xml, received_at=RECEIVED)
    assert not result.ok
    assert "root:" not in " ".join(result.errors)


def test_msghead_wrapped_message_maps_like_the_bare_one() -> None:
    bare = BIOKJEMI_14.read_bytes()
    wrapped = wrap_in_msghead(bare)
    r_bare = map_svarrapport(bare, received_at=RECEIVED)
    r_wrapped = map_svarrapport(wrapped, received_at=RECEIVED)
    assert r_wrapped.ok, r_wrapped.errors
    assert r_wrapped.bundle == r_bare.bundle
    assert r_wrapped.msg_id == "envelope-1"  # the id an AppRec answers
    assert r_bare.msg_id == "01c59bd0-c6a5-11e6-9598-0800200c9a66"
    assert r_wrapped.sender == {"name": "St. Olavs Hospital HF", "herid": "59"}
    assert r_wrapped.envelope is not None and r_wrapped.envelope.receiver["herid"] == "112374"


def test_msghead_is_validated_with_its_payload() -> None:
    wrapped = wrap_in_msghead(BIOKJEMI_13.read_bytes())
    assert schema.validate(schema.parse(wrapped)) == []
    broken = wrapped.replace(b"<MIGversion>v1.2 2006-05-24</MIGversion>", b"")
    result = map_svarrapport(broken, received_at=RECEIVED)
    assert not result.ok
    assert any(f.where.startswith("MsgHead/MsgInfo") for f in result.error_faults), result.errors


def test_msghead_without_svarrapport_is_refused() -> None:
    wrapped = wrap_in_msghead(BIOKJEMI_14.read_bytes())
    root = etree.fromstring(wrapped)
    content = root.find(f".//{{{MSGHEAD}}}Content")
    for child in list(content):
        content.remove(child)
    result = map_svarrapport(etree.tostring(root), received_at=RECEIVED)
    assert result.error_faults[0].code == "T10"
    assert "no Svarrapport" in result.errors[0]


def test_schemas_are_local_copies() -> None:
    for name in ("svar-v13.xsd", "svar-v1.4.xsd", "AppRec-v1.1.xsd", "MsgHead-v1_2.xsd", "kith.xsd"):
        original = (SVAR / "schemas" / name).read_bytes()
        copy = (schema.SCHEMA_DIR / name).read_bytes()
        assert copy == original.replace(
            b'schemaLocation="http://www.kith.no/xmlstds/kith.xsd"', b'schemaLocation="kith.xsd"'
        ), name
        assert b'http://www.kith.no/xmlstds/kith.xsd"' not in copy


def test_schemas_compile_once() -> None:
    schema.validator()
    start = time.perf_counter()
    for _ in range(100):
        schema.validator()
        schema.root_decl(schema.NS_V14, "Message")
    assert time.perf_counter() - start < 0.01


def test_content_model() -> None:
    message = schema.root_decl(schema.NS_V13, "Message")
    report = message.children["ServReport"][0]
    assert ("IssueDate",) in report.required
    assert report.children["IssueDate"][0].simple_type == "TS"
    patient = report.children["Patient"][0]
    assert ("OffId",) in patient.required
    hcp = report.children["ServProvider"][0].children["HCP"][0]
    assert ("Inst", "HCProf") in hcp.required
    assert message.children["ServReport"][2] is None  # unbounded in v1.3
    assert schema.root_decl(schema.NS_V14, "Message").children["ServReport"][2] == 1
