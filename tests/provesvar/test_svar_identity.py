"""Identifiers, conditional updates and what the store needs for the report lifecycle."""

from __future__ import annotations

from lxml import etree
from provesvar_helpers import (
    BIOKJEMI_13,
    BIOKJEMI_14,
    BIOKJEMI_14_C,
    BIOKJEMI_14_M,
    RECEIVED,
    edit,
    first,
    resources,
    the_report,
)

from kjerne.services.provesvar.svarrapport_map import IDENTIFIER_SOURCE, KEY_SYSTEM, map_svarrapport


def _requests(bundle: dict) -> dict[str, str]:
    return {e["resource"]["resourceType"] + ":" + e["request"]["url"]: e["fullUrl"] for e in bundle["entry"]}


def test_same_message_twice_gives_the_same_bundle() -> None:
    xml = BIOKJEMI_14.read_bytes()
    first_run = map_svarrapport(xml, received_at=RECEIVED)
    second_run = map_svarrapport(xml, received_at=RECEIVED.replace(year=2026))
    assert first_run.bundle == second_run.bundle


def test_report_is_updated_on_its_service_provider_report_id() -> None:
    result = map_svarrapport(BIOKJEMI_14.read_bytes(), received_at=RECEIVED)
    report_entry = next(e for e in result.bundle["entry"] if e["resource"]["resourceType"] == "DiagnosticReport")
    official = report_entry["resource"]["identifier"][0]
    assert official["use"] == "official"
    assert official["type"] == {"coding": [{"system": IDENTIFIER_SOURCE, "code": "ServReportId"}]}
    assert official["system"] == "urn:kjerne:labsvar:herid-59:ServReportId"
    assert official["value"] == result.report_ids[0]
    assert report_entry["request"] == {
        "method": "PUT",
        "url": f"DiagnosticReport?identifier=urn:kjerne:labsvar:herid-59:ServReportId|{official['value']}",
    }
    kinds = [i["type"]["coding"][0]["code"] for i in report_entry["resource"]["identifier"]]
    assert kinds == ["ServReportId", "ServReqId", "MsgId"]


def test_new_change_and_cancellation_address_the_same_resources() -> None:
    new = map_svarrapport(BIOKJEMI_14.read_bytes(), received_at=RECEIVED)
    change = map_svarrapport(BIOKJEMI_14_M.read_bytes(), received_at=RECEIVED)
    cancel = map_svarrapport(BIOKJEMI_14_C.read_bytes(), received_at=RECEIVED)
    assert new.ok and change.ok and cancel.ok
    assert new.report_ids == change.report_ids == cancel.report_ids
    report_urls = [
        next(u for k, u in _requests(r.bundle).items() if k.startswith("DiagnosticReport:"))
        for r in (new, change, cancel)
    ]
    assert len(set(report_urls)) == 1
    # the changed report updates the observations of the new one (same keys)
    new_obs = {k for k in _requests(new.bundle) if k.startswith("Observation:")}
    changed_obs = {k for k in _requests(change.bundle) if k.startswith("Observation:")}
    assert new_obs == changed_obs
    # what the store needs to order versions: ServType tag and issued (GenDate)
    for r, serv_type in ((new, "N"), (change, "M"), (cancel, "C")):
        report = the_report(r.bundle)
        assert {"system": "urn:oid:2.16.578.1.12.4.1.1.7309", "code": serv_type} in [
            {k: t[k] for k in ("system", "code")} for t in report["meta"]["tag"]
        ]
        assert report["issued"] == r.issued
    assert the_report(new.bundle)["issued"] < the_report(change.bundle)["issued"] < the_report(cancel.bundle)["issued"]
    assert the_report(cancel.bundle)["status"] == "cancelled"
    msg_ids = {
        next(i["value"] for i in the_report(r.bundle)["identifier"] if i["type"]["coding"][0]["code"] == "MsgId")
        for r in (new, change, cancel)
    }
    assert len(msg_ids) == 3


