"""The directorate's receiver acceptance tests for Svarrapport v1.3 (see acceptance_cases.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from acceptance_cases import CASES, AcceptanceCase
from lxml import etree
from provesvar_helpers import ACCEPTANCE, RECEIVED, references, resources, the_report

from kjerne.services.provesvar.apprec import apprec
from kjerne.services.provesvar.svarrapport_map import map_svarrapport
from kjerne.services.provesvar.svarrapport_schema import apprec_validator


def test_every_acceptance_message_has_a_case() -> None:
    files = {p.relative_to(ACCEPTANCE).as_posix() for p in ACCEPTANCE.glob("*/*.xml")}
    assert len(files) == 113
    assert {c.file for c in CASES} == files
    assert len({c.case_id for c in CASES}) == len(CASES)


def _observation_matches(obs: dict[str, Any], code: str | None, value: float | str) -> bool:
    if code is not None:
        codes = {c.get("code") for c in obs["code"].get("coding", [])} | {obs["code"].get("text")}
        if code not in codes:
            return False
    if isinstance(value, float):
        q = obs.get("valueQuantity")
        return q is not None and float(q["value"]) == value
    if value.startswith("code:"):
        coded = obs.get("valueCodeableConcept", {}).get("coding", [])
        return any(c["code"] == value[5:] for c in coded)
    cc = obs.get("valueCodeableConcept", {})
    return value in " ".join((cc.get("text") or "").split())


def _check_accepted(case: AcceptanceCase, result: Any) -> None:
    assert result.ok, result.errors
    assert result.errors == []
    bundle = result.bundle
    report = the_report(bundle)
    assert report["subject"] == {
        "type": "Patient",
        "identifier": {"system": "urn:oid:2.16.578.1.12.4.1.4.1", "value": case.patient},
    }
    assert report["status"] == case.status
    assert report["code"]["coding"][0]["code"] == case.report_code
    observations = resources(bundle, "Observation")
    for code, value, unit in case.results:
        matches = [o for o in observations if _observation_matches(o, code, value)]
        assert matches, f"{case.case_id}: no Observation for {code} = {value!r}"
        if isinstance(value, float):
            q = matches[0]["valueQuantity"]
            assert q.get("code") == unit
            if unit is not None:
                assert q["system"] == "http://unitsofmeasure.org"
    text = json.dumps(bundle, ensure_ascii=False)
    for comment in case.comments:
        assert json.dumps(comment, ensure_ascii=False)[1:-1].strip() in text or " ".join(comment.split()) in text, (
            comment
        )
    urls = {e["fullUrl"] for e in bundle["entry"]}
    assert set(references(bundle)) <= urls
    if case.status == "cancelled":
        assert all(o["status"] == "cancelled" for o in observations)


@pytest.mark.parametrize("case", CASES, ids=[c.case_id for c in CASES])
def test_acceptance_case(case: AcceptanceCase) -> None:
    xml = (ACCEPTANCE / case.file).read_bytes()
    result = map_svarrapport(xml, received_at=RECEIVED)
    if case.expect == "reject":
        assert not result.ok, f"{case.case_id} should be refused"
        assert result.bundle is None
        matching = [f for f in result.error_faults if f.code == case.fault and case.where in f.where]
        assert matching, f"{case.case_id}: expected {case.fault} at {case.where}, got {result.errors}"
        status = "2"
    else:
        _check_accepted(case, result)
        if case.expect == "accept-with-warning":
            matching = [
                f
                for f in result.warning_faults
                if case.fault in (f.code, f.tolerance) and (case.where is None or f.where.startswith(case.where))
            ]
            assert matching, f"{case.case_id}: expected warning {case.fault} at {case.where}, got {result.warnings}"
        status = "3" if result.warnings else "1"
    receipt = etree.fromstring(apprec(result, xml))
    assert apprec_validator().validate(receipt), apprec_validator().error_log
    ns = {"a": "http://www.kith.no/xmlstds/apprec/2012-02-15"}
    assert receipt.xpath("string(a:Status/@V)", namespaces=ns) == status
    if case.expect != "accept":
        codes = receipt.xpath("a:Error/@V", namespaces=ns)
        assert (case.fault in codes) or any(case.fault in e for e in receipt.xpath("a:Error/@OT", namespaces=ns))


def test_unknown_patient_cases_fail_only_on_the_number() -> None:
    """The 'unknown patient' cases use 15075500565, which fails the mod-11 check: that is the only fault."""
    for case in CASES:
        if case.fault == "E31":
            result = map_svarrapport((ACCEPTANCE / case.file).read_bytes(), received_at=RECEIVED)
            assert [f.code for f in result.error_faults] == ["E31"]
            assert "check digits wrong in 15075500565" in result.errors[0]


def test_forced_line_breaks_are_kept() -> None:
    """Microbiology criterion 32: forced line breaks (&#13;&#10;) survive as line breaks."""
    result = map_svarrapport((ACCEPTANCE / "Testcase-mikrobiologisvar-20120203/case4.xml").read_bytes())
    texts = [
        o.get("valueCodeableConcept", {}).get("text", "") + " ".join(n["text"] for n in o.get("note", []))
        for o in resources(result.bundle, "Observation")
    ]
    assert any("\n" in t for t in texts)


def test_pathology_diagnosis_codes_are_shown() -> None:
    """Pathology criterion 23: NORPAT codes of the diagnosis are mapped as codings of the value."""
    result = map_svarrapport((ACCEPTANCE / "Testcase-patologisvar-2011-12-05/Case-3.xml").read_bytes())
    coded = [
        c
        for o in resources(result.bundle, "Observation")
        for c in o.get("valueCodeableConcept", {}).get("coding", [])
        if c["system"] == "urn:oid:2.16.578.1.12.4.1.1.7010"
    ]
    assert {c["code"] for c in coded} >= {"T02424", "M80701"}
    assert all(c.get("display") for c in coded)
