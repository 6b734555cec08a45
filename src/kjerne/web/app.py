"""The two portals as routes for the one application.

`routes(settings, engine)` gives the landing page at `/`, the citizen portal at `/innbygger`, the
health-personnel portal at `/helsepersonell`, the language switch at `/sprak` and the static files at
`/static`. Each portal carries its own session middleware (a signed, HttpOnly, SameSite=Strict cookie
scoped to its path), so the application needs no middleware of its own for them.
"""

from __future__ import annotations

from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from kjerne.config import Settings
from kjerne.web import auth, citizen, practitioner
from kjerne.web.common import LANG_COOKIE, LANGS, STATIC, local_path, redirect, render, session_key

SESSION_HOURS = 8
PORTAL_PATHS = (citizen.PREFIX, practitioner.PREFIX)


def session_middleware(settings: Settings, cookie: str, path: str) -> Middleware:
    return Middleware(
        SessionMiddleware,
        secret_key=session_key(settings.var_dir),
        session_cookie=cookie,
        max_age=SESSION_HOURS * 3600,
        path=path,
        same_site="strict",
        https_only=settings.public_base().startswith("https://"),
    )


async def landing(request: Request) -> Response:
    return render(request, "landing.html")


async def language(request: Request) -> Response:
    chosen = request.query_params.get("til")
    response = redirect(local_path(request.query_params.get("neste"), "/"))
    if chosen in LANGS:
        response.set_cookie(LANG_COOKIE, chosen, max_age=365 * 86400, path="/", samesite="lax", httponly=True)
    return response


def routes(settings: Settings, engine: object) -> list[BaseRoute]:
    from sqlalchemy import Engine

    assert isinstance(engine, Engine)
    web = auth.build(settings, engine)
    return [
        Route("/", landing, methods=["GET"]),
        Route("/sprak", language, methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=str(STATIC)), name="static"),
        Mount(
            citizen.PREFIX,
            routes=citizen.routes(web),
            middleware=[session_middleware(settings, "kjerne_innbygger", citizen.PREFIX)],
        ),
        Mount(
            practitioner.PREFIX,
            routes=practitioner.routes(web),
            middleware=[session_middleware(settings, "kjerne_helsepersonell", practitioner.PREFIX)],
        ),
    ]
