"""One repository object per request, carrying who is asking. Every read and write goes through it:
it applies the access filter inside the SQL and hands an access record to the audit log."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from sqlalchemy import Connection, Engine, String, and_, bindparam, func, literal, or_, select, true, union_all
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import IntegrityError, OperationalError

from kjerne.access.context import UNRESTRICTED, AccessContext, AccessRecord
from kjerne.fhir.model import resource_types
from kjerne.fhir.outcome import FhirError, invalid
from kjerne.store.clock import now_us
from kjerne.store.ids import new_id
from kjerne.store.records import Stored, row_to_stored
from kjerne.store.schema import cut, idx_token, resource, resource_history
from kjerne.store.search import builder, include
from kjerne.store.search.common import BuildContext
from kjerne.store.search.cursor import decode
from kjerne.store.search.request import SearchRequest
from kjerne.store.search.request import parse as parse_search
from kjerne.store.writer import Writer, WriteResult


@dataclass(slots=True)
class SearchResult:
    request: SearchRequest
    page: builder.Page
    included: list[Stored]


@dataclass(slots=True)
class HistoryResult:
    rows: list[Stored]
    next_since: tuple[int, int, int] | None


def check_type(res_type: str) -> None:
    if res_type not in resource_types():
        raise FhirError.of(404, "not-supported", f"'{res_type}' is not a FHIR R4 resource type")


class Repository:
    def __init__(self, engine: Engine, access: AccessContext = UNRESTRICTED, *, base_url: str = "") -> None:
        self.engine = engine
        self.access = access
        self.base_url = base_url
        self._matches: dict[tuple[str, str], list[Stored]] = {}  # conditions settled in this write transaction
        self._merging: list[AccessRecord] | None = None
        self._pending: list[AccessRecord] | None = None  # audit entries of the write transaction under way
        self._writer: Writer | None = None  # of the write transaction under way

    # -- transactions -------------------------------------------------------------------------
    @contextmanager
    def write_tx(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            conn.info["sqlite_write"] = True
            with conn.begin():
                self._bind(conn)
                yield conn

    def _bind(self, conn: Connection) -> None:
        bind = getattr(self.access, "bind", None)
        if bind is not None:
            bind(conn)

    @contextmanager
    def audit_tx(self) -> Iterator[Connection]:
        """A read and its audit entry. When the caller's policy allows (an ordinary read, not an
        emergency or other override), the commit does not wait for the disk: the entry is durable
        within a fraction of a second (PostgreSQL's wal_writer_delay; SQLite's WAL checkpoint), in
        order, so a crash can only cut the end of the hash chain, never break it. Writes and denials
        always wait for the disk."""
        with self.engine.connect() as conn:
            if conn.dialect.name == "sqlite":  # SQLite takes the commit mode before BEGIN
                self._bind(conn)
                conn.rollback()
                conn.info["relaxed_commit"] = not getattr(self.access, "durable_audit", True)
            conn.info["sqlite_write"] = True
            with conn.begin():
                self._bind(conn)
                # PostgreSQL: the audit append sets synchronous_commit for this transaction.
                conn.info["relaxed_commit"] = not getattr(self.access, "durable_audit", True)
                try:
                    yield conn
                finally:
                    if not conn.invalidated:  # a lost connection has no info to clean (and raises)
                        conn.info.pop("relaxed_commit", None)

    @contextmanager
    def writing(self) -> Iterator[Writer]:
        """A write transaction with a Writer that applies this caller's guard; platform rules that
        follow a unit of writes run before commit."""
        try:
            with self.write_tx() as conn:
                writer = Writer(conn, guard=self.access.guard)
                self._writer, self._pending = writer, []
                try:
                    yield writer
                    writer.finish()
                    # The audit entries go last. An append holds the chain head's lock until commit, so
                    # the transaction's own work (the index rows above all) must not run under it, or
                    # concurrent writers would queue behind each other's whole transactions.
                    for rec in self._pending:
                        self.access.record(conn, rec)
                finally:
                    self._matches.clear()
                    self._writer, self._pending = None, None
        except FhirError as err:
            if err.status == 403 and not err.audited:
                # A guard refused a version inside the transaction, which rolled back: audit it anew.
                raise self.deny(AccessRecord("write", None, "denied", [], detail=str(err)[:500]), err) from None
            raise
        except IntegrityError as exc:
            # Two requests created the same resource at once; the database kept one of them.
            raise FhirError.of(409, "conflict", "the resource was written by another request at the same time") from exc
        except OperationalError as exc:
            if type(exc.orig).__name__ not in ("DeadlockDetected", "SerializationFailure", "LockNotAvailable"):
                raise
            raise FhirError.of(409, "conflict", "the write collided with another request; try again") from exc

    def deny(self, rec: AccessRecord, err: FhirError) -> FhirError:
        """Record a denied attempt in its own transaction (the failed one rolls back), return the error."""
        rec.outcome = "denied"
        rec.detail = rec.detail or str(err)[:500]
        with self.write_tx() as conn:
            self._record(conn, rec)
        err.audited = True
        return err

    @contextmanager
    def read_tx(self) -> Iterator[Connection]:
        with self.engine.connect() as conn, conn.begin():
            self._bind(conn)
            yield conn

    def _filter(self, res_type: str, table: Any) -> Any:
        return self.access.read_filter(res_type, table)

    def _record(self, conn: Connection, rec: AccessRecord) -> None:
        self.access.record(conn, rec)

    def _record_write(self, conn: Connection, rec: AccessRecord) -> None:
        if self._merging is not None:
            self._merging.append(rec)
        else:
            self._audit_at_commit(conn, rec)

    def _audit_at_commit(self, conn: Connection, rec: AccessRecord) -> None:
        if self._pending is not None and self._writer is not None and self._writer.conn is conn:
            self._pending.append(rec)
        else:
            self.access.record(conn, rec)

    @contextmanager
    def merged_records(self, conn: Connection) -> Iterator[None]:
        """The writes of a batch are audited together at its end: one entry per action and type for
        each patient, naming every resource written, instead of one per resource."""
        self._merging = []
        try:
            yield
            merged: dict[tuple[str, str | None], AccessRecord] = {}
            for rec in self._merging:
                key = (rec.action, rec.res_type)
                into = merged.setdefault(key, AccessRecord(rec.action, rec.res_type, rec.outcome))
                into.resource_ids.extend(rec.resource_ids)
                into.patients.extend(p for p in rec.patients if p not in into.patients)
            for rec in merged.values():
                self._audit_at_commit(conn, rec)
        finally:
            self._merging = None
            self._matches.clear()

    def record_mark(self) -> tuple[int, dict[tuple[str, str], list[Stored]]]:
        return (len(self._merging) if self._merging is not None else 0), dict(self._matches)

    def forget_since(self, mark: tuple[int, dict[tuple[str, str], list[Stored]]]) -> None:
        """After a savepoint rolled back: the audit records and settled conditions of what it undid."""
        if self._merging is not None:
            del self._merging[mark[0] :]
        self._matches = mark[1]

    def _check_read(self, res_type: str | None, action: str, ref: str) -> None:
        try:
            self.access.check_read(res_type or "*", action)
        except FhirError as err:
            raise self.deny(AccessRecord(action, res_type, "denied", [ref]), err) from None

    # -- reads --------------------------------------------------------------------------------
    def read(self, res_type: str, res_id: str) -> Stored:
        check_type(res_type)
        self._check_read(res_type, "read", f"{res_type}/{res_id}")
        with self.audit_tx() as conn:
            row = self._visible_current(conn, res_type, res_id)
            if row is not None:
                self._record(conn, AccessRecord("read", res_type, "allowed", [f"{res_type}/{res_id}"], _pat(row)))
        if row is None:
            rec = AccessRecord("read", res_type, "denied", [f"{res_type}/{res_id}"], detail="not found or not visible")
            raise self.deny(rec, self.access.not_visible(res_type, res_id))
        if row.deleted:
            raise FhirError.of(410, "deleted", f"{res_type}/{res_id} was deleted")
        return row

    def _visible_current(self, conn: Connection, res_type: str, res_id: str) -> Stored | None:
        conds = [resource.c.res_type == res_type, resource.c.res_id == res_id]
        extra = self._filter(res_type, resource)
        if extra is not None:
            conds.append(extra)
        row = conn.execute(select(resource).where(and_(*conds))).first()
        return row_to_stored(row) if row else None

    def vread(self, res_type: str, res_id: str, version: int) -> Stored:
        check_type(res_type)
        self._check_read(res_type, "vread", f"{res_type}/{res_id}")
        with self.audit_tx() as conn:
            found = None
            for table in (resource, resource_history):
                conds = [table.c.res_type == res_type, table.c.res_id == res_id, table.c.version == version]
                extra = self._filter(res_type, table)
                if extra is not None:
                    conds.append(extra)
                row = conn.execute(select(table).where(and_(*conds))).first()
                if row is not None:
                    found = _history_row(row)
                    break
            ref = f"{res_type}/{res_id}/_history/{version}"
            if found is not None:
                self._record(conn, AccessRecord("vread", res_type, "allowed", [ref], _pat(found)))
        if found is None:
            rec = AccessRecord("vread", res_type, "denied", [ref], detail="not found or not visible")
            raise self.deny(rec, self.access.not_visible(res_type, res_id))
        if found.deleted:
            raise FhirError.of(410, "deleted", f"{ref} is a deletion")
        return found

    def search(
        self,
        res_type: str,
        pairs: list[tuple[str, str]],
        *,
        lenient: bool = False,
        link_pairs: list[tuple[str, str]] | None = None,
    ) -> SearchResult:
        """`link_pairs`: the parameters as the client sent them, when the server added scoping (the
        person-id header) that page links must not carry."""
        check_type(res_type)
        req = parse_search(res_type, pairs, lenient=lenient)
        req.link_pairs = link_pairs
        return self.run_search(req)

    def run_search(self, req: SearchRequest) -> SearchResult:
        self._check_read(req.res_type, "search", req.res_type)
        ctx = BuildContext(self.base_url, now_us())
        with self.audit_tx() as conn:
            page = builder.run(conn, req, ctx, self._filter)
            included = include.resolve(conn, req, page.rows, self._filter)
            everything = page.rows + included
            self._record(
                conn,
                AccessRecord(
                    "search",
                    req.res_type,
                    "allowed",
                    [f"{s.res_type}/{s.res_id}" for s in everything],
                    sorted({s.patient for s in everything if s.patient}),
                    detail=_query_text(req),
                ),
            )
        return SearchResult(req, page, included)

    def awaiting_release(self) -> list[Stored]:
        """The caller's own reports that wait for release, for an 'awaiting release' listing; the
        caller must show no content from them (see services/provesvar/awaiting.py)."""
        decide = getattr(self.access, "awaiting_release_filter", None)
        if decide is None:
            return []
        r = resource.alias("r")
        q = select(r).where(and_(r.c.res_type == "DiagnosticReport", r.c.deleted.is_(False), decide(r)))
        with self.audit_tx() as conn:
            rows = [row_to_stored(row) for row in conn.execute(q)]
            self._record(
                conn,
                AccessRecord(
                    "read",
                    "DiagnosticReport",
                    "allowed",
                    [f"DiagnosticReport/{s.res_id}" for s in rows],
                    sorted({s.patient for s in rows if s.patient}),
                    detail="awaiting release (no content)",
                ),
            )
        return rows

    def history(
        self,
        res_type: str | None,
        res_id: str | None,
        *,
        count: int = 50,
        since_us: int | None = None,
        cursor: str | None = None,
    ) -> HistoryResult:
        """Versions newest first. Paging is keyset on (last_updated, rid, version)."""
        if res_type:
            check_type(res_type)
        self._check_read(res_type, "history", f"{res_type or ''}/{res_id or ''}")
        count = max(1, min(count, 1000))
        after = decode(cursor) if cursor else None
        selects = []
        for table, deleted_col in ((resource, resource.c.deleted), (resource_history, resource_history.c.deleted)):
            conds = []
            if res_type:
                conds.append(table.c.res_type == res_type)
            if res_id:
                conds.append(table.c.res_id == res_id)
            if since_us is not None:
                conds.append(table.c.last_updated >= since_us)
            extra = self._filter(res_type or "*", table)
            if extra is not None:
                conds.append(extra)
            selects.append(
                select(
                    table.c.rid,
                    table.c.res_type,
                    table.c.res_id,
                    table.c.version,
                    table.c.patient,
                    table.c.last_updated,
                    deleted_col.label("deleted"),
                    table.c.content,
                    literal(0).label("_k"),
                ).where(and_(*conds) if conds else literal(True))
            )
        u = union_all(*selects).subquery("h")
        q = select(u)
        if after is not None:
            if len(after.keys) != 3 or not all(isinstance(k, int) for k in after.keys):
                raise invalid("_cursor is not a cursor this server issued", "_cursor")
            lu, rid, ver = after.keys
            q = q.where(
                (u.c.last_updated < lu)
                | ((u.c.last_updated == lu) & (u.c.rid < rid))
                | ((u.c.last_updated == lu) & (u.c.rid == rid) & (u.c.version < ver))
            )
        q = q.order_by(u.c.last_updated.desc(), u.c.rid.desc(), u.c.version.desc()).limit(count + 1)
        with self.audit_tx() as conn:
            rows = [_history_row(r) for r in conn.execute(q)]
            more = len(rows) > count
            rows = rows[:count]
            missing = bool(res_id and not rows and after is None)
            if missing and since_us is not None:
                missing = self._visible_current(conn, res_type or "", res_id or "") is None
            if not missing:
                self._record(
                    conn,
                    AccessRecord(
                        "history",
                        res_type,
                        "allowed",
                        [s.location for s in rows],
                        sorted({s.patient for s in rows if s.patient}),
                    ),
                )
        if missing:
            rec = AccessRecord(
                "history", res_type, "denied", [f"{res_type}/{res_id}"], detail="not found or not visible"
            )
            raise self.deny(rec, self.access.not_visible(res_type or "", res_id or ""))
        nxt = (rows[-1].last_updated, rows[-1].rid, rows[-1].version) if more else None
        return HistoryResult(rows, nxt)

    # -- writes -------------------------------------------------------------------------------
    # Each write has a public form that runs in its own transaction and an `*_in` form that runs
    # inside a caller's Writer (a batch Bundle runs all its entries in one transaction, each in a
    # savepoint). A refused write is audited in the same transaction the caller commits.
    def _check_write(self, action: str, res_type: str, res: dict[str, Any] | None, ref: str) -> None:
        try:
            self.access.check_write(action, res_type, res)
        except FhirError as err:
            raise self.deny(AccessRecord(action, res_type, "denied", [ref]), err) from None

    def check_write_in(self, writer: Writer, action: str, res_type: str, res: dict[str, Any] | None, ref: str) -> None:
        try:
            self.access.check_write(action, res_type, res)
        except FhirError as err:
            self._record(writer.conn, AccessRecord(action, res_type, "denied", [ref], detail=str(err)[:500]))
            err.audited = True
            raise

    def _written(self, writer: Writer, action: str, result: WriteResult) -> WriteResult:
        s = result.stored
        self._record_write(writer.conn, AccessRecord(action, s.res_type, "allowed", [s.location], _pat(s)))
        return result

    def create(self, res: dict[str, Any], *, if_none_exist: str | None = None) -> WriteResult:
        res_type = _type_of(res)
        self._check_write("create", res_type, res, res_type)
        with self.writing() as writer:
            return self.create_in(writer, res, if_none_exist=if_none_exist)

    def create_in(self, writer: Writer, res: dict[str, Any], *, if_none_exist: str | None = None) -> WriteResult:
        res_type = _type_of(res)
        if if_none_exist:
            matches = self._match(writer.conn, res_type, if_none_exist)
            if len(matches) > 1:
                raise FhirError.of(412, "multiple-matches", f"If-None-Exist matched {len(matches)} resources")
            if matches:
                return WriteResult(matches[0], created=False, changed=False)
        result = self._written(writer, "create", writer.put(res, new_id(), fresh=True))
        if if_none_exist:
            self._matches[(res_type, if_none_exist)] = [result.stored]  # a later entry with it finds this one
        return result

    def update(self, res: dict[str, Any], res_id: str, *, if_match: int | None = None) -> WriteResult:
        res_type = _type_of(res)
        self._check_write("update", res_type, res, f"{res_type}/{res_id}")
        with self.writing() as writer:
            return self.update_in(writer, res, res_id, if_match=if_match)

    def update_in(
        self, writer: Writer, res: dict[str, Any], res_id: str, *, if_match: int | None = None
    ) -> WriteResult:
        res_type = _type_of(res)
        if res.get("id") not in (None, res_id):
            raise invalid(f"resource id '{res.get('id')}' does not match the URL id '{res_id}'", f"{res_type}.id")
        return self._written(writer, "update", writer.put(res, res_id, expected_version=if_match))

    def conditional_update(self, res: dict[str, Any], query: str) -> WriteResult:
        res_type = _type_of(res)
        self._check_write("update", res_type, res, f"{res_type}?{query}")
        with self.writing() as writer:
            return self.conditional_update_in(writer, res, query)

    def conditional_update_in(self, writer: Writer, res: dict[str, Any], query: str) -> WriteResult:
        res_type = _type_of(res)
        matches = self._match(writer.conn, res_type, query)
        if len(matches) > 1:
            raise FhirError.of(412, "multiple-matches", f"the condition matched {len(matches)} resources")
        if matches:
            res_id = matches[0].res_id
            if res.get("id") not in (None, res_id):
                raise invalid("resource id does not match the resource the condition found", f"{res_type}.id")
        else:
            res_id = res.get("id") or new_id()
        return self._written(writer, "update", writer.put(res, res_id))

    def delete(self, res_type: str, res_id: str) -> WriteResult | None:
        check_type(res_type)
        self._check_write("delete", res_type, None, f"{res_type}/{res_id}")
        with self.writing() as writer:
            return self.delete_in(writer, res_type, res_id)

    def delete_in(self, writer: Writer, res_type: str, res_id: str) -> WriteResult | None:
        result = writer.delete(res_type, res_id)
        self._record_write(writer.conn, AccessRecord("delete", res_type, "allowed", [f"{res_type}/{res_id}"]))
        return result

    def _match_identifier(self, conn: Connection, res_type: str, value: str) -> list[Stored] | None:
        """The common condition of producers' writes, `identifier=system|value`, by one indexed
        lookup instead of a compiled search. None when the value is not of that plain form."""
        plain = _plain_identifier(value)
        if plain is None:
            return None
        found = self._by_identifiers(conn, [(res_type, *plain)])
        return found.get((res_type, *plain), [])

    def _by_identifiers(
        self, conn: Connection, idents: list[tuple[str, str, str]]
    ) -> dict[tuple[str, str, str], list[Stored]]:
        """The live resources this caller may match, by (type, system, value) of their identifier: at
        most two each, oldest first. One statement for all."""
        t = idx_token.c
        types = sorted({res_type for res_type, _, _ in idents})
        codes = sorted({code for _, _, code in idents})
        conds = [resource.c.deleted.is_(False), t.param == "identifier", resource.c.res_type == t.res_type]
        q = select(t.system, t.code, resource).join(idx_token, idx_token.c.rid == resource.c.rid)
        if conn.dialect.name == "postgresql" and len(idents) > 1:
            # The wanted (type, value) pairs as one array-valued join: an exact index probe per pair,
            # one statement for any count. IN lists over both columns are planned as a range over
            # every identifier of the types, filtered by value.
            pairs = sorted({(res_type, code) for res_type, _, code in idents})
            wanted_pairs = (
                func.unnest(
                    bindparam("w_types", [p[0] for p in pairs], type_=ARRAY(String)),
                    bindparam("w_codes", [p[1] for p in pairs], type_=ARRAY(String)),
                )
                .table_valued("res_type", "code", name="w")
                .render_derived()
            )
            q = q.join(wanted_pairs, and_(t.res_type == wanted_pairs.c.res_type, t.code == wanted_pairs.c.code))
        else:
            conds.append(t.res_type.in_(types) if len(types) > 1 else t.res_type == types[0])
            conds.append(t.code.in_(codes) if len(codes) > 1 else t.code == codes[0])
        if len(idents) == 1:
            conds.append(t.system == idents[0][1])
        filters = {res_type: self.access.match_filter(res_type, resource) for res_type in types}
        if len(types) == 1 and filters[types[0]] is not None:
            conds.append(filters[types[0]])  # type: ignore[arg-type]
        elif any(f is not None for f in filters.values()):
            conds.append(
                or_(*(and_(resource.c.res_type == ty, f if f is not None else true()) for ty, f in filters.items()))
            )
        wanted = set(idents)
        out: dict[tuple[str, str, str], list[Stored]] = {}
        for row in conn.execute(q.where(and_(*conds)).order_by(resource.c.rid)):
            key = (row.res_type, row.system, row.code)
            if key in wanted and len(out.setdefault(key, [])) < 2:
                stored = row_to_stored(row)
                if all(s.rid != stored.rid for s in out[key]):
                    out[key].append(stored)
        return out

    def preload_matches(self, conn: Connection, conditions: list[tuple[str, str]]) -> None:
        """Settle many `identifier=system|value` conditions (a batch's conditional creates) with one
        lock statement and one lookup per type, instead of two statements each."""
        wanted: dict[tuple[str, str, str], list[tuple[str, str]]] = {}
        for res_type, cond in dict.fromkeys(conditions):
            pairs = parse_qsl(cond, keep_blank_values=True)
            if (res_type, cond) in self._matches or len(pairs) != 1 or pairs[0][0] != "identifier":
                continue
            plain = _plain_identifier(pairs[0][1])
            if plain is not None:
                wanted.setdefault((res_type, *plain), []).append((res_type, cond))
        if not wanted:
            return
        if conn.dialect.name == "postgresql":
            keys = sorted(f"{res_type}?{cond}" for conds in wanted.values() for res_type, cond in conds)
            conn.exec_driver_sql(
                "SELECT count(pg_advisory_xact_lock(h)) FROM"
                " (SELECT hashtext(k) AS h FROM unnest(%s::text[]) AS k ORDER BY 1) AS locks",
                (keys,),
            )
        found = self._by_identifiers(conn, list(wanted))
        for key, conds in wanted.items():
            for entry in conds:
                self._matches[entry] = found.get(key, [])

    def _match(self, conn: Connection, res_type: str, query: str, *, lock: bool = True) -> list[Stored]:
        """`lock`: for a conditional write; a plain look-up outside a write transaction needs none."""
        settled = self._matches.get((res_type, query))
        if settled is not None:
            return settled
        if self._writer is not None and self._writer.conn is conn:
            self._writer.flush()  # what this transaction wrote so far must be found
        if lock and conn.dialect.name == "postgresql":
            # Serialise conditional creates/updates with the same condition until commit, so two
            # concurrent ones cannot both find nothing and both create.
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"{res_type}?{query}",))
        pairs = parse_qsl(query.split("?", 1)[-1], keep_blank_values=True)
        if not pairs:
            raise invalid("a conditional operation needs search parameters")
        if len(pairs) == 1 and pairs[0][0] == "identifier":
            found = self._match_identifier(conn, res_type, pairs[0][1])
            if found is not None:
                return found
        req = parse_search(res_type, pairs)
        req.count = 2
        req.total = "none"
        page = builder.run(conn, req, BuildContext(self.base_url, now_us()), self.access.match_filter)
        return page.rows


def _plain_identifier(value: str) -> tuple[str, str] | None:
    """`system|value` with nothing that needs the search engine (no list, no escapes), as indexed."""
    system, _, code = value.partition("|")
    if not system or not code or "," in value or "\\" in value:
        return None
    return cut(system), cut(code)


def _type_of(res: Any) -> str:
    if not isinstance(res, dict) or not isinstance(res.get("resourceType"), str):
        raise invalid("the body is not a FHIR resource (no resourceType)")
    check_type(res["resourceType"])
    return res["resourceType"]


def _pat(s: Stored) -> list[str]:
    return [s.patient] if s.patient else []


def _history_row(row: Any) -> Stored:
    return row_to_stored(row)


def _query_text(req: SearchRequest) -> str:
    return "&".join(f"{k}={v}" for k, v in req.pairs)[:2000]
