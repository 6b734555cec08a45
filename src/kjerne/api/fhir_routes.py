"""The FHIR REST interactions at /fhir. Routes stay thin: parse, call the repository, render."""

from __future__ import annotations

import re
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.routing import Route

from kjerne.api.body import form_pairs, json_body
from kjerne.api.render import FhirResponse, search_bundle
from kjerne.api.write_slots import run_write
from kjerne.fhir.capability import capability_statement
from kjerne.fhir.outcome import FhirError, invalid
from kjerne.store.bundles import BundleProcessor, _etag_version
from kjerne.store.clock import us_to_instant
from kjerne.store.records import Stored
from kjerne.store.repository import Repository
from kjerne.store.search.request import parse as parse_search
from kjerne.store.writer import WriteResult


def scope_to_person(
    repo: Repository, res_type: str, pairs: list[tuple[str, str]], person_id: str | None
) -> list[tuple[str, str]]:
    """The `person-id` header names the patient without putting the national id in the URL."""
    policy = repo.access
    named = [
        v.split("/", 1)[1]
        for k, value in pairs
        if k.split(":", 1)[0] in ("patient", "subject") and "." not in k
        for v in value.split(",")
        if v.startswith("Patient/")
    ]
    if named and hasattr(policy, "check_patient_ids"):
        policy.check_patient_ids(named)
    if person_id is None:
        return pairs
    if not hasattr(policy, "patients_for"):
        raise invalid("person-id is not accepted here")
    ids = policy.patients_for(person_id.strip()) or ["unknown-person"]
    if res_type == "Patient":
        return [*pairs, ("_id", ",".join(ids))]
    from kjerne.fhir.searchparams import registry

    param = (
        "patient" if registry().get(res_type, "patient") else "subject" if registry().get(res_type, "subject") else None
    )
    if param is None:
        raise invalid(f"{res_type} has no patient to scope by person-id")
    return [*pairs, (param, ",".join(f"Patient/{i}" for i in ids))]


_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def checked_id(value: str) -> str:
    if not _ID.fullmatch(value):
        raise invalid(f"'{value[:80]}' is not a valid FHIR id", "id")
    return value


def repo_for(request: Request) -> Repository:
    factory = request.app.state.repository_factory
    return factory(request)


def settings(request: Request) -> Any:
    return request.app.state.settings


def base_url(request: Request) -> str:
    return str(request.app.state.settings.fhir_base())


def lenient(request: Request) -> bool:
    return "handling=lenient" in request.headers.get("prefer", "").replace(" ", "")


def _headers(s: Stored) -> dict[str, str]:
    return {
        "ETag": s.etag,
        "Last-Modified": s.last_modified,
        "Location": f"{s.res_type}/{s.res_id}/_history/{s.version}",
    }


def _written(request: Request, result: WriteResult, base: str) -> FhirResponse:
    s = result.stored
    headers = _headers(s)
    headers["Location"] = f"{base}/{s.location}"
    status = 201 if result.created else 200
    prefer = request.headers.get("prefer", "")
    if "return=minimal" in prefer:
        return FhirResponse(b"", status_code=status, headers=headers)
    return FhirResponse(s.content, status_code=status, headers=headers)


def _search_pairs(request: Request) -> list[tuple[str, str]]:
    return list(request.query_params.multi_items())


async def metadata(request: Request) -> FhirResponse:
    return FhirResponse(capability_statement(base_url(request)))


async def search(request: Request) -> FhirResponse:
    res_type = request.path_params["type"]
    pairs = _search_pairs(request)
    if request.method == "POST":
        pairs += await form_pairs(request, settings(request).max_body_bytes)
    repo = await run_in_threadpool(repo_for, request)
    scoped = scope_to_person(repo, res_type, pairs, request.headers.get("person-id"))
    result = await run_in_threadpool(repo.search, res_type, scoped, lenient=lenient(request), link_pairs=pairs)
    withheld = getattr(repo.access, "withheld_outcome", None)
    return FhirResponse(search_bundle(result, base_url(request), res_type, withheld() if withheld else None))


