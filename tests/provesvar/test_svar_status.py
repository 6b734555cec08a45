"""DiagnosticReport and Observation status from ServType x Status (NILAR mapping.md)."""

from __future__ import annotations

import pytest
from provesvar_helpers import BIOKJEMI_14, RECEIVED, edit, first, resources, the_report

from kjerne.services.provesvar import codes
from kjerne.services.provesvar.svarrapport_map import map_svarrapport

# (Status 7306, ServType 7309) -> DiagnosticReport.status, row by row from the NILAR table
REPORT_TABLE = {
    ("S", "N"): "registered",
    ("S", "M"): "amended",
    ("S", "C"): "cancelled",
    ("S", "H"): "unknown",
    ("S", "A"): "unknown",
    ("P", "N"): "preliminary",
    ("P", "M"): "amended",
    ("P", "C"): "cancelled",
    ("P", "H"): "unknown",
    ("P", "A"): "unknown",
    ("F", "N"): "final",
    ("F", "M"): "amended",
    ("F", "C"): "cancelled",
    ("F", "H"): "unknown",
    ("F", "A"): "unknown",
    ("A", "N"): "unknown",
    ("A", "M"): "appended",
    ("A", "C"): "cancelled",
    ("A", "H"): "unknown",
    ("A", "A"): "unknown",
}


@pytest.mark.parametrize(("status", "serv_type"), sorted(REPORT_TABLE))
def test_report_status_table(status: str, serv_type: str) -> None:
    assert codes.diagnostic_report_status(serv_type, status) == REPORT_TABLE[(status, serv_type)]


def test_unknown_codes_have_no_status() -> None:
    assert codes.diagnostic_report_status("Q", "F") is None
    assert codes.diagnostic_report_status("N", "Z") is None
    assert codes.diagnostic_report_status("X", "F") == "unknown"


@pytest.mark.parametrize(
    ("serv_type", "status_investigation", "expected"),
    [
        ("N", "", "final"),
        ("M", "", "amended"),
        ("C", "3", "cancelled"),
        ("H", "", "final"),
        ("N", "1", "unknown"),
        ("H", "1", "amended"),
        ("N", "2", "preliminary"),
        ("N", "5", "registered"),
        ("M", "5", "unknown"),
        ("N", "9", "preliminary"),
        ("N", "11", "final"),
        ("M", "11", "amended"),
        ("A", "12", "preliminary"),
        ("N", "14", "unknown"),
        ("H", "15", "final"),
    ],
)
def test_observation_status_table(serv_type: str, status_investigation: str, expected: str) -> None:
    assert codes.observation_status(serv_type, status_investigation) == expected


def _with(serv_type: str, status: str) -> bytes:
    def change(root, ns) -> None:
        first(root, ns, "s:ServReport/s:ServType").set("V", serv_type)
        first(root, ns, "s:ServReport/s:Status").set("V", status)

    return edit(BIOKJEMI_14, change)


@pytest.mark.parametrize(
    ("serv_type", "status", "expected"),
    [("N", "F", "final"), ("N", "P", "preliminary"), ("M", "F", "amended"), ("M", "A", "appended")],
)
def test_report_status_in_bundle(serv_type: str, status: str, expected: str) -> None:
    result = map_svarrapport(_with(serv_type, status), received_at=RECEIVED)
    assert result.ok, result.errors
    report = the_report(result.bundle)
    assert report["status"] == expected
    assert {t["code"] for t in report["meta"]["tag"]} == {serv_type, status}
    assert result.service_type == serv_type


def test_cancellation_cancels_every_result() -> None:
    result = map_svarrapport(_with("C", "F"), received_at=RECEIVED)
    assert result.ok
    assert the_report(result.bundle)["status"] == "cancelled"
    assert {o["status"] for o in resources(result.bundle, "Observation")} == {"cancelled"}


@pytest.mark.parametrize(("element", "value"), [("ServType", "Q"), ("Status", "Z")])
def test_unknown_report_codes_are_refused(element: str, value: str) -> None:
    xml = edit(BIOKJEMI_14, lambda root, ns: first(root, ns, f"s:ServReport/s:{element}").set("V", value))
    result = map_svarrapport(xml, received_at=RECEIVED)
    assert not result.ok
    assert any(f.where == element and value in f.text for f in result.error_faults), result.errors


def test_unknown_status_investigation_is_refused() -> None:
    xml = edit(
        BIOKJEMI_14,
        lambda root, ns: first(root, ns, "s:ServReport/s:Patient/s:ResultItem[1]/s:StatusInvestigation").set("V", "99"),
    )
    result = map_svarrapport(xml, received_at=RECEIVED)
    assert not result.ok
    assert "StatusInvestigation" in result.errors[0]