def test_report_without_servprovid_is_keyed_on_the_request_id() -> None:
    """ServProvId is optional in v1.3 (required in v1.4)."""

    def change(root, ns) -> None:
        el = first(root, ns, "s:ServReport/s:ServProvId")
        el.getparent().remove(el)

    result = map_svarrapport(edit(BIOKJEMI_13, change), received_at=RECEIVED)
    assert result.ok, result.errors
    report = the_report(result.bundle)
    assert report["identifier"][0]["type"]["coding"][0]["code"] == "ServReqId"
    assert report["identifier"][0]["use"] == "official"
    entry = next(e for e in result.bundle["entry"] if e["resource"] is report)
    assert entry["request"]["url"].startswith("DiagnosticReport?identifier=urn:kjerne:labsvar:herid-59:ServReqId|")


def test_report_without_any_id_is_refused() -> None:
    def change(root, ns) -> None:
        for xpath in ("s:ServReport/s:ServProvId", "s:ServReport/s:ServReq"):
            el = first(root, ns, xpath)
            el.getparent().remove(el)

    result = map_svarrapport(edit(BIOKJEMI_13, change), received_at=RECEIVED)
    assert not result.ok
    assert "cannot be identified across versions" in result.errors[0]


def test_other_resources_use_derived_keys() -> None:
    result = map_svarrapport(BIOKJEMI_14.read_bytes(), received_at=RECEIVED)
    for entry in result.bundle["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] == "DiagnosticReport":
            continue
        key = next(i["value"] for i in resource["identifier"] if i["system"] == KEY_SYSTEM)
        assert entry["request"]["url"] == f"{resource['resourceType']}?identifier={KEY_SYSTEM}|{key}"


def test_specimen_and_requester() -> None:
    result = map_svarrapport(BIOKJEMI_14.read_bytes(), received_at=RECEIVED)
    specimens = resources(result.bundle, "Specimen")
    assert [s["accessionIdentifier"]["value"] for s in specimens] == ["1", "2", "3"]
    assert specimens[0]["collection"]["collectedDateTime"] == "2017-09-20T07:57:00+02:00"
    assert specimens[0]["type"]["coding"][0] == {
        "system": "urn:oid:2.16.578.1.12.4.1.1.8351",
        "code": "S",
        "display": "Serum",
    }
    (request,) = resources(result.bundle, "ServiceRequest")
    requester = next(e["resource"] for e in result.bundle["entry"] if e["fullUrl"] == request["requester"]["reference"])
    assert requester["resourceType"] == "PractitionerRole"
    assert requester["practitioner"]["identifier"] == {"system": "urn:oid:2.16.578.1.12.4.1.4.4", "value": "9144889"}
    assert requester["organization"]["display"] == "Kattskinnet legesenter"


def test_patient_is_a_logical_reference() -> None:
    result = map_svarrapport(BIOKJEMI_14.read_bytes(), received_at=RECEIVED)
    for resource in resources(result.bundle):
        if "subject" in resource:
            assert resource["subject"] == {
                "type": "Patient",
                "identifier": {"system": "urn:oid:2.16.578.1.12.4.1.4.1", "value": "13116900216"},
            }
    assert not resources(result.bundle, "Patient")


def test_v13_message_with_two_reports() -> None:
    def change(root, ns) -> None:
        report = first(root, ns, "s:ServReport")
        second = etree.fromstring(etree.tostring(report))
        second.find(f"{{{ns['s']}}}ServProvId").text = "second-report"
        second.find(f"{{{ns['s']}}}Patient/{{{ns['s']}}}OffId").text = "13116900217"
        report.addnext(second)

    result = map_svarrapport(edit(BIOKJEMI_13, change), received_at=RECEIVED)
    assert not result.ok
    assert result.errors == ["ServReport[2]/Patient/OffId: check digits wrong in 13116900217"]

    def fixed(root, ns) -> None:
        change(root, ns)
        root.xpath("s:ServReport[2]/s:Patient/s:OffId", namespaces=ns)[0].text = "13116900216"

    result = map_svarrapport(edit(BIOKJEMI_13, fixed), received_at=RECEIVED)
    assert result.ok, result.errors
    assert len(resources(result.bundle, "DiagnosticReport")) == 2
    assert result.report_ids[1] == "second-report"
    assert len(resources(result.bundle, "Observation")) == 2 * 8
