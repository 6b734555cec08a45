"""Responses: FHIR JSON bodies, search bundles, and result shaping (_elements, _summary)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import orjson
from starlette.responses import Response

from kjerne.fhir.outcome import FhirError, operation_outcome
from kjerne.store.records import Stored
from kjerne.store.repository import SearchResult
from kjerne.store.search.cursor import Cursor

FHIR_JSON = "application/fhir+json"
_MANDATORY = ("resourceType", "id", "meta")
SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}


class FhirResponse(Response):
    media_type = FHIR_JSON

    def render(self, content: Any) -> bytes:
        if isinstance(content, bytes):
            return content
        return orjson.dumps(content)


def error_response(err: FhirError) -> FhirResponse:
    return FhirResponse(err.outcome(), status_code=err.status, headers=err.headers or None)


def outcome_response(status: int, issues: list[Any]) -> FhirResponse:
    return FhirResponse(operation_outcome(issues), status_code=status)


def shape(res: dict[str, Any], elements: tuple[str, ...], summary: str | None) -> dict[str, Any]:
    if elements:
        keep = set(elements) | set(_MANDATORY)
        out = {k: v for k, v in res.items() if k in keep}
        meta = dict(out.get("meta") or {})
        meta["tag"] = [*meta.get("tag", []), SUBSETTED]
        out["meta"] = meta
        return out
    if summary in ("data", "true"):
        return {k: v for k, v in res.items() if k != "text"}
    if summary == "text":
        return {k: res[k] for k in ("resourceType", "id", "meta", "text") if k in res}
    return res


def _link(base: str, res_type: str, pairs: list[tuple[str, str]], cursor: Cursor | None) -> str:
    kept = [(k, v) for k, v in pairs if k != "_cursor"]
    if cursor is not None:
        kept.append(("_cursor", cursor.encode()))
    query = urlencode(kept)
    return f"{base.rstrip('/')}/{res_type}" + (f"?{query}" if query else "")


def entry(
    s: Stored, base: str, mode: str | None, elements: tuple[str, ...] = (), summary: str | None = None
) -> dict[str, Any]:
    e: dict[str, Any] = {
        "fullUrl": f"{base.rstrip('/')}/{s.res_type}/{s.res_id}",
        "resource": shape(s.resource(), elements, summary),
    }
    if mode:
        e["search"] = {"mode": mode}
    return e


def search_bundle(
    result: SearchResult, base: str, res_type: str, extra_outcome: dict[str, Any] | None = None
) -> dict[str, Any]:
    req, page = result.request, result.page
    link_pairs = req.link_pairs if req.link_pairs is not None else req.pairs
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
    if page.total is not None:
        bundle["total"] = page.total
    links = [{"relation": "self", "url": _link(base, res_type, link_pairs, None)}]
    if page.next is not None:
        links.append({"relation": "next", "url": _link(base, res_type, link_pairs, page.next)})
    if page.previous is not None:
        links.append({"relation": "previous", "url": _link(base, res_type, link_pairs, page.previous)})
    bundle["link"] = links
    entries = [entry(s, base, "match", req.elements, req.summary) for s in page.rows]
    entries += [entry(s, base, "include", (), None) for s in result.included]
    if req.ignored or extra_outcome:
        issues = [
            {"severity": "warning", "code": "not-supported", "diagnostics": f"ignored search parameter '{n}'"}
            for n in req.ignored
        ]
        if extra_outcome:
            issues += extra_outcome.get("issue", [])
        entries.append(
            {"resource": {"resourceType": "OperationOutcome", "issue": issues}, "search": {"mode": "outcome"}}
        )
    if entries:
        bundle["entry"] = entries
    return bundle
