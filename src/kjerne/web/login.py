"""Log-in and log-out for a portal: a demo persona in development, OpenID Connect in production."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from kjerne.access.tokens import AuthError
from kjerne.web import oidc
from kjerne.web.auth import Web, pack_token
from kjerne.web.common import (
    SECURITY_HEADERS,
    error_page,
    form_of,
    fresh_session,
    lang_of,
    page,
    redirect,
    render,
    threaded,
    translator,
)

MESSAGES = {
    "utlopt": ("Økten din er utløpt. Logg inn på nytt.", "Your session has expired. Log in again."),
    "ut": ("Du er logget ut.", "You are logged out."),
}


def login_routes(
    web: Web,
    prefix: str,
    kind: str,
    *,
    template: str,
    personas: Callable[[], list[dict[str, Any]]],
    mint: Callable[[Request, dict[str, Any]], str],
    after_login: Callable[[Request, Any], None] | None = None,
) -> list[Route]:
    """Routes `<prefix>/logg-inn`, `/logg-ut`, `/oidc/start`, `/oidc/callback` and `/oidc/fullfor`."""

    def base(request: Request) -> str:
        return web.settings.base_url.rstrip("/") or str(request.base_url).rstrip("/")

    def callback_uri(request: Request) -> str:
        return base(request) + prefix + "/oidc/callback"

    async def login_page(request: Request) -> Response:
        t = translator(lang_of(request))
        code = request.query_params.get("melding")
        message = MESSAGES.get(code or "")
        return render(
            request,
            template,
            personas=personas() if web.dev is not None else [],
            dev=web.dev is not None,
            oidc=web.oidc is not None,
            message=t(*message) if message else None,
        )

    async def login(request: Request) -> Response:
        form = await form_of(request)
        if web.dev is None:
            return error_page(request, 404, translator(lang_of(request))("Fant ikke siden", "Page not found"))
        key = str(form.get("persona") or "")
        persona = next((p for p in personas() if p["key"] == key), None)
        if persona is None:
            return redirect(prefix + "/logg-inn")
        token = await threaded(mint, request, persona)
        principal = web.verifier_for(request).verify("Bearer " + token)
        fresh_session(request)
        request.session["token"] = pack_token(token)
        request.session["persona"] = key
        if after_login is not None:
            after_login(request, principal)
        return redirect(prefix + "/")

    async def logout(request: Request) -> Response:
        await form_of(request)
        fresh_session(request)
        return redirect(prefix + "/logg-inn?melding=ut")

    async def oidc_start(request: Request) -> Response:
        t = translator(lang_of(request))
        if web.oidc is None:
            return error_page(request, 404, t("Innlogging er ikke satt opp", "Log-in is not configured"))
        flow = oidc.new_flow()
        extra = request.session.pop("oidc_extra", None)
        request.session["oidc"] = flow
        try:
            url = await threaded(web.oidc.authorization_url, flow, callback_uri(request), extra)
        except oidc.OidcError as exc:
            return error_page(request, 502, t("Innloggingen virker ikke nå", "Log-in is not working now"), str(exc))
        return redirect(url, status=302)

    async def oidc_callback(request: Request) -> Response:
        # The provider sends the browser here from another site, so the SameSite=Strict session cookie
        # is not sent with this request. Hand over to a same-site request that gets the cookie.
        params = {k: v for k, v in request.query_params.items() if k in ("code", "state", "error")}
        target = prefix + "/oidc/fullfor?" + urlencode(params)
        html = (
            '<!doctype html><html lang="nb"><head><meta charset="utf-8">'
            f'<meta http-equiv="refresh" content="0;url={target}"><title>Kjerne</title></head>'
            f'<body><main><p><a href="{target}">Fortsett / Continue</a></p></main></body></html>'
        )
        return HTMLResponse(html, headers=SECURITY_HEADERS)

    async def oidc_finish(request: Request) -> Response:
        t = translator(lang_of(request))
        if web.oidc is None:
            return error_page(request, 404, t("Innlogging er ikke satt opp", "Log-in is not configured"))
        flow = request.session.pop("oidc", None)
        title = t("Innloggingen ble ikke fullført", "The log-in was not completed")
        if request.query_params.get("error"):
            return error_page(request, 401, title, request.query_params["error"][:200])
        try:
            oidc.check_state(flow, request.query_params.get("state"))
            tokens = await threaded(
                web.oidc.exchange, flow, request.query_params.get("code") or "", callback_uri(request)
            )
            principal = web.verifier_for(request).verify("Bearer " + tokens["access_token"])
        except oidc.OidcError as exc:
            return error_page(request, 401, title, str(exc))
        except AuthError as exc:
            return error_page(request, 401, title, exc.message)
        if principal.kind != kind:
            return error_page(request, 403, t("Denne innloggingen gjelder ikke her", "This log-in is not for here"))
        keep = {k: request.session.get(k) for k in ("patient", "basis", "reason")}
        fresh_session(request)
        request.session["token"] = pack_token(tokens["access_token"])
        if kind == "practitioner":
            request.session.update({k: v for k, v in keep.items() if v})
        if after_login is not None:
            after_login(request, principal)
        return redirect(prefix + ("/pasient" if keep.get("patient") and kind == "practitioner" else "/"))

    wrap = page(prefix + "/logg-inn")
    return [
        Route("/logg-inn", wrap(login_page), methods=["GET"]),
        Route("/logg-inn", wrap(login), methods=["POST"]),
        Route("/logg-ut", wrap(logout), methods=["POST"]),
        Route("/oidc/start", wrap(oidc_start), methods=["GET"]),
        Route("/oidc/callback", oidc_callback, methods=["GET"]),
        Route("/oidc/fullfor", wrap(oidc_finish), methods=["GET"]),
    ]
