"""Bundle processing: `transaction` (all or nothing, urn:uuid references resolved) and `batch`
(independent entries, each with its own status)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import orjson
from sqlalchemy.exc import DBAPIError

from kjerne.access.context import AccessRecord
from kjerne.fhir.model import resource_types
from kjerne.fhir.outcome import FhirError, Issue, invalid
from kjerne.store.ids import new_id
from kjerne.store.records import Stored
from kjerne.store.repository import Repository, _type_of
from kjerne.store.writer import Writer, WriteResult

_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "GET": 3, "HEAD": 3}


def _status(result: WriteResult | None, method: str) -> str:
    if method == "DELETE":
        return "204 No Content"
    assert result is not None
    if result.created:
        return "201 Created"
    return "200 OK"


def _response(result: WriteResult | None, method: str) -> dict[str, Any]:
    out: dict[str, Any] = {"status": _status(result, method)}
    if result is not None:
        s = result.stored
        out.update(location=s.location, etag=s.etag, lastModified=s.last_modified)
    return out


def _parse_url(url: str, where: str) -> tuple[str, str | None, str | None]:
    """'Type', 'Type/id', 'Type?query' → (type, id, query)."""
    path, _, query = url.partition("?")
    parts = [p for p in path.split("/") if p]
    if not parts or parts[0] not in resource_types():
        raise invalid(f"request.url '{url}' does not name a resource type", where)
    if len(parts) > 2:
        raise invalid(f"request.url '{url}' is not supported in a bundle", where)
    return parts[0], parts[1] if len(parts) == 2 else None, query or None


def _entries(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        raise invalid("Bundle.entry must be an array", "Bundle.entry")
    for i, e in enumerate(entries):
        if not isinstance(e, dict):
            raise invalid("a Bundle entry must be an object", f"Bundle.entry[{i}]")
    return entries


def check_full_urls(entries: list[dict[str, Any]]) -> None:
    seen: dict[str, int] = {}
    for i, e in enumerate(entries):
        full = e.get("fullUrl")
        if full is None:
            continue
        if full in seen:
            raise invalid(
                f"fullUrl '{full}' appears twice (entries {seen[full]} and {i})", f"Bundle.entry[{i}].fullUrl"
            )
        seen[full] = i


def _rewrite(node: Any, mapping: dict[str, str], where: str, problems: list[Issue]) -> Any:
    """Resolve urn:uuid / urn:oid references in place (the entry's resource is replaced anyway), and
    only descend into objects and arrays: a resource has many more leaves than containers."""
    if isinstance(node, dict):
        for k, v in node.items():
            if isinstance(v, str):
                if k == "reference" and v.startswith(("urn:uuid:", "urn:oid:")):
                    if v in mapping:
                        node[k] = mapping[v]
                    elif v.startswith("urn:uuid:"):
                        problems.append(
                            Issue("not-found", f"reference '{v}' does not match any fullUrl in the transaction", where)
                        )
            elif isinstance(v, _CONTAINERS):
                _rewrite(v, mapping, where, problems)
    elif isinstance(node, list):
        for item in node:
            if isinstance(item, _CONTAINERS):
                _rewrite(item, mapping, where, problems)
    return node


_CONTAINERS = (dict, list)


class BundleProcessor:
    def __init__(self, repo: Repository, *, minimal: bool = False, serialised: bool = False) -> None:
        """`minimal` (the client's `Prefer: return=minimal`): each written entry answers with its status,
        location and version only, not the stored resource. `serialised`: written resources go into the
        response as their stored JSON (orjson fragments), for a caller that only serialises the response:
        parsing them to serialise them again cost more than the rest of building it."""
        self.repo = repo
        self.minimal = minimal
        self.serialised = serialised

    def _written(self, stored: Stored) -> Any:
        return orjson.Fragment(stored.content) if self.serialised else stored.resource()

    def process(self, bundle: Any) -> dict[str, Any]:
        if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
            raise invalid("POST to the base URL takes a Bundle")
        kind = bundle.get("type")
        if kind == "transaction":
            return self.transaction(bundle)
        if kind == "batch":
            return self.batch(bundle)
        raise invalid(f"Bundle.type must be transaction or batch, not '{kind}'", "Bundle.type")

    # -- transaction --------------------------------------------------------------------------
    def transaction(
        self, bundle: dict[str, Any], *, after: Callable[[Writer, list[Stored]], None] | None = None
    ) -> dict[str, Any]:
        """`after` runs inside the transaction once every entry is written, with the stored versions."""
        entries = _entries(bundle)
        check_full_urls(entries)
        plan: list[tuple[int, str, dict[str, Any]]] = []
        for i, e in enumerate(entries):
            req = e.get("request")
            if not isinstance(req, dict) or req.get("method") not in _ORDER or not isinstance(req.get("url"), str):
                raise invalid(
                    "each transaction entry needs request.method and request.url", f"Bundle.entry[{i}].request"
                )
            plan.append((i, req["method"], e))
            if req["method"] in ("POST", "PUT"):
                res = e.get("resource")
                if not isinstance(res, dict):
                    raise invalid("POST and PUT entries need a resource", f"Bundle.entry[{i}].resource")
                action = "create" if req["method"] == "POST" else "update"
                self.repo._check_write(action, _type_of(res), res, req["url"])
            elif req["method"] == "DELETE":
                res_type = _parse_url(req["url"], f"Bundle.entry[{i}].request.url")[0]
                self.repo._check_write("delete", res_type, None, req["url"])
        responses: dict[int, dict[str, Any]] = {}
        reads: list[tuple[int, dict[str, Any]]] = []
        with self.repo.writing() as writer:
            conn = writer.conn
            mapping: dict[str, str] = {}
            targets: dict[int, tuple[str, str | None, bool]] = {}  # entry → (type, id, skip)
            fresh: set[int] = set()  # entries whose id was made here: nothing to look up
            self.repo.preload_matches(conn, _transaction_conditions(plan))
            # First pass: decide every new id so references can be rewritten before anything is stored.
            for i, method, e in sorted(plan, key=lambda p: _ORDER[p[1]]):
                where = f"Bundle.entry[{i}]"
                url = e["request"]["url"]
                if method in ("GET", "HEAD"):
                    reads.append((i, e))
                    continue
                res_type, res_id, query = _parse_url(url, where + ".request.url")
                skip = False
                if method == "POST":
                    cond = e["request"].get("ifNoneExist")
                    res_id = None
                    if cond:
                        found = self.repo._match(conn, res_type, cond)
                        if len(found) > 1:
                            raise FhirError.of(412, "multiple-matches", f"{where}: ifNoneExist matched {len(found)}")
                        if found:
                            res_id, skip = found[0].res_id, True
                    if res_id is None:
                        res_id = new_id()
                        fresh.add(i)
                elif method == "PUT" and query:
                    found = self.repo._match(conn, res_type, query)
                    if len(found) > 1:
                        raise FhirError.of(412, "multiple-matches", f"{where}: the condition matched {len(found)}")
                    res_id = found[0].res_id if found else (e.get("resource") or {}).get("id")
                    if res_id is None:
                        res_id = new_id()
                        fresh.add(i)
                elif method == "DELETE" and query:
                    found = self.repo._match(conn, res_type, query)
                    res_id = found[0].res_id if found else None
                if res_id is None and method != "DELETE":
                    raise invalid("request.url needs an id", where + ".request.url")
                body_id = (e.get("resource") or {}).get("id")
                if method == "PUT" and not query and body_id not in (None, res_id):
                    raise invalid(
                        f"resource id '{body_id}' does not match the URL id '{res_id}'", where + ".resource.id"
                    )
                if method in ("POST", "PUT") and res_type == "Patient" and res_id:
                    writer.expect_patient(e.get("resource") or {}, res_id)
                targets[i] = (res_type, res_id, skip)
                full = e.get("fullUrl")
                if full and res_id:
                    mapping[full] = f"{res_type}/{res_id}"
            writer.reserve_rids(len(fresh))
            problems: list[Issue] = []
            for i, method, e in plan:
                if method in ("POST", "PUT") and i in targets:
                    e["resource"] = _rewrite(e["resource"], mapping, f"Bundle.entry[{i}].resource", problems)
            if problems:
                raise FhirError(400, problems)
            for i, method, e in sorted(plan, key=lambda p: _ORDER[p[1]]):
                if i not in targets:
                    continue
                res_type, res_id, skip = targets[i]
                try:
                    if method == "DELETE":
                        result = writer.delete(res_type, res_id) if res_id else None
                        responses[i] = _response(None, "DELETE")
                        continue
                    res = e["resource"]
                    if res.get("resourceType") != res_type:
                        raise invalid("resource type does not match request.url", f"Bundle.entry[{i}].resource")
                    if skip:
                        existing = writer.current(res_type, res_id)  # type: ignore[arg-type]
                        assert existing is not None
                        responses[i] = _response(WriteResult(existing, False, False), "POST")
                        continue
                    if_match = e["request"].get("ifMatch")
                    version = _etag_version(if_match) if if_match else None
                    result = writer.put(res, res_id, expected_version=version, fresh=i in fresh)  # type: ignore[arg-type]
                    responses[i] = _response(result, method)
                    responses[i]["_resource"] = result.stored
                except FhirError as err:
                    raise FhirError(err.status, [_at(issue, i) for issue in err.issues], audited=err.audited) from err
            written = [r["_resource"] for r in responses.values() if "_resource" in r]
            if after is not None:
                after(writer, written)
            self.repo._record_write(  # appended last, with the commit
                conn,
                AccessRecord(
                    "transaction",
                    "Bundle",
                    "allowed",
                    [s.location for s in written],
                    sorted({s.patient for s in written if s.patient}),
                ),
            )
        for i, e in reads:
            responses[i] = self._read_entry(e)
        out_entries = []
        for i in range(len(entries)):
            resp = responses.get(i, {"status": "200 OK"})
            stored = resp.pop("_resource", None)
            entry: dict[str, Any] = {"response": resp}
            if stored is not None:
                entry["fullUrl"] = f"{self.repo.base_url.rstrip('/')}/{stored.res_type}/{stored.res_id}"
                if not self.minimal:
                    entry["resource"] = self._written(stored)
            elif "_body" in resp:
                entry["resource"] = resp.pop("_body")
            out_entries.append(entry)
        return {"resourceType": "Bundle", "type": "transaction-response", "entry": out_entries}

    # -- batch --------------------------------------------------------------------------------
    def batch(
        self, bundle: dict[str, Any], *, prepare: Callable[[int, dict[str, Any]], None] | None = None
    ) -> dict[str, Any]:
        """Every entry stands alone: a failing entry gets its own OperationOutcome and the others are
        stored. The writes are tried all at once; if an entry fails, that transaction is rolled back
        and the writes run anew, each entry in a savepoint. Either way one commit. Reads run after it.
        `prepare` may adjust or refuse (FhirError) an entry first."""
        entries = _entries(bundle)
        check_full_urls(entries)
        reads = [i for i, e in enumerate(entries) if _is_read(e)]
        writes = [i for i in range(len(entries)) if i not in set(reads)]
        responses: dict[int, dict[str, Any]] | None = None
        try:
            with self.repo.writing() as writer, self.repo.merged_records(writer.conn):
                writer.auto_flush = False
                responses = self._writes_at_once(writer, entries, writes, prepare)
        except _OnePassFailed:
            responses = None  # its transaction was rolled back
        if responses is None:
            with self.repo.writing() as writer, self.repo.merged_records(writer.conn):
                writer.auto_flush = False
                responses = self._writes_one_by_one(writer, entries, writes, prepare)
        for i in reads:
            try:
                responses[i] = self._read_entry(entries[i])
            except FhirError as err:
                responses[i] = {"status": f"{err.status} {_REASON.get(err.status, 'Error')}", "outcome": err.outcome()}
        out = []
        for i, e in enumerate(entries):
            resp = responses[i]
            entry: dict[str, Any] = {}
            if e.get("fullUrl"):
                entry["fullUrl"] = e["fullUrl"]
            body = resp.pop("_body", None)
            if body is not None:
                entry["resource"] = body
            entry["response"] = resp
            out.append(entry)
        return {"resourceType": "Bundle", "type": "batch-response", "entry": out}

    def _writes_at_once(
        self,
        writer: Writer,
        entries: list[dict[str, Any]],
        writes: list[int],
        prepare: Callable[[int, dict[str, Any]], None] | None,
    ) -> dict[int, dict[str, Any]]:
        """The usual case, where every entry is good: no savepoint at all, and the entries' `identifier=`
        conditions looked up together. Raises _OnePassFailed when an entry fails; the caller's transaction
        is then rolled back and the entries are written one by one in a new one."""
        conn = writer.conn
        try:
            if prepare is not None:
                for i in writes:
                    prepare(i, entries[i])
            self.repo.preload_matches(conn, _conditions(entries, writes))
            writer.reserve_rids(len(writes))
            out = {i: self._batch_write(writer, i, entries[i]) for i in writes}
            writer.flush()
            return out
        except (FhirError, DBAPIError) as exc:
            raise _OnePassFailed from exc

    def _writes_one_by_one(
        self,
        writer: Writer,
        entries: list[dict[str, Any]],
        writes: list[int],
        prepare: Callable[[int, dict[str, Any]], None] | None,
    ) -> dict[int, dict[str, Any]]:
        """Each entry in its own savepoint, so a failing one leaves the others stored."""
        responses: dict[int, dict[str, Any]] = {}
        for i in writes:
            e = entries[i]
            # What earlier entries buffered is written before this entry's savepoint opens: a flush
            # inside it (a conditional write flushes) would be undone with this entry.
            writer.flush()
            mark, records = writer.mark(), self.repo.record_mark()
            try:
                if prepare is not None:
                    prepare(i, e)
                with writer.conn.begin_nested():
                    responses[i] = self._batch_write(writer, i, e)
            except FhirError as err:
                writer.rollback_to(mark)
                self.repo.forget_since(records)
                if err.status == 403 and not err.audited:
                    self.repo._record(writer.conn, AccessRecord("write", None, "denied", [], detail=str(err)[:500]))
                responses[i] = {
                    "status": f"{err.status} {_REASON.get(err.status, 'Error')}",
                    "outcome": err.outcome(),
                }
        return responses

    def _batch_write(self, writer: Writer, i: int, e: dict[str, Any]) -> dict[str, Any]:
        req = e.get("request")
        where = f"Bundle.entry[{i}]"
        if isinstance(req, dict) and req.get("method") == "PATCH":
            raise FhirError.of(400, "not-supported", "PATCH is not supported", where + ".request.method")
        if not isinstance(req, dict) or req.get("method") not in _ORDER or not isinstance(req.get("url"), str):
            raise invalid("each batch entry needs request.method and request.url", where + ".request")
        method = req["method"]
        res_type, res_id, query = _parse_url(req["url"], where + ".request.url")
        repo = self.repo
        if method == "DELETE":
            if res_id is None:
                raise invalid("DELETE needs Type/id", where + ".request.url")
            repo.check_write_in(writer, "delete", res_type, None, f"{res_type}/{res_id}")
            repo.delete_in(writer, res_type, res_id)
            return {"status": "204 No Content"}
        res = e.get("resource")
        if not isinstance(res, dict):
            raise invalid("POST and PUT entries need a resource", where + ".resource")
        if res.get("resourceType") != res_type:
            raise invalid("resource type does not match request.url", where + ".resource")
        if b"urn:uuid:" in orjson.dumps(res):  # nothing to resolve in a batch; such references are errors
            problems: list[Issue] = []
            res = _rewrite(res, {}, where + ".resource", problems)
            if problems:
                raise FhirError(400, problems)
        try:
            if method == "POST":
                repo.check_write_in(writer, "create", res_type, res, res_type)
                result = repo.create_in(writer, res, if_none_exist=req.get("ifNoneExist"))
            elif query:
                repo.check_write_in(writer, "update", res_type, res, f"{res_type}?{query}")
                result = repo.conditional_update_in(writer, res, query)
            else:
                if res_id is None:
                    raise invalid("PUT needs Type/id or Type?search-parameters", where + ".request.url")
                if res.get("id") not in (None, res_id):
                    raise invalid(
                        f"resource id '{res.get('id')}' does not match the URL id '{res_id}'", where + ".resource.id"
                    )
                repo.check_write_in(writer, "update", res_type, res, f"{res_type}/{res_id}")
                if_match = req.get("ifMatch")
                result = repo.update_in(writer, res, res_id, if_match=_etag_version(if_match) if if_match else None)
        except FhirError as err:
            raise FhirError(err.status, [_at(issue, i) for issue in err.issues], audited=err.audited) from None
        resp = _response(result, method)
        if not self.minimal:
            resp["_body"] = self._written(result.stored)
        return resp

    def _read_entry(self, e: dict[str, Any]) -> dict[str, Any]:
        url = e["request"]["url"]
        res_type, res_id, query = _parse_url(url, "request.url")
        if res_id:
            stored = self.repo.read(res_type, res_id)
            return {"status": "200 OK", "etag": stored.etag, "_body": stored.resource()}
        from kjerne.api.render import search_bundle

        result = self.repo.search(res_type, parse_qsl(query or "", keep_blank_values=True))
        return {"status": "200 OK", "_body": search_bundle(result, self.repo.base_url, res_type)}


class _OnePassFailed(Exception):
    """An entry of a batch failed while all were written in one pass."""


def _is_read(e: dict[str, Any]) -> bool:
    req = e.get("request")
    return isinstance(req, dict) and req.get("method") in ("GET", "HEAD")


def _conditions(entries: list[dict[str, Any]], writes: list[int]) -> list[tuple[str, str]]:
    out = []
    for i in writes:
        req, res = entries[i].get("request"), entries[i].get("resource")
        if isinstance(req, dict) and req.get("method") == "POST" and isinstance(res, dict):
            cond = req.get("ifNoneExist")
            if isinstance(cond, str) and isinstance(res.get("resourceType"), str):
                out.append((res["resourceType"], cond))
    return out


def _transaction_conditions(plan: list[tuple[int, str, dict[str, Any]]]) -> list[tuple[str, str]]:
    out = []
    for _, method, e in plan:
        url = e["request"]["url"]
        if method == "POST" and isinstance(e["request"].get("ifNoneExist"), str):
            out.append((url.split("?", 1)[0].strip("/"), e["request"]["ifNoneExist"]))
        elif method in ("PUT", "DELETE") and "?" in url:
            res_type, query = url.split("?", 1)
            out.append((res_type.strip("/"), query))
    return out


def _at(issue: Issue, i: int) -> Issue:
    expr = issue.expression
    if expr and not expr.startswith("Bundle"):
        expr = f"Bundle.entry[{i}].resource.{expr.split('.', 1)[1]}" if "." in expr else f"Bundle.entry[{i}].resource"
    return Issue(
        issue.code,
        f"entry {i}: {issue.diagnostics}",
        expr or f"Bundle.entry[{i}]",
        issue.severity,
        issue.details_code,
        issue.details_system,
    )


def _etag_version(etag: str) -> int:
    raw = etag.strip()
    if raw.startswith("W/"):
        raw = raw[2:]
    raw = raw.strip('"')
    if not raw.isdigit():
        raise invalid(f"'{etag}' is not a version ETag", "If-Match")
    return int(raw)


_REASON = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    410: "Gone",
    412: "Precondition Failed",
    413: "Payload Too Large",
    422: "Unprocessable Entity",
}
