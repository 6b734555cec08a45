"""The organisations and health professionals a message names: the producer (MSH-4/MSH-3), and the
PractitionerRoles of requesters, collectors, performers and interpreters."""

from __future__ import annotations

from typing import Any

from kjerne.fhir.identifiers import OID_DNR, OID_FNR, OID_HERID, OID_HPR, is_valid_herid, is_valid_hpr
from kjerne.services.provesvar import codes
from kjerne.services.provesvar.hl7v2_context import KEY_SYSTEM, KEYS, MapperBase
from kjerne.services.provesvar.hl7v2_datatypes import HD, person_name, token
from kjerne.services.provesvar.hl7v2_parse import Rep
from kjerne.services.provesvar.mapping import conditional


class ActorMixin(MapperBase):
    def identify_sender(self) -> None:
        msh = self.msg.msh
        facility, app = HD.of(msh.rep(4)), HD.of(msh.rep(3))
        source = facility
        if facility.empty:
            source = app
            if not app.empty:
                self.warning("101", msh.where(4), "sending facility missing; the sending application (MSH-3) "
                             "names the producer")  # fmt: skip
        if source.empty:
            self.error("101", msh.where(4), "sending facility (MSH-4) and application (MSH-3) missing: the "
                       "producer is not identified")  # fmt: skip
            self.sender = "unknown"
            return
        self.sender = token(source.oid or source.namespace or source.universal)
        self.sender_name = source.namespace or source.universal
        if not facility.empty:
            org: dict[str, Any] = {"type": "Organization"}
            ident = self.org_identifier(facility)
            if ident:
                org["identifier"] = ident
            org["display"] = facility.namespace or facility.universal
            self.sender_org = org

    def org_identifier(self, hd: HD) -> dict[str, str] | None:
        if hd.universal_type in codes.ORG_ID_TYPES and hd.universal:
            return {"system": codes.ORG_ID_TYPES[hd.universal_type], "value": hd.universal}
        if hd.oid:
            return {"system": "urn:ietf:rfc:3986", "value": f"urn:oid:{hd.oid}"}
        return None

    def practitioner(
        self, rep: Rep, where: str, authority: HD | None = None
    ) -> tuple[dict[str, str] | None, str | None]:
        """An XCN (id, name, assigning authority, identifier type) -> (identifier, display name). A CNN passes
        its assigning authority, which it spreads over three components."""
        name = person_name(rep)
        value, kind = rep.c(1), rep.c(13).upper() if authority is None else ""
        authority = authority if authority is not None else HD.of(rep.sub_rep(9))
        if not value:
            return None, name
        auth_system = f"urn:oid:{authority.oid}" if authority.oid else None
        if kind in codes.PRIVATE_PERSON_ID_TYPES or auth_system in (OID_FNR, OID_DNR):
            self.warning("0", where, "a health professional's national identity number is not passed on")
            return None, name
        if kind == "HPR" or auth_system == OID_HPR:
            if not is_valid_hpr(value):
                self.warning("102", where, f"'{value}' is not a valid HPR number; identifier left out")
                return None, name
            return {"system": OID_HPR, "value": value}, name
        if kind == "HER" or auth_system == OID_HERID:
            if not is_valid_herid(value):
                self.warning("102", where, f"'{value}' is not a valid HER-id; identifier left out")
                return None, name
            return {"system": OID_HERID, "value": value}, name
        return {"system": self.id_system("practitioner", authority), "value": value}, name

    def role(self, ident: dict[str, str] | None, name: str | None) -> str | None:
        """A PractitionerRole for a person named in the message, updated on a key from the identifier, or from
        the producer and the name when there is none (such a role carries nothing but the name)."""
        if ident is None and not name:
            return None
        if ident is not None:
            key = KEYS.uuid("PractitionerRole", f"{ident['system']}|{ident['value']}")
        else:
            key = KEYS.uuid("PractitionerRole", self.sender, f"name|{name}")
        if key in self.roles:
            return self.roles[key]
        practitioner: dict[str, Any] = {"type": "Practitioner"}
        if ident:
            practitioner["identifier"] = ident
        if name:
            practitioner["display"] = name
        resource = {"resourceType": "PractitionerRole", "identifier": [KEYS.ident(key)], "practitioner": practitioner}
        url = KEYS.full_url("PractitionerRole", key)
        self.add(resource, url, conditional("PractitionerRole", KEY_SYSTEM, key))
        self.roles[key] = url
        return url

    def organization(self, rep: Rep) -> dict[str, Any] | None:
        """An XON (OBX-23 performing organization) as a logical reference."""
        name = rep.c(1)
        value = rep.c(10) or rep.c(3)
        ref: dict[str, Any] = {"type": "Organization"}
        if value:
            kind, authority = rep.c(7).upper(), HD.of(rep.sub_rep(6))
            if kind in codes.ORG_ID_TYPES:
                ref["identifier"] = {"system": codes.ORG_ID_TYPES[kind], "value": value}
            else:
                ref["identifier"] = {"system": self.id_system("organization", authority), "value": value}
        if name:
            ref["display"] = name
        return ref if len(ref) > 1 else None
