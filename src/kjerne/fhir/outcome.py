"""OperationOutcome and the one exception type that carries a FHIR error to the client."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Issue:
    code: str  # IssueType: invalid, structure, required, value, not-found, conflict, forbidden, ...
    diagnostics: str
    expression: str | None = None  # FHIRPath location, e.g. "Observation.valueQuantity.value"
    severity: str = "error"
    details_code: str | None = None  # e.g. PvkOutcome Specific / General / Reservation
    details_system: str | None = None

    def to_fhir(self) -> dict[str, Any]:
        out: dict[str, Any] = {"severity": self.severity, "code": self.code, "diagnostics": self.diagnostics}
        if self.details_code:
            coding: dict[str, Any] = {"code": self.details_code}
            if self.details_system:
                coding["system"] = self.details_system
            out["details"] = {"coding": [coding]}
        if self.expression:
            out["expression"] = [self.expression]
        return out


def operation_outcome(issues: list[Issue]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [i.to_fhir() for i in issues]}


@dataclass
class FhirError(Exception):
    status: int
    issues: list[Issue] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    audited: bool = False  # the refusal already has its audit entry

    @classmethod
    def of(cls, status: int, code: str, diagnostics: str, expression: str | None = None) -> FhirError:
        return cls(status, [Issue(code, diagnostics, expression)])

    def __str__(self) -> str:
        return "; ".join(i.diagnostics for i in self.issues)

    def outcome(self) -> dict[str, Any]:
        return operation_outcome(self.issues)


def not_found(resource_type: str, rid: str) -> FhirError:
    return FhirError.of(404, "not-found", f"{resource_type}/{rid} is not known")


def invalid(diagnostics: str, expression: str | None = None, status: int = 400) -> FhirError:
    return FhirError.of(status, "invalid", diagnostics, expression)
