"""Who is asking: the verified identity behind a request, and the attestation that came with it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from kjerne.access.scopes import Action, Context, Scopes

PrincipalKind = Literal["citizen", "practitioner", "system"]
PurposeOfUse = Literal["TREAT", "ETREAT", "COC", "BTG"]

PURPOSES_OF_USE: frozenset[str] = frozenset({"TREAT", "ETREAT", "COC", "BTG"})
# Purposes that step outside the normal access rules; the audit log flags them for the citizen.
EMERGENCY_PURPOSES: frozenset[str] = frozenset({"ETREAT", "BTG"})


@dataclass(frozen=True, slots=True)
class Attestation:
    """The consumer organisation's signed statement of why a health worker asks for a patient's data
    (tillitsrammeverk ``nhn:tillitsrammeverk:parameters``).

    ``practitioner_pid`` is the health worker's own fødselsnummer. It is needed to match the
    attestation to the logged-in user and must never be shown in a citizen's access log. Fødselsnummer
    fields are left out of ``repr`` so that logging a principal does not write them out.
    """

    practitioner_pid: str = field(repr=False)
    hpr: str | None
    name: str | None
    legal_entity: str | None
    legal_entity_name: str | None
    point_of_care: str | None
    point_of_care_name: str | None
    department: str | None
    authorization_code: str | None  # kodeverk 9060, e.g. LE (lege), SP (sykepleier)
    purpose_of_use: str  # TREAT | ETREAT | COC | BTG
    purpose_details: tuple[str, ...]
    patients: tuple[str, ...] = field(repr=False)  # fødselsnummer / D-nummer of the attested patients
    toa: int  # time of attestation, Unix seconds
    raw: dict[str, Any] = field(compare=False, repr=False)

    def covers(self, fnr: str) -> bool:
        """Whether the attestation names this patient."""
        return fnr.strip() in self.patients

    @property
    def is_emergency(self) -> bool:
        return self.purpose_of_use in EMERGENCY_PURPOSES


@dataclass(frozen=True, slots=True)
class Principal:
    """A verified caller.

    * ``citizen``: a person (``pid``) at security level 4, with access to their own data only.
    * ``practitioner``: health personnel with HPR number, pid and a tillitsrammeverk attestation.
    * ``system``: a machine client acting for the organisation ``org`` (producers that deliver data).
    """

    kind: PrincipalKind
    subject: str = field(repr=False)  # pid for persons; organisation number (or client id) for systems
    pid: str | None = field(repr=False)
    hpr: str | None
    name: str | None
    org: str | None  # orgnr_parent: the organisation that owns the client / employs the user
    child_org: str | None  # orgnr_child: the sub-unit, when the client names one
    scopes: Scopes
    security_level: str | None
    attestation: Attestation | None
    token_id: str | None  # jti
    issuer: str

    @property
    def smart_context(self) -> Context:
        """The SMART scope context this kind of caller uses: patient/, user/ or system/."""
        if self.kind == "citizen":
            return "patient"
        if self.kind == "practitioner":
            return "user"
        return "system"

    def can(self, resource_type: str, action: Action) -> bool:
        """Whether the token's scopes, in this caller's own context, allow ``action`` on the type."""
        return self.scopes.allows(self.smart_context, resource_type, action)