async def type_root(request: Request) -> FhirResponse:
    if request.method == "GET":
        return await search(request)
    res_type = request.path_params["type"]
    body = await json_body(request, settings(request).max_body_bytes)
    if body.get("resourceType") != res_type:
        raise invalid(f"the body is a {body.get('resourceType')!r}, the URL says {res_type}", "resourceType")
    repo = await run_in_threadpool(repo_for, request)
    if request.method == "POST":
        result = await run_in_threadpool(repo.create, body, if_none_exist=request.headers.get("if-none-exist"))
        return _written(request, result, base_url(request))
    # PUT on the type: conditional update
    query = str(request.url.query)
    if not query:
        raise invalid("conditional update needs search parameters, e.g. ?identifier=system|value")
    parse_search(res_type, list(request.query_params.multi_items()))
    result = await run_in_threadpool(repo.conditional_update, body, query)
    return _written(request, result, base_url(request))


async def instance(request: Request) -> FhirResponse:
    res_type, res_id = request.path_params["type"], checked_id(request.path_params["id"])
    if request.method == "PUT":
        body = await json_body(request, settings(request).max_body_bytes)
    repo = await run_in_threadpool(repo_for, request)
    if request.method == "GET":
        s = await run_in_threadpool(repo.read, res_type, res_id)
        return FhirResponse(s.content, headers=_headers(s))
    if request.method == "DELETE":
        await run_in_threadpool(repo.delete, res_type, res_id)
        return FhirResponse(b"", status_code=204)
    if body.get("resourceType") != res_type:
        raise invalid(f"the body is a {body.get('resourceType')!r}, the URL says {res_type}", "resourceType")
    if_match = request.headers.get("if-match")
    version = _etag_version(if_match) if if_match else None
    result = await run_in_threadpool(repo.update, body, res_id, if_match=version)
    return _written(request, result, base_url(request))


async def vread(request: Request) -> FhirResponse:
    p = request.path_params
    vid = p["vid"]
    checked_id(p["id"])
    if not vid.isdigit() or len(vid) > 9:
        raise FhirError.of(404, "not-found", f"version '{vid}' is not known")
    repo = await run_in_threadpool(repo_for, request)
    s = await run_in_threadpool(repo.vread, p["type"], p["id"], int(vid))
    return FhirResponse(s.content, headers=_headers(s))


def _history_bundle(request: Request, rows: list[Stored], next_key: tuple[int, int, int] | None) -> dict[str, Any]:
    from kjerne.store.search.cursor import Cursor

    base = base_url(request)
    entries = []
    for s in rows:
        e: dict[str, Any] = {
            "fullUrl": f"{base}/{s.res_type}/{s.res_id}",
            "request": {
                "method": "DELETE" if s.deleted else ("POST" if s.version == 1 else "PUT"),
                "url": f"{s.res_type}/{s.res_id}" if s.version > 1 or s.deleted else s.res_type,
            },
            "response": {
                "status": "204" if s.deleted else ("201" if s.version == 1 else "200"),
                "etag": s.etag,
                "lastModified": us_to_instant(s.last_updated),
            },
        }
        if not s.deleted:
            e["resource"] = s.resource()
        entries.append(e)
    links = [{"relation": "self", "url": str(request.url)}]
    if next_key is not None:
        pairs = [(k, v) for k, v in request.query_params.multi_items() if k != "_cursor"]
        from urllib.parse import urlencode

        pairs.append(("_cursor", Cursor(keys=next_key).encode()))
        links.append(
            {
                "relation": "next",
                "url": f"{request.url.remove_query_params(list(request.query_params.keys()))}?{urlencode(pairs)}",
            }
        )
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "history", "link": links}
    if entries:
        bundle["entry"] = entries
    return bundle


