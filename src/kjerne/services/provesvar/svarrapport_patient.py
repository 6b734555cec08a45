"""The report's patient: a checked Norwegian national identity number (FNR, DNR or FHN), referenced by
identifier."""

from __future__ import annotations

from typing import Any

from kjerne.fhir.identifiers import OID_DNR, OID_FHN, OID_FNR, is_dnr, is_valid_fnr, person_checksum_ok
from kjerne.services.provesvar import codes
from kjerne.services.provesvar.faults import where
from kjerne.services.provesvar.svarrapport_context import ReportContext
from kjerne.services.provesvar.tolerances import read_national_id


class PatientMixin(ReportContext):
    def patient(self) -> dict[str, Any] | None:
        sr = self.sr
        patient = self.child(sr, "Patient")
        if patient is None:
            for other in ("Animal", "Material"):
                if self.child(sr, other) is not None:
                    self.error(
                        "T10", where(sr, other), f"reports on {other.lower()} are not supported; a patient is required"
                    )
                    return None
            self.error("E36", where(sr, "Patient"), "patient information missing")
            return None
        off_id = self.text(patient, "OffId")
        if off_id:
            raw_id = off_id
            off_id, tol = read_national_id(off_id)
            self.tolerate(tol, where(patient, "OffId"), f"'{raw_id}' read as {off_id}")
        type_el = self.child(patient, "TypeOffId")
        id_type = ((type_el.get("V") if type_el is not None else None) or "").strip().upper()
        nested = self.child(patient, "Patient")
        if nested is not None and (self.kids(nested, "ResultItem") or self.kids(nested, "AnalysedSubject")):
            self.error("X99", where(nested), "results for a second (nested) patient are not supported")
        if not off_id:
            self.error("E30", where(patient, "OffId"), "national identity number missing")
            if not id_type:
                self.error("E36", where(patient, "TypeOffId"), "identifier type missing")
            return None
        if not id_type:
            self.error("E36", where(patient, "TypeOffId"), f"identifier type missing for '{off_id}'")
            return None
        if id_type in codes.LOCAL_PATIENT_ID_TYPES:
            self.error(
                "E36",
                where(patient, "TypeOffId"),
                f"identifier type {id_type} ({codes.LOCAL_PATIENT_ID_TYPES[id_type]}) is not a national identity "
                "number (FNR, DNR or FHN required)",
            )
            return None
        system = codes.PATIENT_ID_TYPES.get(id_type)
        if system is None:
            self.error("E36", where(patient, "TypeOffId"), f"unknown identifier type '{id_type}'")
            return None
        w = where(patient, "OffId")
        if not (len(off_id) == 11 and off_id.isdigit()):
            self.error("E31", w, f"'{off_id}' is not an 11-digit national identity number")
            return None
        if system in (OID_FNR, OID_DNR):
            if not person_checksum_ok(off_id):
                self.error("E31", w, f"check digits wrong in {off_id}")
                return None
            if not is_valid_fnr(off_id):
                self.error("E31", w, f"{off_id} does not encode a valid birth date")
                return None
            if system == OID_FNR and is_dnr(off_id):
                self.tolerate("T07-DNR-TYPED-AS-FNR", w, f"{off_id} is a D-number; referenced as D-number")
                system = OID_DNR
            elif system == OID_DNR and not is_dnr(off_id):
                self.error("E31", w, f"{off_id} is typed DNR but is not a D-number")
                return None
        elif system == OID_FHN and not person_checksum_ok(off_id):
            self.error("E31", w, f"check digits wrong in {off_id}")
            return None
        return {"type": "Patient", "identifier": {"system": system, "value": off_id}}
