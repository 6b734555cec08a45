"""Health care parties (HCP) read into `Actor`s, with their organisation and person identifiers checked."""

from __future__ import annotations

from dataclasses import dataclass, field

from lxml import etree

from kjerne.fhir.identifiers import (
    OID_HERID,
    OID_HPR,
    OID_ORGNR,
    OID_RESH,
    is_valid_herid,
    is_valid_hpr,
    is_valid_orgnr,
)
from kjerne.services.provesvar import codes
from kjerne.services.provesvar.faults import where
from kjerne.services.provesvar.svarrapport_parse import XmlReader
from kjerne.services.provesvar.tolerances import read_register_id


@dataclass
class Actor:
    """A health care party (HCP) read from the message."""

    org_ident: dict[str, str] | None = None  # {'system', 'value'} of the organisation (Dept overrides Inst)
    inst_ident: dict[str, str] | None = None  # the institution itself
    org_name: str | None = None
    person_ident: dict[str, str] | None = None
    person_name: str | None = None
    telecom: list[dict[str, str]] = field(default_factory=list)
    category: dict[str, str] | None = None  # HCProf/Type, kodeverk 9060
    specialty: dict[str, str] | None = None  # MedSpeciality

    @property
    def empty(self) -> bool:
        return not (self.org_ident or self.org_name or self.person_ident or self.person_name)


PRODUCER_PREFIX = {OID_ORGNR: "orgnr", OID_HERID: "herid", OID_RESH: "resh", OID_HPR: "hpr"}


def contact_point(v: str | None) -> dict[str, str] | None:
    if not v or ":" not in v:
        return None
    scheme, _, rest = v.partition(":")
    system = {"tel": "phone", "fax": "fax", "mailto": "email", "http": "url", "https": "url"}.get(scheme.lower())
    if system is None or not rest.strip():
        return None
    return {"system": system, "value": v if system == "url" else rest.strip()}


class ActorReader(XmlReader):
    def actor(self, hcp: etree._Element | None, *, strict: bool) -> Actor:
        """Read an HCP. strict=True (the report's producer): identifier problems are errors."""
        a = Actor()
        if hcp is None:
            return a
        inst = self.child(hcp, "Inst")
        prof = self.child(hcp, "HCProf")
        for person_el in [prof] if prof is not None else self.kids(inst, "HCPerson"):
            if person_el is not None and not (self.text(person_el, "Name") or self.text(person_el, "Id")):
                self.warning(
                    "E20", where(person_el), "health professional element is empty: the person is not identified"
                )
        if inst is not None:
            a.org_name = self.text(inst, "Name")
            a.inst_ident = self.org_identifier(inst, strict=strict)
            a.org_ident = a.inst_ident
            names = [a.org_name] if a.org_name else []
            for dept in self.kids(inst, "Dept"):
                dn = self.text(dept, "Name")
                if dn:
                    names.append(dn)
                d_ident = self.org_identifier(dept, strict=strict)
                if d_ident is not None:
                    a.org_ident = d_ident
            a.org_name = ", ".join(names) or None
            persons = self.kids(inst, "HCPerson")
            if persons:
                a.person_name = self.text(persons[0], "Name")
                a.person_ident = self.person_identifier(persons[0], strict=False)
        elif prof is not None:
            a.person_name = self.text(prof, "Name")
            a.person_ident = self.person_identifier(prof, strict=strict)
            t = self.child(prof, "Type")
            if t is not None and t.get("V"):
                a.category = {
                    "system": codes.kodeverk_system(codes.HP_CATEGORY_9060),
                    "code": t.get("V").strip(),
                    **({"display": t.get("DN")} if t.get("DN") else {}),
                }
        spec = self.child(hcp, "MedSpeciality")
        if spec is not None and spec.get("V"):
            num = codes.kodeverk_number(spec.get("S"))
            a.specialty = {
                **({"system": codes.kodeverk_system(num)} if num else {}),
                "code": spec.get("V").strip(),
                **({"display": spec.get("DN")} if spec.get("DN") else {}),
            }
        for addr in self.kids(hcp, "Address"):
            for tele in self.kids(addr, "TeleAddress"):
                cp = contact_point(tele.get("V"))
                if cp:
                    a.telecom.append(cp)
        return a

    def _id_problem(self, strict: bool, w: str, text: str) -> None:
        if strict:
            self.error("X99", w, text)
        else:
            self.warning("X99", w, text + "; identifier left out")

    def org_identifier(self, el: etree._Element, *, strict: bool) -> dict[str, str] | None:
        raw = self.text(el, "Id")
        kind = (self.code_v(el, "TypeId") or "").upper()
        w = where(el, "Id")
        if not raw:
            return None
        if not kind:
            self._id_problem(strict, w, f"identifier '{raw}' has no TypeId")
            return None
        if kind in codes.LOCAL_ORG_ID_TYPES:
            return None
        system = codes.ORG_ID_TYPES.get(kind)
        if system is None:
            self._id_problem(strict, where(el, "TypeId"), f"unknown organisation identifier type '{kind}'")
            return None
        value, tol = read_register_id(raw)
        self.tolerate(tol, w, f"'{raw}' read as {value}")
        ok = {OID_ORGNR: is_valid_orgnr, OID_HERID: is_valid_herid, OID_RESH: str.isdigit}[system](value)
        if not ok:
            self._id_problem(strict, w, f"'{raw}' is not a valid {kind} identifier")
            return None
        return {"system": system, "value": value}

    def person_identifier(self, el: etree._Element, *, strict: bool) -> dict[str, str] | None:
        candidates: list[tuple[str, str, str]] = []  # (kind, raw, where)
        raw = self.text(el, "Id")
        kind = (self.code_v(el, "TypeId") or "").upper()
        if raw:
            if not kind:
                self._id_problem(strict, where(el, "Id"), f"identifier '{raw}' has no TypeId")
            else:
                candidates.append((kind, raw, where(el, "Id")))
        for add in self.kids(el, "AdditionalId"):
            a_raw, a_kind = self.text(add, "Id"), (self.code_v(add, "Type") or "").upper()
            if a_raw and a_kind:
                candidates.append((a_kind, a_raw, where(add, "Id")))
        chosen: dict[str, str] | None = None
        for kind, raw, w in sorted(candidates, key=lambda c: c[0] != "HPR"):
            if kind in codes.PRIVATE_PERSON_ID_TYPES:
                self.warning("X99", w, f"a health professional's {kind} is not passed on; identifier left out")
                continue
            system = codes.PERSON_ID_TYPES.get(kind)
            if system is None:
                self._id_problem(strict, w, f"unknown person identifier type '{kind}'")
                continue
            value, tol = read_register_id(raw)
            self.tolerate(tol, w, f"'{raw}' read as {value}")
            valid = is_valid_hpr(value) if system == OID_HPR else is_valid_herid(value)
            if not valid:
                self._id_problem(strict, w, f"'{raw}' is not a valid {kind} identifier")
                continue
            if chosen is None:
                chosen = {"system": system, "value": value}
        return chosen
