"""What the store asks of the access engine on every read and write.

The store calls these hooks itself, so no route, page, export or operation can forget them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import ColumnElement, FromClause


@dataclass(slots=True)
class AccessRecord:
    """One access attempt, handed to the audit log."""

    action: str  # read | vread | search | history | create | update | delete | operation
    res_type: str | None
    outcome: str  # allowed | denied
    resource_ids: list[str] = field(default_factory=list)
    patients: list[str] = field(default_factory=list)
    detail: str | None = None
    withheld: str | None = None  # Specific | General | Reservation when something was held back
    override: bool = False  # a restriction was overridden (emergency or declared consent)
    reason: str | None = None  # the written reason given for emergency access


class AccessContext(Protocol):
    def read_filter(self, res_type: str, table: FromClause) -> ColumnElement[bool] | None:
        """A predicate on `resource`/`resource_history` rows this caller may see; None means all."""

    def check_read(self, res_type: str, action: str) -> None:
        """Raise FhirError (403) when this caller may not read the type at all (scopes)."""

    def check_write(self, action: str, res_type: str, resource: dict[str, Any] | None) -> None:
        """Raise FhirError (403) when this caller may not make the write."""

    def record(self, conn: Any, rec: AccessRecord) -> None:
        """Write the audit entry for an access attempt, inside the caller's transaction."""

    def match_filter(self, res_type: str, table: FromClause) -> ColumnElement[bool] | None:
        """What a conditional create or update may match (and so return or overwrite)."""

    def guard(self, resource: dict[str, Any], existing: Any) -> None:
        """Called by the writer for each version about to be stored (existing: the live Stored or None)."""

    def not_visible(self, res_type: str, res_id: str) -> Any:
        """The FhirError for a resource that does not exist or that this caller may not see."""


class Unrestricted:
    """The platform itself: loading demo data, imports by an operator, migrations."""

    def read_filter(self, res_type: str, table: FromClause) -> ColumnElement[bool] | None:
        return None

    def check_read(self, res_type: str, action: str) -> None:
        return None

    def check_write(self, action: str, res_type: str, resource: dict[str, Any] | None) -> None:
        return None

    def record(self, conn: Any, rec: AccessRecord) -> None:
        return None

    def match_filter(self, res_type: str, table: FromClause) -> ColumnElement[bool] | None:
        return None

    def guard(self, resource: dict[str, Any], existing: Any) -> None:
        return None

    def not_visible(self, res_type: str, res_id: str) -> Any:
        from kjerne.fhir.outcome import not_found

        return not_found(res_type, res_id)


UNRESTRICTED = Unrestricted()
