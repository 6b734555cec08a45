"""Assembles the ASGI application."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from kjerne.api import fhir_routes
from kjerne.api.render import error_response, outcome_response
from kjerne.config import Settings
from kjerne.fhir.outcome import FhirError, Issue
from kjerne.store.db import make_engine
from kjerne.store.repository import Repository

log = logging.getLogger("kjerne")


async def _fhir_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, FhirError)
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not-found", 405: "not-supported"}.get(exc.status_code, "processing")
    return outcome_response(exc.status_code, [Issue(code, str(exc.detail))])


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return outcome_response(500, [Issue("exception", "the server could not complete the request; it has been logged")])


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def create_app(
    settings: Settings | None = None,
    *,
    engine: Engine | None = None,
    repository_factory: Callable[[Request], Repository] | None = None,
) -> Starlette:
    settings = settings or Settings.from_env()
    engine = engine or make_engine(settings.db_url)

    def default_factory(request: Request) -> Repository:
        return Repository(engine, base_url=settings.fhir_base())

    app = Starlette(
        routes=[Route("/health", health), Mount("/fhir", routes=fhir_routes.routes)],
        exception_handlers={FhirError: _fhir_error, HTTPException: _http_error, Exception: _unexpected},
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.repository_factory = repository_factory or default_factory
    return app


def asgi() -> Any:
    """Entry point for `uvicorn --factory kjerne.app:asgi` (used by `kjerne serve --workers N`)."""
    return create_app()
