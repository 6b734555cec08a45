"""PID -> the patient reference: a Norwegian national identity number is checked and referenced by
identifier; any other patient is written as a Patient resource, updated on its first PID-3 identifier."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kjerne.fhir.identifiers import (
    OID_DNR,
    OID_FHN,
    OID_FNR,
    birth_date,
    is_dnr,
    is_valid_fnr,
    person_checksum_ok,
)
from kjerne.services.provesvar.hl7v2_codes import V2_0203
from kjerne.services.provesvar.hl7v2_context import KEYS, MapperBase
from kjerne.services.provesvar.hl7v2_datatypes import HD, read_ts
from kjerne.services.provesvar.hl7v2_parse import Seg
from kjerne.services.provesvar.mapping import conditional
from kjerne.services.provesvar.tolerances import ValueProblem, read_national_id

# PID-8 administrative sex (HL7 table 0001) -> Patient.gender.
GENDER = {"M": "male", "F": "female", "O": "other", "A": "other", "N": "other", "U": "unknown"}
# XPN-7 name type (HL7 table 0200) -> HumanName.use.
NAME_USE = {"L": "official", "D": "usual", "M": "maiden", "N": "nickname", "A": "anonymous"}

# Patient identifier types (CX-5) that are Norwegian national identity numbers.
NATIONAL_ID_TYPES = {"FNR": OID_FNR, "DNR": OID_DNR, "FHN": OID_FHN, "NNNOR": OID_FNR}


@dataclass
class Subject:
    reference: dict[str, Any]
    key: str  # system|value of the identifier the patient is known by


class PatientMixin(MapperBase):
    def patient(self, pid: Seg) -> Subject | None:
        reps = pid.reps(3)
        field_no = 3
        if not reps and pid.reps(2):
            reps, field_no = pid.reps(2), 2
            self.warning("101", pid.where(3), "patient identifier list (PID-3) empty; PID-2 is used")
        if not reps:
            self.error("101", pid.where(3), "patient identifier missing")
            return None
        national: list[tuple[str, str]] = []
        local: list[dict[str, Any]] = []
        failed = False
        for rep in reps:
            value, kind, authority = rep.c(1), rep.c(5).upper(), HD.of(rep.sub_rep(4))
            if not value:
                continue
            nat_system = NATIONAL_ID_TYPES.get(kind)
            if nat_system is None and authority.oid and f"urn:oid:{authority.oid}" in (OID_FNR, OID_DNR, OID_FHN):
                nat_system = f"urn:oid:{authority.oid}"
                kind = {OID_FNR: "FNR", OID_DNR: "DNR", OID_FHN: "FHN"}[nat_system]
            if nat_system is not None:
                checked = self.national_id(value, kind, nat_system, pid.where(field_no))
                if checked is None:
                    failed = True
                else:
                    national.append(checked)
                continue
            ident: dict[str, Any] = {}
            if kind:
                ident["type"] = {"coding": [{"system": V2_0203, "code": kind}]} if kind.isalnum() else {"text": kind}
            ident["system"] = self.id_system("patient", authority)
            ident["value"] = value
            local.append(ident)
        if failed:
            return None
        if national:
            system, value = national[0]
            if len({v for _, v in national}) > 1:
                self.warning("102", pid.where(field_no), f"several national identity numbers; {value} is used")
            self.check_birth_date(pid, value)
            return Subject({"type": "Patient", "identifier": {"system": system, "value": value}}, f"{system}|{value}")
        if not local:
            self.error("101", pid.where(field_no), "patient identifier missing")
            return None
        first = local[0]
        self.warning(
            "0",
            pid.where(field_no),
            f"the patient has no Norwegian national identity number; a Patient is written for identifier "
            f"{first['value']} ({first['system']})",
        )
        key = f"{first['system']}|{first['value']}"
        url = KEYS.full_url("Patient", key)
        resource: dict[str, Any] = {"resourceType": "Patient", "identifier": local}
        names = self.names(pid)
        if names:
            resource["name"] = names
        gender = pid.v(8).upper()
        if gender:
            if gender in GENDER:
                resource["gender"] = GENDER[gender]
            else:
                self.warning("103", pid.where(8), f"administrative sex '{gender}' is not in HL7 table 0001; left out")
        born = self.birth_date(pid)
        if born:
            resource["birthDate"] = born
        self.add(resource, url, conditional("Patient", first["system"], first["value"]))
        return Subject({"reference": url}, key)

    def national_id(self, raw: str, kind: str, system: str, where: str) -> tuple[str, str] | None:
        value, tolerance = read_national_id(raw)
        if tolerance:
            self.warning("102", where, f"'{raw}' read as {value}")
        if not (len(value) == 11 and value.isdigit()):
            self.error("102", where, f"'{raw}' is not an 11-digit national identity number")
            return None
        if system == OID_FHN:
            if not person_checksum_ok(value):
                self.error("102", where, f"check digits wrong in {value}")
                return None
            return system, value
        if not person_checksum_ok(value):
            self.error("102", where, f"check digits wrong in {value}")
            return None
        if not is_valid_fnr(value):
            self.error("102", where, f"{value} does not encode a valid birth date")
            return None
        if is_dnr(value):
            if kind == "FNR":
                self.warning("102", where, f"{value} is a D-number; referenced as D-number")
            return OID_DNR, value
        if kind == "DNR":
            self.error("102", where, f"{value} is typed DNR but is not a D-number")
            return None
        return OID_FNR, value

    def check_birth_date(self, pid: Seg, national_id: str) -> None:
        born = self.birth_date(pid)
        encoded = birth_date(national_id)
        if born and encoded and len(born) == 10 and born != encoded.isoformat():
            self.warning("102", pid.where(7), f"birth date {born} differs from the one in the national identity number")

    def birth_date(self, pid: Seg) -> str | None:
        raw = pid.v(7)
        try:
            m = read_ts(raw)
        except ValueProblem as exc:
            self.warning("102", pid.where(7), f"{exc}; birth date left out")
            return None
        if m is None:
            return None
        if m.at > self.received:
            self.warning("102", pid.where(7), f"birth date {m.fhir} is in the future; left out")
            return None
        return m.fhir[:10]

    def names(self, pid: Seg) -> list[dict[str, Any]]:
        out = []
        for rep in pid.reps(5):
            name: dict[str, Any] = {}
            use = NAME_USE.get(rep.c(7).upper())
            if use:
                name["use"] = use
            if rep.c(1, 1):
                name["family"] = rep.c(1, 1)
            given = [g for g in (rep.c(2), *rep.c(3).split()) if g]
            if given:
                name["given"] = given
            if rep.c(5):
                name["prefix"] = [rep.c(5)]
            if rep.c(4):
                name["suffix"] = [rep.c(4)]
            if len(name) > (1 if "use" in name else 0):
                out.append(name)
        return out
