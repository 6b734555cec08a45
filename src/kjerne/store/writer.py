"""The write path: validate, resolve identities, version, store once, index."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, and_, bindparam, delete, insert, select, update

from kjerne.fhir.identifiers import OID_FNR, PERSON_SYSTEMS, URI_FNR
from kjerne.fhir.outcome import FhirError, Issue
from kjerne.fhir.validation import validate
from kjerne.store import bulk_pg, rules
from kjerne.store.bulk_pg import rows_json
from kjerne.store.clock import now_us, us_to_instant
from kjerne.store.identity import resolve_person_references
from kjerne.store.indexing import IndexRows, extract
from kjerne.store.observations import observation_rows
from kjerne.store.records import Stored, row_to_stored
from kjerne.store.schema import INDEX_TABLES, cut, idx_obs, patient_code, resource, resource_history

# The params whose Patient reference puts a resource in that patient's compartment, in order of preference.
COMPARTMENT_PARAMS = ("patient", "subject", "beneficiary", "individual", "who")
_STRING_MAX = 255


@dataclass(slots=True)
class WriteResult:
    stored: Stored
    created: bool
    changed: bool = True


def _strip_meta(res: dict[str, Any]) -> dict[str, Any]:
    out = dict(res)
    meta = dict(out.get("meta") or {})
    meta.pop("versionId", None)
    meta.pop("lastUpdated", None)
    if meta:
        out["meta"] = meta
    else:
        out.pop("meta", None)
    return out


def _validate_or_raise(res: dict[str, Any]) -> None:
    issues = validate(res)
    errors = [i for i in issues if i.severity in ("error", "fatal")]
    if errors:
        raise FhirError(400, errors)


def _meta_rows(tombstone: dict[str, Any]) -> IndexRows:
    rows = extract(tombstone)
    return IndexRows(
        [t for t in rows.tokens if t[0] in ("_security", "_tag")], [], rules.extra_index_rows(tombstone), [], [], [], []
    )


def patient_of(res: dict[str, Any], rows: IndexRows) -> str | None:
    if res.get("resourceType") == "Patient":
        return res.get("id")
    for param in COMPARTMENT_PARAMS:
        for ref in rows.references:
            if ref[0] == param and ref[1] == "Patient" and ref[2]:
                return ref[2]
    return None


# Statements built once: the write path runs them thousands of times a second.
_CURRENT = select(resource).where(and_(resource.c.res_type == bindparam("t"), resource.c.res_id == bindparam("i")))
_CURRENT_FOR_UPDATE = _CURRENT.with_for_update()
_INSERT_RESOURCE = insert(resource)
_INSERT_HISTORY = insert(resource_history)
_UPDATE_RESOURCE = (
    update(resource)
    .where(and_(resource.c.rid == bindparam("r"), resource.c.version == bindparam("old_version")))
    .values(
        version=bindparam("version"),
        patient=bindparam("patient"),
        last_updated=bindparam("last_updated"),
        deleted=bindparam("deleted"),
        content=bindparam("content"),
    )
)
_DELETE_INDEX = {kind: delete(t).where(t.c.rid == bindparam("r")) for kind, t in INDEX_TABLES.items()}
_DELETE_INDEX["obs"] = delete(idx_obs).where(idx_obs.c.rid == bindparam("r"))
_INSERT_INDEX = {kind: insert(t) for kind, t in INDEX_TABLES.items()}
_INSERT_INDEX["obs"] = insert(idx_obs)
_INDEX_BY_KIND = {**INDEX_TABLES, "obs": idx_obs}
_FLUSH_PG = bulk_pg.statement(
    [bulk_pg.Target(resource)]
    + [bulk_pg.Target(table) for table in _INDEX_BY_KIND.values()]
    + [bulk_pg.Target(patient_code, on_conflict_do_nothing=True)]
)


def current(conn: Connection, res_type: str, res_id: str, *, for_update: bool = False) -> Stored | None:
    q = _CURRENT_FOR_UPDATE if for_update and conn.dialect.name == "postgresql" else _CURRENT
    row = conn.execute(q, {"t": res_type, "i": res_id}).first()
    return row_to_stored(row) if row else None


class Writer:
    """Writes versions inside a caller-owned transaction."""

    def __init__(
        self,
        conn: Connection,
        *,
        validate_input: bool = True,
        guard: Callable[[dict[str, Any], Stored | None], None] | None = None,
    ) -> None:
        self.conn = conn
        self.validate_input = validate_input
        self.guard = guard
        self._patients: dict[tuple[str, str], str] = {}
        self.reservations: dict[str, Any] = {}
        self._reports: list[str] = []
        self._pending: dict[str, list[dict[str, Any]]] = {kind: [] for kind in _INSERT_INDEX}
        self._pending_count = 0
        self._codes_seen: set[tuple[str, str, str]] = set()
        self._codes: list[dict[str, str]] = []  # new patient_code rows, written at flush
        self.auto_flush = True  # off while a caller runs entries in savepoints and flushes between them
        self._rids: list[int] = []  # row ids taken from the sequence beforehand (PostgreSQL)
        self._new_rows: list[dict[str, Any]] = []  # resource rows of new resources, written at flush
        self._written: set[tuple[int, int]] = set()  # (rid, version) of the versions this transaction wrote
        self._recent: dict[tuple[str, str], Stored] = {}  # the current versions this transaction wrote
        self._buffered: set[int] = set()  # rids whose resource row waits in _new_rows

    def forget_recent(self) -> None:
        """Before rows are removed behind the writer's back (a purge): write what waits, drop the cache."""
        self.flush()
        self._recent.clear()

    def current(self, res_type: str, res_id: str, *, for_update: bool = False) -> Stored | None:
        """The current version, found among those this transaction wrote before asking the database."""
        mine = self._recent.get((res_type, res_id))
        if mine is not None:
            return mine
        return current(self.conn, res_type, res_id, for_update=for_update)

    def reserve_rids(self, n: int) -> None:
        """Take row ids for `n` new resources in one round trip, so that they go in with the next flush
        instead of one INSERT each (PostgreSQL; SQLite inserts in-process anyway). A few more are taken
        for the Patients that identity resolution may create on the way; ids left over are gaps in the
        sequence, as a rolled-back insert leaves."""
        if n < 2 or self.conn.dialect.name != "postgresql":
            return
        n += 4 + n // 16
        self._rids.extend(
            reversed(
                self.conn.exec_driver_sql(
                    "SELECT nextval(pg_get_serial_sequence('resource', 'rid')) FROM generate_series(1, %s)", (n,)
                )
                .scalars()
                .all()
            )
        )

    def finish(self) -> None:
        """Call once after a unit of writes, before commit: results stored beside a restricted report
        take its restriction labels."""
        reports, self._reports = self._reports, []
        rules.propagate_report_labels(self, reports)  # on rows still waiting to be written, where they can
        self.flush()

    def relabel_tombstone(self, stored: Stored, tombstone: dict[str, Any]) -> None:
        """A deleted resource's restriction labels change in place (no new version): its history stays
        exactly as hidden as the restrictions that are still active say."""
        self.flush()
        self._recent.pop((stored.res_type, stored.res_id), None)
        content = orjson.dumps(tombstone)
        self.conn.execute(update(resource).where(resource.c.rid == stored.rid).values(content=content))
        for stmt in _DELETE_INDEX.values():
            self.conn.execute(stmt, {"r": stored.rid})
        self._write_index(stored.rid, stored.res_type, stored.patient, _meta_rows(tombstone))
        self.flush()

    def relabel_in_place(self, stored: Stored, res: dict[str, Any]) -> bool:
        """A version this transaction wrote takes new restriction labels without a new version: nobody
        can have read it yet. False (nothing done) when `stored` is not such a version."""
        if stored.deleted or (stored.rid, stored.version) not in self._written:
            return False
        conn, rid, content = self.conn, stored.rid, orjson.dumps(res)
        if rid in self._buffered:  # not in the database yet: change the rows waiting to be written
            for row in self._new_rows:
                if row["rid"] == rid:
                    row["content"] = content
            self._pending["token"] = [t for t in self._pending["token"] if t["rid"] != rid or t["param"] != "_security"]
            self._pending["date"] = [d for d in self._pending["date"] if d["rid"] != rid or d["param"] != "_release"]
        else:
            self.flush()
            conn.execute(update(resource).where(resource.c.rid == rid).values(content=content))
            token, date = INDEX_TABLES["token"], INDEX_TABLES["date"]
            conn.execute(delete(token).where(and_(token.c.rid == rid, token.c.param == "_security")))
            conn.execute(delete(date).where(and_(date.c.rid == rid, date.c.param == "_release")))
        labels = [t for t in extract(res).tokens if t[0] == "_security"]
        self._write_index(
            rid, stored.res_type, stored.patient, IndexRows(labels, [], rules.extra_index_rows(res), [], [], [], [])
        )
        self._recent[(stored.res_type, stored.res_id)] = Stored(
            rid, stored.res_type, stored.res_id, stored.version, stored.last_updated, False, stored.patient, content
        )
        return True

    def mark(self) -> dict[str, int]:
        return {"reports": len(self._reports), "resources": len(self._new_rows), "codes": len(self._codes)} | {
            kind: len(batch) for kind, batch in self._pending.items()
        }

    def rollback_to(self, mark: dict[str, int]) -> None:
        """After a savepoint rolled back: drop what was buffered since `mark`, forget caches."""
        for kind, batch in self._pending.items():
            del batch[mark[kind] :]
        del self._reports[mark["reports"] :]
        del self._new_rows[mark["resources"] :]  # their row ids are not reused: gaps are harmless
        self._buffered = {row["rid"] for row in self._new_rows}
        del self._codes[mark["codes"] :]
        self._recent.clear()
        self._patients.clear()
        self.reservations.clear()
        self._codes_seen.clear()

    def expect_patient(self, res: dict[str, Any], res_id: str) -> None:
        """A Patient that this unit of writes is about to store: references by its national id written
        before it (a transaction lists data before its Patient) resolve to it, not to a new Patient."""
        for ident in res.get("identifier", []) if isinstance(res.get("identifier"), list) else []:
            if (
                isinstance(ident, dict)
                and ident.get("system") in PERSON_SYSTEMS
                and isinstance(ident.get("value"), str)
            ):
                system = OID_FNR if ident["system"] == URI_FNR else ident["system"]
                self._patients.setdefault((system, ident["value"]), res_id)

    def _create_patient(self, res: dict[str, Any]) -> str:
        pid = self.put(res, res["id"], guarded=False, fresh=True).stored.res_id
        self.reservations.setdefault(pid, [])  # a person first seen now has set no restriction yet
        return pid

    def put(
        self,
        res: dict[str, Any],
        res_id: str,
        *,
        expected_version: int | None = None,
        must_not_exist: bool = False,
        keep_labels: bool = True,
        guarded: bool = True,
        fresh: bool = False,
    ) -> WriteResult:
        """`fresh`: the id was just made here (a UUID), so there is no current version to look up."""
        """Create or update `res` under `res_id`. A stale `expected_version` gets 412."""
        res_type = res["resourceType"]
        res = orjson.loads(orjson.dumps(res))  # a private copy, several times faster than deepcopy
        res["id"] = res_id
        if self.validate_input:
            _validate_or_raise(res)
        resolve_person_references(self.conn, res, self._create_patient, self._patients)
        existing = None if fresh else self.current(res_type, res_id, for_update=True)
        if existing is not None and existing.rid in self._buffered:
            self.flush()  # a new version replaces one still waiting to be written
        live = existing if existing is not None and not existing.deleted else None
        if self.guard is not None and guarded:
            self.guard(res, live)
        rules.prepare(res, is_new=live is None, previous=live.resource() if live and keep_labels else None)
        if existing is not None and must_not_exist and not existing.deleted:
            raise FhirError.of(409, "duplicate", f"{res_type}/{res_id} exists already")
        if expected_version is not None:
            have = existing.version if existing and not existing.deleted else 0
            if have != expected_version:
                raise FhirError(
                    412,
                    [Issue("conflict", f"version {expected_version} is not current ({have} is)")],
                )
        if existing is not None and not existing.deleted and _strip_meta(existing.resource()) == _strip_meta(res):
            return WriteResult(existing, created=False, changed=False)
        return self._store(res_type, res_id, res, existing, deleted=False)

    def delete(self, res_type: str, res_id: str) -> WriteResult | None:
        existing = self.current(res_type, res_id, for_update=True)
        if existing is not None and existing.rid in self._buffered:
            self.flush()
        if existing is None or existing.deleted:
            return None
        if self.guard is not None:
            self.guard(existing.resource(), existing)
        # The tombstone keeps the restriction labels, so the history of a deleted resource stays
        # as hidden as the resource was.
        old_meta = existing.resource().get("meta") or {}
        tombstone: dict[str, Any] = {"resourceType": res_type, "id": res_id}
        kept = {k: old_meta[k] for k in ("security", "extension", "tag") if old_meta.get(k)}
        if kept:
            tombstone["meta"] = kept
        result = self._store(res_type, res_id, tombstone, existing, deleted=True)
        if res_type == "Consent":
            rules.after_consent(self, existing.resource(), existing.patient, withdrawn=True)
        return result

    def _store(
        self, res_type: str, res_id: str, res: dict[str, Any], existing: Stored | None, *, deleted: bool
    ) -> WriteResult:
        now = now_us()
        version = existing.version + 1 if existing else 1
        meta = dict(res.get("meta") or {})
        meta["versionId"] = str(version)
        meta["lastUpdated"] = us_to_instant(now)
        res["meta"] = meta
        rows = _meta_rows(res) if deleted else extract(res)
        patient = (existing.patient if existing else None) if deleted else patient_of(res, rows)
        if not deleted:
            rules.refuse_if_reserved(self.conn, res, patient, self.reservations)
            rows.dates.extend(rules.extra_index_rows(res))
        content = orjson.dumps(res)
        conn = self.conn
        if existing is None:
            row = {
                "res_type": res_type,
                "res_id": res_id,
                "version": version,
                "patient": patient,
                "last_updated": now,
                "deleted": deleted,
                "content": content,
            }
            if self._rids:
                rid = self._rids.pop()
                self._new_rows.append({"rid": rid, **row})
                self._buffered.add(rid)
            else:
                key = conn.execute(_INSERT_RESOURCE, row).inserted_primary_key
                assert key is not None  # a single-row insert always reports its key
                rid = key[0]
        else:
            rid = existing.rid
            conn.execute(
                _INSERT_HISTORY,
                {
                    "rid": rid,
                    "version": existing.version,
                    "res_type": res_type,
                    "res_id": res_id,
                    "patient": existing.patient,
                    "last_updated": existing.last_updated,
                    "deleted": existing.deleted,
                    "content": existing.content,
                },
            )
            done = conn.execute(
                _UPDATE_RESOURCE,
                {
                    "r": rid,
                    "old_version": existing.version,
                    "version": version,
                    "patient": patient,
                    "last_updated": now,
                    "deleted": deleted,
                    "content": content,
                },
            )
            if done.rowcount != 1:
                raise FhirError.of(409, "conflict", f"{res_type}/{res_id} was changed by another request")
            self.flush()
            for stmt in _DELETE_INDEX.values():
                conn.execute(stmt, {"r": rid})
        self._write_index(rid, res_type, patient, rows)
        if res_type == "Observation" and not deleted:
            obs_rows = observation_rows(res, patient)
            self._pending["obs"].extend({"rid": rid, **row} for row in obs_rows)
            self._note_codes(obs_rows)
        stored = Stored(rid, res_type, res_id, version, now, deleted, patient, content)
        self._written.add((rid, version))
        self._recent[(res_type, res_id)] = stored
        if res_type == "Patient" and not deleted:
            # Identity lookups later in this transaction find this Patient without searching the index,
            # whose rows may still be buffered.
            for ident in res.get("identifier", []):
                if ident.get("system") in PERSON_SYSTEMS and ident.get("value"):
                    system = OID_FNR if ident["system"] == URI_FNR else ident["system"]
                    self._patients[(system, ident["value"])] = res_id
        if not deleted and res_type == "Consent":
            rules.after_consent(self, res, patient, withdrawn=res.get("status") != "active")
        if not deleted and res_type == "DiagnosticReport" and (res.get("meta") or {}).get("security"):
            self._reports.append(f"{res_type}/{res_id}")
        return WriteResult(stored, created=existing is None or existing.deleted)

    def _write_index(self, rid: int, res_type: str, patient: str | None, rows: IndexRows) -> None:
        base = {"rid": rid, "res_type": res_type, "patient": patient}
        batches: dict[str, list[dict[str, Any]]] = {
            "token": [{**base, "param": p, "system": cut(s), "code": cut(c), "text": t} for p, s, c, t in rows.tokens],
            "string": [{**base, "param": p, "norm": n[:_STRING_MAX], "exact": e} for p, n, e in rows.strings],
            "date": [{**base, "param": p, "low": lo, "high": hi} for p, lo, hi in rows.dates],
            "reference": [
                {
                    **base,
                    "param": p,
                    "target_type": tt,
                    "target_id": ti,
                    "ident_system": cut(isys),
                    "ident_value": cut(ival),
                    "url": url,
                }
                for p, tt, ti, isys, ival, url in rows.references
            ],
            "quantity": [
                {**base, "param": p, "value": v, "system": cut(s), "code": cut(c), "unit": cut(u)}
                for p, v, s, c, u in rows.quantities
            ],
            "number": [{**base, "param": p, "value": v} for p, v in rows.numbers],
            "uri": [{**base, "param": p, "value": cut(v)} for p, v in rows.uris],
        }
        for kind, batch in batches.items():
            if batch:
                self._pending[kind].extend(batch)
        self._pending_count += 1
        if self._pending_count >= 200 and self.auto_flush:
            self.flush()

    def _note_codes(self, rows: list[dict[str, Any]]) -> None:
        """Record new (patient, code) pairs for $lastn, once per pair per database."""
        fresh = {(r["patient"], r["code"], r["system"] or "") for r in rows if not r["component"]} - self._codes_seen
        if not fresh:
            return
        self._codes_seen |= fresh
        self._codes.extend({"patient": p, "code": c, "system": s} for p, c, s in sorted(fresh))

    def flush(self) -> None:
        """Write buffered index rows: one bulk write per index table instead of one per resource
        (COPY on PostgreSQL, executemany on SQLite). Called before anything in this transaction
        searches the index, and at finish()."""
        if self.conn.dialect.name == "postgresql":
            self._flush_pg()
            return
        for kind, batch in self._pending.items():
            if batch:
                self.conn.execute(_INSERT_INDEX[kind], batch)
                batch.clear()
        self._pending_count = 0
        if self._codes:
            self.conn.execute(insert(patient_code).prefix_with("OR IGNORE"), self._codes)
            self._codes.clear()

    def _flush_pg(self) -> None:
        """Every buffered row in one statement and one round trip (`bulk_pg`)."""
        if not self._new_rows and not self._codes and not any(self._pending.values()):
            self._pending_count = 0
            return
        params = [rows_json(self._new_rows)]
        params += [rows_json(self._pending[kind]) for kind in _INDEX_BY_KIND]
        params.append(rows_json(self._codes))
        # Through SQLAlchemy, so a database error arrives as DBAPIError like any other statement's
        # (a batch then retries its entries one by one; the API answers with an OperationOutcome).
        self.conn.exec_driver_sql(_FLUSH_PG, tuple(params))
        self._new_rows.clear()
        self._buffered.clear()
        for batch in self._pending.values():
            batch.clear()
        self._codes.clear()
        self._pending_count = 0
