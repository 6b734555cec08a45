"""Coding systems and HL7 tables: which FHIR code system a CE/CWE names, and the coded fields read as
CodeableConcepts. Codes in local or unknown systems are scoped to the producer."""

from __future__ import annotations

import re
from typing import Any

from kjerne.services.provesvar import codes
from kjerne.services.provesvar.hl7v2_context import LOCAL_CODES, MapperBase
from kjerne.services.provesvar.hl7v2_datatypes import OID_RE, token
from kjerne.services.provesvar.hl7v2_parse import Rep
from kjerne.services.provesvar.units import UCUM

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"
V2_0078 = "http://terminology.hl7.org/CodeSystem/v2-0078"
DATA_ABSENT_REASON = "http://terminology.hl7.org/CodeSystem/data-absent-reason"

# Coding-system names (HL7 table 0396 and Norwegian usage) -> FHIR code system URIs.
CODE_SYSTEMS = {
    "LN": LOINC,
    "LOINC": LOINC,
    "SCT": SNOMED,
    "SNOMEDCT": SNOMED,
    "UCUM": UCUM,
    "I10": "http://hl7.org/fhir/sid/icd-10",
    "ICD10": "http://hl7.org/fhir/sid/icd-10",
    "I9C": "http://hl7.org/fhir/sid/icd-9-cm",
    "ATC": "http://www.whocc.no/atc",
    "NPU": "urn:oid:1.2.208.176.2.1",
    "NLK": codes.kodeverk_system("7280"),
}
# Code-system OIDs with a canonical FHIR URI.
CODE_SYSTEM_OIDS = {
    "2.16.840.1.113883.6.1": LOINC,
    "2.16.840.1.113883.6.96": SNOMED,
    "2.16.840.1.113883.6.8": UCUM,
    "2.16.840.1.113883.6.3": "http://hl7.org/fhir/sid/icd-10",
}

# OBX-8 abnormal flags (HL7 table 0078) with the HL7 v3 ObservationInterpretation code of the same meaning.
V3_INTERPRETATION_DISPLAY = {
    "<": "Off scale low",
    ">": "Off scale high",
    "A": "Abnormal",
    "AA": "Critical abnormal",
    "B": "Better",
    "D": "Significant change down",
    "DET": "Detected",
    "E": "Equivocal",
    "H": "High",
    "HH": "Critical high",
    "HU": "Significantly high",
    "I": "Intermediate",
    "IND": "Indeterminate",
    "L": "Low",
    "LL": "Critical low",
    "LU": "Significantly low",
    "MS": "moderately susceptible",
    "N": "Normal",
    "ND": "Not detected",
    "NEG": "Negative",
    "NR": "Non-reactive",
    "NS": "Non-susceptible",
    "POS": "Positive",
    "R": "Resistant",
    "RR": "Reactive",
    "S": "Susceptible",
    "SDD": "Susceptible-dose dependent",
    "SYN-R": "Synergy - resistant",
    "SYN-S": "Synergy - susceptible",
    "U": "Significant change up",
    "VS": "very susceptible",
    "W": "Worse",
    "WR": "Weakly reactive",
}
# Table 0078 flags without a v3 equivalent: kept in the v2 table's code system.
V2_ONLY_INTERPRETATION = {
    "AC": "Anti-complementary substances present",
    "QCF": "Quality Control Failure",
    "TOX": "Cytotoxic substance present",
}

# HL7 table 0074 (diagnostic service section), for DiagnosticReport.category.
SERVICE_SECTIONS = frozenset(
    {
        "AU", "BG", "BLB", "CG", "CH", "CP", "CT", "CTH", "CUS", "EC", "EN", "HM", "ICU", "IMM", "LAB", "MB",
        "MCB", "MYC", "NMR", "NMS", "NRS", "OSL", "OT", "OTH", "OUS", "PAT", "PF", "PHR", "PHY", "PT", "RAD",
        "RC", "RT", "RUS", "RX", "SP", "SR", "TX", "URN", "VR", "VUS", "XRC",
    }
)  # fmt: skip

TABLE_CODE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{1,9}$")


class CodeMixin(MapperBase):
    def code_system(self, name: str, oid: str, where: str, default_table: int | None = None) -> str:
        if oid and OID_RE.match(oid):
            return CODE_SYSTEM_OIDS.get(oid, f"urn:oid:{oid}")
        up = name.upper()
        if not name:
            if default_table:
                return f"http://terminology.hl7.org/CodeSystem/v2-{default_table:04d}"
            self.warn_system("", where, "a code without coding system is read as local to the sender")
            return f"{LOCAL_CODES}:{self.sender}"
        if up in CODE_SYSTEMS:
            return CODE_SYSTEMS[up]
        if m := re.fullmatch(r"HL7(\d{4})", up):
            return f"http://terminology.hl7.org/CodeSystem/v2-{m.group(1)}"
        if OID_RE.match(name):
            return CODE_SYSTEM_OIDS.get(name, f"urn:oid:{name}")
        if up in ("L", "LOCAL"):
            return f"{LOCAL_CODES}:{self.sender}"
        if not up.startswith("99"):
            self.warn_system(name, where, f"coding system '{name}' is not known; its codes are read as local")
        return f"{LOCAL_CODES}:{self.sender}:{token(name)}"

    def warn_system(self, name: str, where: str, text: str) -> None:
        if name not in self.warned_systems:
            self.warned_systems.add(name)
            self.warning("103", where, text)

    def concept(self, rep: Rep, where: str, default_table: int | None = None) -> dict[str, Any] | None:
        """A CE/CWE/CNE as a CodeableConcept (primary and alternate coding, original text)."""
        codings = []
        for code_c, text_c, sys_c, ver_c, oid_c in ((1, 2, 3, 7, 14), (4, 5, 6, 8, 17)):
            code = rep.c(code_c)
            if not code:
                continue
            coding = {"system": self.code_system(rep.c(sys_c), rep.c(oid_c), where, default_table), "code": code}
            if rep.c(ver_c):
                coding["version"] = rep.c(ver_c)
            if rep.c(text_c):
                coding["display"] = rep.c(text_c)
            codings.append(coding)
            default_table = None  # the field's default table names the primary code only
        out: dict[str, Any] = {}
        if codings:
            out["coding"] = codings
        text = rep.c(9) or rep.c(2) or rep.c(5)
        if text:
            out["text"] = text
        return out or None

    def table_concept(self, rep: Rep, where: str, table: int, what: str) -> dict[str, Any] | None:
        """A coded field whose default table is `table`; an uncoded value that does not look like a table
        code is kept as text only."""
        if rep.c(1) and not (rep.c(3) or rep.c(14)) and not TABLE_CODE_RE.match(rep.c(1)):
            self.warning("103", where, f"'{rep.c(1)}' is not a code from HL7 table {table:04d} ({what}); kept as text")
            return {"text": rep.c(9) or rep.c(2) or rep.c(1)}
        return self.concept(rep, where, default_table=table)
