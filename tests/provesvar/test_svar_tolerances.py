"""Accepted deviations (each TOLERANCES id) and the faults that refuse a message."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pytest
from lxml import etree
from provesvar_helpers import (
    BIOKJEMI_14,
    DYRKNING_14,
    HISTOLOGI_14_A,
    RECEIVED,
    edit,
    first,
    resources,
    the_report,
)

from kjerne.services.provesvar.svarrapport_map import MappingResult, map_svarrapport
from kjerne.services.provesvar.tolerances import TOLERANCES, read_decimal, read_ts

DOCS = Path(__file__).resolve().parents[2] / "docs" / "svarrapport-tolerances.md"
R1 = "s:ServReport/s:Patient/s:ResultItem[1]"


def _map(path: Path, change: Callable[[etree._Element, dict[str, str]], None]) -> MappingResult:
    return map_svarrapport(edit(path, change), received_at=RECEIVED)


def _set(xpath: str, attr: str | None, value: str) -> Callable[[etree._Element, dict[str, str]], None]:
    def change(root: etree._Element, ns: dict[str, str]) -> None:
        el = first(root, ns, xpath)
        if attr is None:
            el.text = value
        else:
            el.set(attr, value)

    return change


def _tolerated(result: MappingResult, tolerance: str) -> list:
    assert result.ok, result.errors
    hits = [f for f in result.warning_faults if f.tolerance == tolerance]
    assert hits, result.warnings
    return hits


def _nin(date6: str, first_individual: int) -> str:
    """An 11-digit number with valid mod-11 check digits: date part + individual number + check digits."""
    w1, w2 = (3, 7, 6, 1, 8, 9, 4, 5, 2), (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)
    for individual in range(first_individual, first_individual + 100):
        base = f"{date6}{individual:03d}"
        k1 = (11 - sum(int(d) * w for d, w in zip(base, w1, strict=True)) % 11) % 11
        if k1 == 10:
            continue
        k2 = (11 - sum(int(d) * w for d, w in zip(base + str(k1), w2, strict=True)) % 11) % 11
        if k2 != 10:
            return f"{base}{k1}{k2}"
    raise AssertionError(date6)


# -- accepted with a warning --------------------------------------------------------------------------


def test_t01_element_order() -> None:
    def swap(root, ns) -> None:
        status = first(root, ns, "s:ServReport/s:Status")
        descr = first(root, ns, "s:ServReport/s:MsgDescr")
        descr.addnext(status)  # Status after MsgDescr instead of before

    hits = _tolerated(_map(BIOKJEMI_14, swap), "T01-ELEMENT-ORDER")
    assert hits[0].code == "T02"


def test_t02_empty_date() -> None:
    result = _map(BIOKJEMI_14, _set("s:ServReport/s:IssueDate", "V", ""))
    assert _tolerated(result, "T02-EMPTY-DATE")[0].where == "IssueDate"
    _tolerated(result, "T03-MISSING-ISSUEDATE")
    report = the_report(result.bundle)
    assert not any(x["url"].endswith("nilar-report-date") for x in report.get("extension", []))


def test_t03_missing_issue_date() -> None:
    def drop(root, ns) -> None:
        el = first(root, ns, "s:ServReport/s:IssueDate")
        el.getparent().remove(el)

    result = _map(BIOKJEMI_14, drop)
    _tolerated(result, "T03-MISSING-ISSUEDATE")
    assert the_report(result.bundle)["issued"] == "2017-09-20T09:05:11+02:00"


def test_t04_relservprov_without_hcp() -> None:
    def drop(root, ns) -> None:
        hcp = first(root, ns, "s:ServReport/s:Patient/s:ResultItem[1]/s:RelServProv/s:HCP")
        hcp.getparent().remove(hcp)

    _tolerated(_map(HISTOLOGI_14_A, drop), "T04-RELSERVPROV-WITHOUT-HCP")


def test_t05_decimal_comma() -> None:
    result = _map(BIOKJEMI_14, _set(f"{R1}/s:NumResult/s:NumResultValue", "V", "11,5"))
    _tolerated(result, "T05-DECIMAL-COMMA")
    assert resources(result.bundle, "Observation")[0]["valueQuantity"]["value"] == 11.5


def test_t06_digit_grouping() -> None:
    xpath = "s:ServReport/s:Patient/s:ResponsibleHcp/s:HCP/s:Inst/s:HCPerson/s:Id"
    result = _map(BIOKJEMI_14, _set(xpath, None, "9 144 889"))
    _tolerated(result, "T06-ID-GROUPING")
    roles = resources(result.bundle, "PractitionerRole")
    assert any(r.get("practitioner", {}).get("identifier", {}).get("value") == "9144889" for r in roles)


def test_t07_dnumber_typed_as_fnr() -> None:
    dnr = _nin("531169", 2)
    result = _map(BIOKJEMI_14, _set("s:ServReport/s:Patient/s:OffId", None, dnr))
    _tolerated(result, "T07-DNR-TYPED-AS-FNR")
    assert the_report(result.bundle)["subject"]["identifier"] == {
        "system": "urn:oid:2.16.578.1.12.4.1.4.2",
        "value": dnr,
    }


def test_t08_migversion() -> None:
    result = _map(BIOKJEMI_14, _set("s:MIGversion", None, "v1.3 2008-12-01"))
    _tolerated(result, "T08-MIGVERSION")
    assert result.version == "1.4"


def test_t09_code_whitespace() -> None:
    xpath = "s:ServReport/s:Patient/s:ResultItem[2]/s:ResultItem[2]/s:TextResult/s:TextCode[2]"
    result = _map(HISTOLOGI_14_A, _set(xpath, "V", "M 38000"))
    _tolerated(result, "T09-CODE-WHITESPACE")
    codes = {
        c["code"]
        for o in resources(result.bundle, "Observation")
        for c in o.get("valueCodeableConcept", {}).get("coding", [])
    }
    assert "M38000" in codes and "M 38000" not in codes


def test_t10_no_sampling_time() -> None:
    def drop(root, ns) -> None:
        for el in root.xpath("//s:CollectedDate | //s:InvDate", namespaces=ns):
            el.getparent().remove(el)

    result = _map(BIOKJEMI_14, drop)
    hits = _tolerated(result, "T10-NO-SAMPLING-TIME")
    assert "ServReport/IssueDate" in hits[0].text
    assert resources(result.bundle, "Observation")[0]["effectiveDateTime"] == "2017-09-20T09:04:10+02:00"


def test_t11_datetime_variant() -> None:
    xpath = "s:ServReport/s:Patient/s:AnalysedSubject[1]/s:CollectedSample/s:CollectedDate"
    result = _map(BIOKJEMI_14, _set(xpath, "V", "2017-09-20 07:57"))
    _tolerated(result, "T11-DATETIME-VARIANT")
    assert resources(result.bundle, "Specimen")[0]["collection"]["collectedDateTime"] == "2017-09-20T07:57:00+02:00"


def test_t12_boolean_variant() -> None:
    result = _map(BIOKJEMI_14, _set(f"{R1}/s:Accredited", "V", "True"))
    _tolerated(result, "T12-BOOLEAN-VARIANT")
    accredited = [x for x in resources(result.bundle, "Observation")[0]["extension"] if x["url"].endswith("accredited")]
    assert accredited[0]["valueBoolean"] is True


def test_t13_national_id_separator() -> None:
    result = _map(BIOKJEMI_14, _set("s:ServReport/s:Patient/s:OffId", None, "131169 00216"))
    _tolerated(result, "T13-NIN-SEPARATOR")
    assert the_report(result.bundle)["subject"]["identifier"]["value"] == "13116900216"


def test_every_tolerance_is_documented_and_tested() -> None:
    doc = DOCS.read_text(encoding="utf-8")
    tested = {name.split("_")[1] for name in globals() if name.startswith("test_t") and name[6:8].isdigit()}
    for tolerance_id in TOLERANCES:
        assert f"`{tolerance_id}`" in doc, tolerance_id
        assert tolerance_id.split("-")[0].lower() in tested, tolerance_id


# -- refused ----------------------------------------------------------------------------------------


def _refused(result: MappingResult, code: str, where: str | None = None, text: str | None = None) -> None:
    assert not result.ok
    assert result.bundle is None
    hits = [
        f
        for f in result.error_faults
        if f.code == code and (where is None or f.where == where) and (text is None or text in f.text)
    ]
    assert hits, result.errors


def test_wrong_check_digits() -> None:
    result = _map(BIOKJEMI_14, _set("s:ServReport/s:Patient/s:OffId", None, "13116900217"))
    _refused(result, "E31", "Patient/OffId")
    assert result.errors == ["Patient/OffId: check digits wrong in 13116900217"]


def test_dnr_type_with_a_birth_number() -> None:
    result = _map(BIOKJEMI_14, _set("s:ServReport/s:Patient/s:TypeOffId", "V", "DNR"))
    _refused(result, "E31", "Patient/OffId", "not a D-number")


@pytest.mark.parametrize(
    ("kind", "text"), [("HNR", "not a national identity number"), ("ABC", "unknown identifier type")]
)
def test_identifier_types(kind: str, text: str) -> None:
    result = _map(BIOKJEMI_14, _set("s:ServReport/s:Patient/s:TypeOffId", "V", kind))
    _refused(result, "E36", "Patient/TypeOffId", text)


def test_felles_hjelpenummer_is_accepted() -> None:
    fhn = _nin("801234", 567)

    def change(root, ns) -> None:
        first(root, ns, "s:ServReport/s:Patient/s:OffId").text = fhn
        first(root, ns, "s:ServReport/s:Patient/s:TypeOffId").set("V", "FHN")

    result = _map(BIOKJEMI_14, change)
    assert result.ok, result.errors
    assert the_report(result.bundle)["subject"]["identifier"] == {
        "system": "urn:oid:2.16.578.1.12.4.1.4.3",
        "value": fhn,
    }


def test_unknown_code_system() -> None:
    result = _map(BIOKJEMI_14, _set(f"{R1}/s:Investigation/s:Id", "S", "2.16.578.1.12.4.1.1.9999"))
    _refused(result, "X99", "Patient/ResultItem[1]/Investigation/Id", "unknown code system 2.16.578.1.12.4.1.1.9999")


def test_code_without_code_system() -> None:
    def change(root, ns) -> None:
        del first(root, ns, f"{R1}/s:Investigation/s:Id").attrib["S"]

    _refused(_map(BIOKJEMI_14, change), "X99", "Patient/ResultItem[1]/Investigation/Id", "has no code system")


def test_unknown_deviation_flag() -> None:
    result = _map(BIOKJEMI_14, _set("s:ServReport/s:Patient/s:ResultItem[3]/s:DevResultInd", "V", "9"))
    _refused(result, "X99", "Patient/ResultItem[3]/DevResultInd", "8244")


def test_unknown_element() -> None:
    def change(root, ns) -> None:
        first(root, ns, "s:ServReport/s:Status").addnext(etree.Element(f"{{{ns['s']}}}Surprise"))

    _refused(_map(BIOKJEMI_14, change), "T02", "Surprise", "not allowed here")


def test_invalid_date() -> None:
    _refused(_map(BIOKJEMI_14, _set("s:ServReport/s:IssueDate", "V", "2017-13-45")), "T02", "IssueDate")


@pytest.mark.parametrize(
    "xpath",
    ["s:GenDate", "s:ServReport/s:Patient/s:AnalysedSubject[1]/s:CollectedSample/s:CollectedDate"],
)
def test_dates_in_the_future(xpath: str) -> None:
    future = (RECEIVED + dt.timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%S")
    _refused(_map(BIOKJEMI_14, _set(xpath, "V", future)), "X99", text="in the future")


def test_small_clock_skew_is_not_the_future() -> None:
    soon = (RECEIVED + dt.timedelta(minutes=2)).astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert _map(BIOKJEMI_14, _set("s:GenDate", "V", soon)).ok


def test_report_without_results() -> None:
    def change(root, ns) -> None:
        for item in root.xpath("s:ServReport/s:Patient/s:ResultItem", namespaces=ns):
            item.getparent().remove(item)

    _refused(_map(BIOKJEMI_14, change), "X99", "Patient", "no results")


def test_invalid_producer_identifier() -> None:
    result = _map(BIOKJEMI_14, _set("s:ServReport/s:ServProvider/s:HCP/s:Inst/s:Id", None, "abc"))
    _refused(result, "X99", "ServProvider/HCP/Inst/Id", "not a valid HER identifier")


def test_comparator_not_equal_is_refused() -> None:
    def change(root, ns) -> None:
        num = first(root, ns, f"{R1}/s:NumResult")
        num.insert(0, num.makeelement(f"{{{ns['s']}}}ArithmeticComp", V="NE"))

    _refused(_map(BIOKJEMI_14, change), "X99", text="comparator 'NE'")


def test_health_professionals_fnr_is_not_passed_on() -> None:
    def change(root, ns) -> None:
        first(root, ns, "s:ServReport/s:Patient/s:ResponsibleHcp/s:HCP/s:Inst/s:HCPerson/s:TypeId").set("V", "FNR")

    result = _map(BIOKJEMI_14, change)
    assert result.ok
    assert "9144889" not in str(result.bundle)
    assert any("is not passed on" in w for w in result.warnings)


def test_value_readers() -> None:
    assert read_ts("2009-03-21T12:05:00").fhir == "2009-03-21T12:05:00+01:00"
    assert read_ts("2017-09-20T07:57:00").fhir == "2017-09-20T07:57:00+02:00"
    assert read_ts("2017-09-20T05:57:00Z").fhir == "2017-09-20T05:57:00Z"
    assert read_ts("2017-09-20").fhir == "2017-09-20"
    assert read_ts("21.03.2009").tolerance == "T11-DATETIME-VARIANT"
    assert read_ts("") is None
    assert read_decimal("0.90").value.as_tuple().exponent == -2
    assert read_decimal("6,0").tolerance == "T05-DECIMAL-COMMA"
    with pytest.raises(ValueError):
        read_decimal("1.234,5")


def test_results_without_analysis_depend_on_heading() -> None:
    """A narrative finding (heading FU) needs no analysis code; a laboratory result (LR) does."""

    def drop_investigation(heading: str) -> Callable:
        def change(root, ns) -> None:
            item = first(root, ns, "s:ServReport/s:Patient/s:ResultItem[1]")
            for sub in item.xpath("s:Investigation | s:ResultItem", namespaces=ns):
                item.remove(sub)
            for ref in item.xpath("//s:RefIdResultItem", namespaces=ns):
                ref.getparent().remove(ref)
            first(root, ns, "s:ServReport/s:Patient/s:ResultItem[1]/s:TextResult/s:Heading").set("V", heading)

        return change

    _refused(_map(DYRKNING_14, drop_investigation("LR")), "X99", "Patient/ResultItem[1]", "not identified")
    assert _map(DYRKNING_14, drop_investigation("FU")).ok
