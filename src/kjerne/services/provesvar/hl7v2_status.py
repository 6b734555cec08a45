"""HL7 status tables (0085 result, 0123 report, 0038 order) mapped to FHIR statuses."""

from __future__ import annotations

# OBX-11 observation result status (HL7 table 0085) -> Observation.status.
OBSERVATION_STATUS = {
    "A": "amended",
    "B": "amended",
    "C": "corrected",
    "D": "entered-in-error",
    "F": "final",
    "I": "registered",
    "N": "cancelled",
    "O": "registered",
    "P": "preliminary",
    "R": "preliminary",
    "S": "preliminary",
    "U": "final",
    "W": "entered-in-error",
    "X": "cancelled",
}
# Statuses that say there is no result yet (or none will come): a value in OBX-5 is not mapped.
NO_RESULT_STATUSES = frozenset({"I", "O", "N", "X"})

# OBR-25 result status (HL7 table 0123) -> DiagnosticReport.status.
REPORT_STATUS = {
    "O": "registered",
    "I": "registered",
    "S": "registered",
    "A": "partial",
    "P": "preliminary",
    "C": "corrected",
    "R": "partial",
    "F": "final",
    "X": "cancelled",
}

# ORC-5 order status (HL7 table 0038) -> ServiceRequest.status.
ORDER_STATUS = {
    "A": "active",
    "CA": "revoked",
    "CM": "completed",
    "DC": "revoked",
    "ER": "entered-in-error",
    "HD": "on-hold",
    "IP": "active",
    "RP": "revoked",
    "SC": "active",
}


def derived_status(statuses: list[str]) -> str:
    """DiagnosticReport.status from the results when OBR-25 is empty."""
    found = set(statuses)
    if not found:
        return "unknown"
    if found <= {"final"}:
        return "final"
    if found <= {"final", "corrected", "amended"}:
        return "corrected"
    if found <= {"cancelled"}:
        return "cancelled"
    if found <= {"registered"}:
        return "registered"
    if "preliminary" in found:
        return "preliminary"
    return "partial"


def request_status(report_status: str) -> str:
    return {
        "registered": "active",
        "partial": "active",
        "preliminary": "active",
        "final": "completed",
        "corrected": "completed",
        "amended": "completed",
        "cancelled": "revoked",
    }.get(report_status, "unknown")
