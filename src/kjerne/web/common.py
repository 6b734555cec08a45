"""What both portals share: templates, language, the session and its CSRF token, security headers and
error pages.

Pages are rendered on the server; a little plain JavaScript only improves forms that work without it.
Text is written in both languages where it is used: `t("norsk", "English")` in templates and code, so a
page's two versions cannot drift apart. The language is a cookie set by the toggle in the header.
"""

from __future__ import annotations

import functools
import hmac
import os
import secrets
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from kjerne.fhir.outcome import FhirError
from kjerne.web import fmt

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
LANG_COOKIE = "kjerne_lang"
LANGS = ("nb", "en")

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

env = Environment(
    loader=FileSystemLoader(str(TEMPLATES)),
    autoescape=select_autoescape(["html", "svg"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
env.filters.update(
    {
        "datetime": fmt.datetime_text,
        "date": fmt.date_text,
        "number": fmt.number,
        "quote": lambda s: quote(str(s), safe=""),
    }
)


# -- language ----------------------------------------------------------------------------------------


def lang_of(request: Request) -> str:
    chosen = request.cookies.get(LANG_COOKIE)
    return chosen if chosen in LANGS else "nb"


def translator(lang: str) -> Callable[[str, str], str]:
    def t(nb: str, en: str) -> str:
        return en if lang == "en" else nb

    return t


# -- the session ------------------------------------------------------------------------------------


def session_key(var_dir: Path) -> str:
    """The key that signs session cookies: `<var>/keys/session.key`, created once with mode 0600."""
    keys = Path(var_dir) / "keys"
    keys.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = keys / "session.key"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            path.chmod(0o600)
        text = path.read_text(encoding="ascii").strip()
        if len(text) < 32:
            raise ValueError(f"{path} does not hold a usable session key") from None
        return text
    key = secrets.token_hex(32)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(key + "\n")
    return key


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not isinstance(token, str) or len(token) < 20:
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


def check_csrf(request: Request, form: FormData) -> None:
    expected = request.session.get("csrf")
    given = form.get("csrf")
    if not isinstance(expected, str) or not isinstance(given, str) or not hmac.compare_digest(expected, given):
        raise HTTPException(403, "csrf")


def fresh_session(request: Request) -> None:
    """Start a new session (at log-in and log-out): nothing from before survives, a new CSRF token."""
    request.session.clear()
    request.session["csrf"] = secrets.token_urlsafe(32)


# -- rendering -------------------------------------------------------------------------------------------


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    lang = lang_of(request)
    ctx = {
        "request": request,
        "lang": lang,
        "t": translator(lang),
        "csrf": csrf_token(request) if "session" in request.scope else "",
        "flash": request.session.pop("flash", None) if "session" in request.scope else None,
        "here": request.url.path + (f"?{request.url.query}" if request.url.query else ""),
        **context,
    }
    html = env.get_template(template).render(ctx)
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def flash(request: Request, text: str, kind: str = "ok") -> None:
    """A message shown once, on the next page (after a form's redirect)."""
    request.session["flash"] = {"text": text, "kind": kind}


def redirect(url: str, status: int = 303) -> RedirectResponse:
    return RedirectResponse(url, status_code=status, headers=SECURITY_HEADERS)


def local_path(target: str | None, default: str) -> str:
    """A redirect target that stays on this site (an absolute path, never `//host` or a URL)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    return target


class NotLoggedIn(Exception):
    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or "")
        self.message = message


def error_page(request: Request, status: int, title: str, detail: str | None = None) -> HTMLResponse:
    return render(request, "error.html", status=status, title=title, detail=detail)


def _fhir_message(t: Callable[[str, str], str], err: FhirError) -> tuple[int, str, str | None]:
    text = "; ".join(i.diagnostics for i in err.issues if i.diagnostics) or None
    if err.status == 403:
        return 403, t("Du har ikke tilgang", "You do not have access"), text
    if err.status in (404, 410):
        return 404, t("Fant ikke det du lette etter", "Not found"), text
    if err.status == 409:
        return 409, t("Noen andre endret dette samtidig. Prøv igjen.", "Someone else changed this. Try again."), text
    if err.status < 500:
        return err.status, t("Det gikk ikke", "That did not work"), text
    return 500, t("Noe gikk galt hos oss", "Something went wrong on our side"), None


Handler = Callable[[Request], Awaitable[Response]]


def page(login_path: str) -> Callable[[Handler], Handler]:
    """Wrap a page handler: errors become HTML pages in the user's language, never FHIR JSON, and a
    missing or expired log-in sends the user to `login_path`."""

    def wrap(fn: Handler) -> Handler:
        @functools.wraps(fn)
        async def handler(request: Request) -> Response:
            t = translator(lang_of(request))
            try:
                return await fn(request)
            except NotLoggedIn as exc:
                target = login_path
                if exc.message:
                    target += "?melding=" + quote(exc.message)
                return redirect(target)
            except FhirError as err:
                status, title, detail = _fhir_message(t, err)
                return error_page(request, status, title, detail)
            except HTTPException as exc:
                if exc.detail == "csrf":
                    title = t(
                        "Skjemaet var utløpt. Gå tilbake, last siden på nytt og prøv igjen.",
                        "The form had expired. Go back, reload the page and try again.",
                    )
                    return error_page(request, 403, title)
                if exc.status_code == 404:
                    return error_page(request, 404, t("Fant ikke siden", "Page not found"))
                return error_page(request, exc.status_code, str(exc.detail))

        return handler

    return wrap


async def form_of(request: Request) -> FormData:
    form = await request.form()
    check_csrf(request, form)
    return form


async def threaded(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return await run_in_threadpool(fn, *args, **kwargs)
