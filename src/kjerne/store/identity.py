"""Persons are known by national id. A reference by identifier resolves to the one Patient with that
id, and a Patient is created when data first arrives for an unknown person."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, and_, bindparam, select

from kjerne.fhir.identifiers import OID_FNR, PERSON_SYSTEMS, URI_FNR
from kjerne.store.ids import new_id
from kjerne.store.schema import idx_token, resource


def person_references(node: Any) -> list[dict[str, Any]]:
    """Every Reference in a resource that names a person by national id but has no literal reference,
    in document order."""
    found: list[dict[str, Any]] = []
    if type(node) is dict or type(node) is list:  # parsed JSON: plain dicts and lists
        _collect(node, found)
    return found


def _collect(node: Any, found: list[dict[str, Any]]) -> None:
    if type(node) is dict:
        ident = node.get("identifier")
        if (
            type(ident) is dict
            and "reference" not in node
            and ident.get("system") in PERSON_SYSTEMS
            and node.get("type", "Patient") == "Patient"
            and isinstance(ident.get("value"), str)
        ):
            found.append(node)
        for key, value in node.items():
            kind = type(value)
            if (kind is dict or kind is list) and key != "contained":
                _collect(value, found)
    else:
        for item in node:
            kind = type(item)
            if kind is dict or kind is list:
                _collect(item, found)


_FIND_PATIENT = (
    select(resource.c.res_id)
    .join(idx_token, idx_token.c.rid == resource.c.rid)
    .where(
        and_(
            idx_token.c.res_type == "Patient",
            idx_token.c.param == "identifier",
            idx_token.c.code == bindparam("value"),
            idx_token.c.system.in_(bindparam("systems", expanding=True)),
            resource.c.deleted.is_(False),
        )
    )
    .order_by(resource.c.rid)
    .limit(1)
)


def find_patient(conn: Connection, system: str, value: str) -> str | None:
    systems = [OID_FNR, URI_FNR] if system in (OID_FNR, URI_FNR) else [system]
    row = conn.execute(_FIND_PATIENT, {"value": value, "systems": systems}).first()
    return row[0] if row else None


def resolve_person_references(
    conn: Connection,
    res: dict[str, Any],
    create_patient: Callable[[dict[str, Any]], str],
    cache: dict[tuple[str, str], str] | None = None,
) -> None:
    """Point each identifier-only person reference at its Patient, creating the Patient if needed."""
    cache = {} if cache is None else cache
    for ref in person_references(res):
        system, value = ref["identifier"]["system"], ref["identifier"]["value"]
        key = (OID_FNR if system == URI_FNR else system, value)
        pid = cache.get(key)
        if pid is None:
            if conn.dialect.name == "postgresql":
                # Two producers sending the first data for one person at once must not create two Patients.
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(hashtext(%s))", (value,))
            pid = find_patient(conn, system, value)
        if pid is None:
            pid = create_patient(
                {
                    "resourceType": "Patient",
                    "id": new_id(),
                    "identifier": [{"system": system, "value": value}],
                }
            )
        cache[key] = pid
        ref["reference"] = f"Patient/{pid}"
        ref.setdefault("type", "Patient")
