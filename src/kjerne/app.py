"""Assembles the ASGI application."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from kjerne.api import fhir_routes, ingest_routes
from kjerne.api.connections import RecycleConnections
from kjerne.api.render import error_response, outcome_response
from kjerne.config import Settings
from kjerne.fhir.outcome import FhirError, Issue
from kjerne.store.db import make_engine
from kjerne.store.repository import Repository

log = logging.getLogger("kjerne")


async def _fhir_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, FhirError)
    repo = getattr(request.state, "repository", None)
    policy = getattr(request.state, "policy", None)
    if repo is not None and policy is not None and not exc.audited and policy.recorded == 0 and exc.status < 500:
        # Every access attempt leaves an entry: a request refused in the route (a patient outside the
        # attestation, a malformed search) is audited here when nothing else did.
        from starlette.concurrency import run_in_threadpool

        from kjerne.access.context import AccessRecord

        rec = AccessRecord(
            "read" if request.method == "GET" else "write",
            None,
            "denied",
            [],
            detail=f"{request.method} {request.url.path}: {exc}"[:500],
        )
        await run_in_threadpool(repo.deny, rec, exc)
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not-found", 405: "not-supported"}.get(exc.status_code, "processing")
    return outcome_response(exc.status_code, [Issue(code, str(exc.detail))])


async def _database_error(request: Request, exc: Exception) -> Response:
    """The database went away or refused the connection: a transient 503 the client may retry, not a
    500. Any other database error is a fault of ours."""
    assert isinstance(exc, DBAPIError)
    if not (exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError)):
        return await _unexpected(request, exc)
    log.warning("database unavailable on %s %s: %s", request.method, request.url.path, exc.orig)
    response = outcome_response(503, [Issue("transient", "the database is unavailable; try again shortly")])
    response.headers["Retry-After"] = "1"
    return response


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return outcome_response(500, [Issue("exception", "the server could not complete the request; it has been logged")])


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def smart_configuration(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    return JSONResponse(
        {
            "issuer": "urn:kjerne:dev-issuer" if settings.dev else None,
            "jwks_uri": settings.public_base() + "/dev-issuer/jwks" if settings.dev else None,
            "grant_types_supported": ["client_credentials", "authorization_code"],
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            "scopes_supported": [
                "patient/*.read",
                "user/*.read",
                "system/*.write",
                "user/Consent.write",
                "patient/Consent.write",
                "patient/AuditEvent.read",
                "system/AuditEvent.read",
            ],
            "capabilities": ["client-confidential-asymmetric", "permission-v1", "permission-v2"],
            "code_challenge_methods_supported": ["S256"],
        }
    )


@asynccontextmanager
async def _warm_up(app: Starlette) -> AsyncIterator[None]:
    """Compile the message schemas before the first request rather than inside it: a cold server's
    first messages would otherwise all wait for (and race to) the compilation."""
    from starlette.concurrency import run_in_threadpool

    from kjerne.services.provesvar.svarrapport_schema import apprec_validator, validator

    await run_in_threadpool(validator)
    await run_in_threadpool(apprec_validator)
    sweep = asyncio.create_task(_sweep_reservations(app))
    try:
        yield
    finally:
        sweep.cancel()


RESERVATION_SWEEP_SECONDS = 300


async def _sweep_reservations(app: Starlette) -> None:
    """A reservasjon with a later start deletes its data when it comes into force (store.reservations)."""
    from starlette.concurrency import run_in_threadpool

    from kjerne.store.reservations import purge_due

    while True:
        await asyncio.sleep(RESERVATION_SWEEP_SECONDS)
        try:
            await run_in_threadpool(purge_due, app.state.engine)
        except Exception:  # the next sweep tries again; the data is hidden from its start meanwhile
            log.exception("reservation sweep failed")


def create_app(
    settings: Settings | None = None,
    *,
    engine: Engine | None = None,
    repository_factory: Callable[[Request], Repository] | None = None,
) -> Starlette:
    settings = settings or Settings.from_env()
    engine = engine or make_engine(settings.db_url)

    routes = [
        Route("/health", health),
        Route("/.well-known/smart-configuration", smart_configuration),
        Mount("/fhir", routes=fhir_routes.routes),
    ]
    gate = None
    if repository_factory is None:
        from kjerne.api.auth import Gate, build_verifier, dev_issuer

        gate = Gate(engine, build_verifier(settings), settings.fhir_base())
        repository_factory = gate.repository
        routes.extend(ingest_routes.routes)
        if settings.dev:
            jwks = dev_issuer(settings).jwks()
            routes.append(Route("/dev-issuer/jwks", lambda request: JSONResponse(jwks)))

    from kjerne.web.app import routes as portal_routes

    routes.extend(portal_routes(settings, engine))
    app = Starlette(
        routes=routes,
        middleware=[Middleware(RecycleConnections, every=settings.keepalive_requests)],
        exception_handlers={
            FhirError: _fhir_error,
            HTTPException: _http_error,
            DBAPIError: _database_error,
            Exception: _unexpected,
        },
        lifespan=_warm_up if gate is not None else None,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.repository_factory = repository_factory
    app.state.gate = gate
    return app


def asgi() -> Any:
    """Entry point for `uvicorn --factory kjerne.app:asgi` (used by `kjerne serve --workers N`)."""
    return create_app()
