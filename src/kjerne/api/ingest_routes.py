"""Producer endpoints: /ingest/svarrapport and /ingest/hl7v2, and producer coverage at /stats/producers."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kjerne.access.policy import AccessPolicy
from kjerne.access.principal import Principal
from kjerne.api.auth import Gate, request_info
from kjerne.api.body import media_type, raw_body
from kjerne.api.render import FhirResponse
from kjerne.api.write_slots import run_write
from kjerne.fhir.outcome import FhirError, Issue, operation_outcome
from kjerne.services.ingest_log import producer_stats
from kjerne.store.repository import Repository

XML_TYPES = ("application/xml", "text/xml", "application/xml+msghead")


def _gate(request: Request) -> Gate:
    gate = getattr(request.app.state, "gate", None)
    if gate is None:
        raise FhirError.of(503, "transient", "ingest is not configured on this server")
    return gate


def _producer(request: Request, res_type: str = "DiagnosticReport") -> tuple[Principal, Repository]:
    gate = _gate(request)
    principal = gate.principal(request)
    if principal.kind != "system" or not principal.can(res_type, "write"):
        raise FhirError.of(403, "forbidden", "ingest takes a producer's system token with system/*.write")
    policy = AccessPolicy(gate.engine, principal, request_info(request, channel="ingest"))
    return principal, Repository(gate.engine, policy, base_url=gate.fhir_base)


def _wants_fhir(request: Request) -> bool:
    return "fhir+json" in request.headers.get("accept", "")


async def svarrapport(request: Request) -> Response:
    from kjerne.services.provesvar.ingest import ingest_svarrapport

    principal, repo = await run_in_threadpool(_producer, request)
    if media_type(request) not in XML_TYPES:
        raise FhirError.of(415, "not-supported", "send the Svarrapport as application/xml")
    body = await raw_body(request, request.app.state.settings.max_body_bytes)
    receipt = await run_write(request, ingest_svarrapport, repo, body, principal.org or principal.subject)
    if _wants_fhir(request):
        severity = "error" if receipt.status == "rejected" else "information"
        issues = [
            Issue("invalid" if severity == "error" else "informational", r, severity=severity) for r in receipt.reasons
        ]
        issues = issues or [Issue("informational", f"received ({receipt.status})", severity="information")]
        return FhirResponse(operation_outcome(issues), status_code=receipt.http_status)
    return Response(receipt.body, status_code=receipt.http_status, media_type="application/xml")


async def hl7v2(request: Request) -> Response:
    from kjerne.services.provesvar.ingest import ingest_hl7v2

    principal, repo = await run_in_threadpool(_producer, request)
    if media_type(request) not in (
        "application/hl7-v2",
        "x-application/hl7-v2+er7",
        "text/plain",
        "application/edi-hl7",
    ):
        raise FhirError.of(415, "not-supported", "send the message as application/hl7-v2")
    body = await raw_body(request, request.app.state.settings.max_body_bytes)
    receipt = await run_write(request, ingest_hl7v2, repo, body, principal.org or principal.subject)
    return Response(receipt.body, status_code=receipt.http_status, media_type="application/hl7-v2")


async def maledata(request: Request) -> Response:
    """PMD-style upload: a batch Bundle of Observations, fullUrl on every entry; one status per entry,
    in order. An entry that carries an identifier is created once however often it is delivered."""
    from urllib.parse import quote

    from kjerne.api.body import json_body
    from kjerne.services.maledata.bundle_rules import check_pmd_bundle
    from kjerne.store.bundles import BundleProcessor

    _, repo = await run_in_threadpool(_producer, request, "Observation")
    bundle = await json_body(request, request.app.state.settings.max_body_bytes)
    issues = check_pmd_bundle(bundle)
    if issues:
        raise FhirError(400, issues)

    def once_per_identifier(i: int, entry: dict) -> None:
        req, res = entry["request"], entry.get("resource") or {}
        if req.get("method") == "POST" and not req.get("ifNoneExist"):
            ident = next((x for x in res.get("identifier", []) if x.get("system") and x.get("value")), None)
            if ident is not None:
                req["ifNoneExist"] = f"identifier={quote(ident['system'], safe=':/')}|{quote(ident['value'], safe='')}"

    processor = BundleProcessor(repo, minimal="return=minimal" in request.headers.get("prefer", ""), serialised=True)
    response = await run_write(request, processor.batch, bundle, prepare=once_per_identifier)
    return FhirResponse(response)


async def stats(request: Request) -> Response:
    gate = _gate(request)
    principal = await run_in_threadpool(gate.principal, request)
    if principal.kind != "system" or not principal.can("AuditEvent", "read"):
        raise FhirError.of(403, "forbidden", "producer statistics need an operator token (system/AuditEvent.read)")
    days = request.query_params.get("days", "30")
    if not days.isdigit() or not 1 <= int(days) <= 366:
        raise FhirError.of(400, "invalid", "days must be 1-366")
    return JSONResponse(
        {"days": int(days), "producers": await run_in_threadpool(producer_stats, gate.engine, days=int(days))}
    )


routes = [
    Route("/ingest/svarrapport", svarrapport, methods=["POST"]),
    Route("/ingest/hl7v2", hl7v2, methods=["POST"]),
    Route("/ingest/maledata", maledata, methods=["POST"]),
    Route("/stats/producers", stats, methods=["GET"]),
]