async def history(request: Request) -> FhirResponse:
    from kjerne.store.indexing import date_range

    p = request.path_params
    if "id" in p:
        checked_id(p["id"])
    q = request.query_params
    since = None
    if q.get("_since"):
        try:
            since = date_range(q["_since"].replace(" ", "+"))[0]
        except ValueError as exc:
            raise invalid(f"_since '{q['_since']}' is not a valid instant", "_since") from exc
    count = q.get("_count", "50")
    if not count.isdigit():
        raise invalid("_count must be a non-negative integer", "_count")
    repo = await run_in_threadpool(repo_for, request)
    result = await run_in_threadpool(
        repo.history, p.get("type"), p.get("id"), count=int(count), since_us=since, cursor=q.get("_cursor")
    )
    return FhirResponse(_history_bundle(request, result.rows, result.next_since))


async def system_root(request: Request) -> FhirResponse:
    body = await json_body(request, settings(request).max_body_bytes)
    repo = await run_in_threadpool(repo_for, request)
    processor = BundleProcessor(repo, minimal="return=minimal" in request.headers.get("prefer", ""), serialised=True)
    return FhirResponse(await run_write(request, processor.process, body))


async def audit_log(request: Request) -> FhirResponse:
    from kjerne.audit.reader import read_log

    q = request.query_params
    unknown = [k for k in q if k not in ("patient", "_count", "_cursor", "date")]
    if unknown and not lenient(request):
        raise invalid(f"AuditEvent search supports patient, date and _count; not {', '.join(unknown)}", unknown[0])
    repo = await run_in_threadpool(repo_for, request)
    patients = None
    if q.get("patient"):
        patients = [v.removeprefix("Patient/") for v in q["patient"].split(",")]
    count = q.get("_count", "50")
    if not count.isdigit():
        raise invalid("_count must be a non-negative integer", "_count")
    before = q.get("_cursor")
    if before is not None and not before.isdigit():
        raise invalid("_cursor is not a cursor this server issued", "_cursor")
    since = None
    if q.get("date"):
        from kjerne.store.indexing import date_range

        raw = q["date"].removeprefix("ge").replace(" ", "+")
        try:
            since = date_range(raw)[0]
        except ValueError as exc:
            raise invalid("date takes ge<date>", "date") from exc
    events, more = await run_in_threadpool(
        read_log,
        repo,
        patients,
        count=min(int(count), 1000),
        before_seq=int(before) if before else None,
        since_us=since,
    )
    base = base_url(request)
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "link": [{"relation": "self", "url": str(request.url)}],
        "entry": [
            {"fullUrl": f"{base}/AuditEvent/{e['id']}", "resource": e, "search": {"mode": "match"}} for e in events
        ],
    }
    if more is not None:
        from urllib.parse import urlencode

        pairs = [(k, v) for k, v in q.multi_items() if k != "_cursor"] + [("_cursor", str(more))]
        bundle["link"].append({"relation": "next", "url": f"{base}/AuditEvent?{urlencode(pairs)}"})
    return FhirResponse(bundle)


def _operations() -> list[Route]:
    from kjerne.api.operations import observation_stats, provesvar

    return [
        Route("/Observation/$cumulative", provesvar.cumulative_view, methods=["GET", "POST"]),
        Route("/ServiceRequest/$duplicate-check", provesvar.duplicate_check, methods=["GET", "POST"]),
        Route("/ServiceRequest/$requested", provesvar.requested, methods=["GET"]),
        Route("/Observation/$lastn", observation_stats.lastn, methods=["GET", "POST"]),
        Route("/Observation/$stats", observation_stats.stats, methods=["GET", "POST"]),
    ]


routes = [
    Route("/metadata", metadata, methods=["GET"]),
    Route("/", system_root, methods=["POST"]),
    Route("/_history", history, methods=["GET"]),
    Route("/AuditEvent", audit_log, methods=["GET"]),
    *_operations(),
    Route("/{type}/_search", search, methods=["POST"]),
    Route("/{type}/_history", history, methods=["GET"]),
    Route("/{type}/{id}/_history/{vid}", vread, methods=["GET"]),
    Route("/{type}/{id}/_history", history, methods=["GET"]),
    Route("/{type}/{id}", instance, methods=["GET", "PUT", "DELETE"]),
    Route("/{type}", type_root, methods=["GET", "POST", "PUT"]),
]
