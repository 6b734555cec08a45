"""Actors -> PractitionerRoles, and the check that a responsible health professional is named."""

from __future__ import annotations

from typing import Any

from kjerne.services.provesvar.faults import where
from kjerne.services.provesvar.mapping import conditional
from kjerne.services.provesvar.svarrapport_actors import Actor
from kjerne.services.provesvar.svarrapport_context import ReportContext
from kjerne.services.provesvar.svarrapport_fhir import KEY_SYSTEM, KEYS


class RoleMixin(ReportContext):
    def role(self, a: Actor) -> str | None:
        if a.empty:
            return None
        p_key = (
            f"{a.person_ident['system']}|{a.person_ident['value']}" if a.person_ident else f"name|{a.person_name or ''}"
        )
        o_key = f"{a.org_ident['system']}|{a.org_ident['value']}" if a.org_ident else f"name|{a.org_name or ''}"
        if a.person_ident or a.org_ident:
            key = KEYS.uuid("PractitionerRole", p_key, o_key)
        else:  # names only: no identity beyond this report
            key = KEYS.uuid("PractitionerRole", self.report_key or "", p_key, o_key)
        if key in self.roles:
            return self.roles[key]
        res: dict[str, Any] = {"resourceType": "PractitionerRole", "identifier": [KEYS.ident(key)]}
        if a.person_ident or a.person_name:
            res["practitioner"] = {
                "type": "Practitioner",
                **({"identifier": a.person_ident} if a.person_ident else {}),
                **({"display": a.person_name} if a.person_name else {}),
            }
        if a.org_ident or a.org_name:
            res["organization"] = {
                "type": "Organization",
                **({"identifier": a.org_ident} if a.org_ident else {}),
                **({"display": a.org_name} if a.org_name else {}),
            }
        if a.category:
            res["code"] = [{"coding": [a.category]}]
        if a.specialty:
            res["specialty"] = [{"coding": [a.specialty]}]
        if a.telecom:
            res["telecom"] = a.telecom
        url = KEYS.full_url("PractitionerRole", key)
        self.m.add(res, url, conditional("PractitionerRole", KEY_SYSTEM, key))
        self.roles[key] = url
        return url

    def physician_checks(self, producer: Actor) -> None:
        sr = self.sr
        persons = bool(producer.person_ident or producer.person_name)
        for rel in self.sr.iter(self.q("RelServProv")):
            hcp = self.child(rel, "HCP")
            if hcp is None:
                continue
            prof = self.child(hcp, "HCProf")
            person_el = prof if prof is not None else self.child(self.child(hcp, "Inst"), "HCPerson")
            if person_el is not None and (self.text(person_el, "Name") or self.text(person_el, "Id")):
                persons = True
        if not persons and not self.cancelled:
            self.warning(
                "E20",
                where(sr, "ServProvider"),
                "no responsible health professional at the service provider is identified",
            )
