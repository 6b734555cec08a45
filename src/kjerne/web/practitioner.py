"""Kjerne for helsepersonell: the health-personnel portal at /helsepersonell.

A practitioner looks a patient up by national id and declares the basis for access. The attestation in
the practitioner's token names the patient (the development log-in mints a fresh token for the patient;
in production the OpenID Connect provider issues one), and every page then reads through an AccessPolicy
built from that token and the declared basis, with the written reason for emergency access.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from kjerne.access import restrictions as r
from kjerne.access.principal import Principal
from kjerne.fhir.identifiers import is_valid_fnr
from kjerne.web import auth, charts, fmt, oidc, reading
from kjerne.web.auth import PRACTITIONER, Web
from kjerne.web.citizen import measurement_charts, period_start
from kjerne.web.common import (
    NotLoggedIn,
    flash,
    form_of,
    lang_of,
    page,
    redirect,
    render,
    threaded,
    translator,
)
from kjerne.web.login import login_routes

PREFIX = "/helsepersonell"
LOGIN = PREFIX + "/logg-inn"
# What the lookup form offers, and the nhn-access-basis each choice is sent as.
BASES = {
    "normal": None,
    "samtykke": "SAMTYKKE",
    "samtykke-sperret": "FORHOYET_SAMTYKKE",
    "akutt": "FORHOYET_AKUTT",
}
EMERGENCY_PURPOSE = "BTG"
VITAL_TYPES = (
    "news2",
    "respiratory-rate",
    "oxygen-saturation",
    "blood-pressure",
    "heart-rate",
    "body-temperature",
    "body-weight",
    "blood-glucose",
)
RAD = "http://terminology.hl7.org/CodeSystem/v2-0074|RAD"


def routes(web: Web) -> list[BaseRoute]:
    wrap = page(LOGIN)

    def me(request: Request, principal: Principal) -> dict[str, Any]:
        att = principal.attestation
        return {
            "name": principal.name or (att.name if att else "") or "",
            "org": (att.point_of_care_name or att.legal_entity_name) if att else "",
            "portal": "practitioner",
            "basis": request.session.get("basis"),
            "emergency": request.session.get("basis") == BASES["akutt"],
        }

    def current(request: Request) -> tuple[Principal, str]:
        principal = web.principal(request, PRACTITIONER)
        fnr = request.session.get("patient")
        if not isinstance(fnr, str) or not fnr:
            raise NotLoggedIn()
        return principal, fnr

    def scope(request: Request, principal: Principal, fnr: str) -> tuple[Any, list[str]]:
        repo = web.repository(
            principal,
            basis=request.session.get("basis"),
            person_id=fnr,
            reason=request.session.get("reason"),
        )
        return repo, repo.access.patients_for(fnr)

    def notice(repo: Any) -> dict[str, Any]:
        policy = repo.access
        return {
            "withheld": policy.withheld(),
            "blocked": any(v.hidden for v in policy.views.values()),
            "override": policy.overrode(),
        }

    def need_patient(request: Request) -> Response | None:
        if not request.session.get("patient"):
            return redirect(PREFIX + "/")
        return None

    # -- lookup ----------------------------------------------------------------------------------
    async def lookup_page(request: Request) -> Response:
        principal = web.principal(request, PRACTITIONER)
        return render(request, "hp/lookup.html", me=me(request, principal), nav="oppslag")

    async def lookup(request: Request) -> Response:
        principal = web.principal(request, PRACTITIONER)
        t = translator(lang_of(request))
        form = await form_of(request)
        fnr = "".join(ch for ch in str(form.get("fnr") or "") if ch.isdigit())
        choice = str(form.get("grunnlag") or "normal")
        if choice == "samtykke" and form.get("sperret") == "ja":
            choice = "samtykke-sperret"
        reason = str(form.get("begrunnelse") or "").strip()[:500]
        errors = []
        if not is_valid_fnr(fnr):
            errors.append(t("Fødselsnummeret er ikke gyldig (11 siffer).", "The national id is not valid (11 digits)."))
        if choice not in BASES:
            errors.append(t("Velg grunnlag for tilgang.", "Choose the basis for access."))
        if choice == "akutt" and len(reason) < 10:
            errors.append(
                t(
                    "Akuttilgang krever en skriftlig begrunnelse (minst 10 tegn).",
                    "Emergency access needs a written reason (at least 10 characters).",
                )
            )
        if errors:
            return render(
                request,
                "hp/lookup.html",
                status=400,
                me=me(request, principal),
                nav="oppslag",
                errors=errors,
                form={"fnr": fnr, "grunnlag": choice, "begrunnelse": reason},
            )
        purpose = EMERGENCY_PURPOSE if choice == "akutt" else "TREAT"
        request.session.pop("patient_summary", None)
        request.session.update(patient=fnr, basis=BASES[choice], reason=reason if choice == "akutt" else None)
        if web.dev is not None and request.session.get("persona"):
            persona = auth.practitioner_persona(str(request.session["persona"]))
            if persona is None:
                raise NotLoggedIn()
            token = await threaded(auth.practitioner_token, web.dev, persona, [fnr], purpose)
            request.session["token"] = auth.pack_token(token)
            return redirect(PREFIX + "/pasient")
        if web.oidc is not None:
            # A new attestation naming the patient comes from the provider; pushed, never in a URL.
            request.session["oidc_extra"] = {"authorization_details": oidc.attestation_request([fnr], purpose)}
            return redirect(PREFIX + "/oidc/start")
        raise NotLoggedIn()

    async def close_patient(request: Request) -> Response:
        await form_of(request)
        for key in ("patient", "basis", "reason", "patient_summary"):
            request.session.pop(key, None)
        return redirect(PREFIX + "/")

    # -- the patient -----------------------------------------------------------------------------
    async def overview(request: Request) -> Response:
        if (back := need_patient(request)) is not None:
            return back
        principal, fnr = current(request)
        lang = lang_of(request)

        def work() -> dict[str, Any]:
            repo, patients = scope(request, principal, fnr)
            summary, critical = reading.patient_overview(repo, patients)
            latest, _n = reading.reports(repo, patients, lang, count=8)
            radiology, _n = reading.reports(repo, patients, lang, count=10, category=RAD)
            return {
                "patient": summary,
                "reports": latest,
                "radiology": radiology,
                "critical": critical,
                "vitals": reading.latest_measurements(repo, patients, lang),
                **notice(repo),
            }

        data = await threaded(work)
        # The patient bar on the other pages shows the name read here, without another search.
        request.session["patient_summary"] = data["patient"]
        return render(request, "hp/overview.html", me=me(request, principal), nav="oversikt", fnr=fnr, **data)

    async def cumulative_page(request: Request) -> Response:
        if (back := need_patient(request)) is not None:
            return back
        principal, fnr = current(request)
        lang = lang_of(request)
        before = request.query_params.get("foer")
        if before and not (len(before) == 10 and before[4] == "-" and before.replace("-", "").isdigit()):
            before = None

        def work() -> dict[str, Any]:
            repo, patients = scope(request, principal, fnr)
            return {
                "patient": summary_of(request, repo, patients),
                "table": reading.cumulative(repo, patients, lang, before=before),
                **notice(repo),
            }

        data = await threaded(work)
        return render(request, "hp/cumulative.html", me=me(request, principal), nav="kumulativ", fnr=fnr, **data)

    async def vitals(request: Request) -> Response:
        if (back := need_patient(request)) is not None:
            return back
        principal, fnr = current(request)
        lang = lang_of(request)
        t = translator(lang)
        choice, since = period_start(request.query_params.get("periode"), "90")
        since = since or fmt.now_oslo() - dt.timedelta(days=3650)

        def work() -> dict[str, Any]:
            repo, patients = scope(request, principal, fnr)
            series = reading.measurement_series_many(repo, patients, list(VITAL_TYPES), lang, since)
            return {"patient": summary_of(request, repo, patients), "series": series, **notice(repo)}

        data = await threaded(work)
        found = data.pop("series")
        ordered = [s for key in VITAL_TYPES for s in found.get(key, []) if s.points]
        return render(
            request,
            "hp/vitals.html",
            me=me(request, principal),
            nav="vitale",
            fnr=fnr,
            period=choice,
            charts=measurement_charts(ordered, since, t),
            **data,
        )

    async def report(request: Request) -> Response:
        if (back := need_patient(request)) is not None:
            return back
        principal, fnr = current(request)
        lang = lang_of(request)
        report_id = request.path_params["id"]

        def work() -> dict[str, Any]:
            repo, patients = scope(request, principal, fnr)
            view, _raw = reading.report_detail(repo, report_id, lang)
            on_report = reading.restrictions(repo, patients, [("data", f"DiagnosticReport/{report_id}")])
            return {
                "report": view,
                "on_report": on_report,
                "patient": summary_of(request, repo, patients),
                **notice(repo),
            }

        data = await threaded(work)
        return render(
            request,
            "hp/report.html",
            me=me(request, principal),
            nav="oversikt",
            fnr=fnr,
            hpr=principal.hpr,
            today=fmt.now_oslo().date().isoformat(),
            **data,
        )

    async def restrict(request: Request) -> Response:
        if (back := need_patient(request)) is not None:
            return back
        principal, fnr = current(request)
        t = translator(lang_of(request))
        form = await form_of(request)
        report_id = request.path_params["id"]
        action = str(form.get("handling") or "")
        target = f"DiagnosticReport/{report_id}"
        day = str(form.get("dato") or "")
        release = None
        if action == "utsatt" and day:
            try:
                release = dt.datetime.combine(dt.date.fromisoformat(day), dt.time(8, 0), fmt.OSLO).isoformat()
            except ValueError:
                release = None

        def work() -> str:
            repo, patients = scope(request, principal, fnr)
            if not patients:
                return t("Pasienten finnes ikke.", "The patient does not exist.")
            pid = patients[0]
            if action == "nekting":
                repo.create(reading.consent(r.NEKTING, pid, data=[target]))
                return t(
                    "Nekting er satt: pasienten ser ikke dette svaret.",
                    "Denial set: the patient cannot see this report.",
                )
            if action == "utsatt":
                repo.create(reading.consent(r.UTSATT, pid, data=[target], release=release))
                return t("Utsatt innsyn er satt.", "Delayed access set.")
            if action == "skjerming":
                repo.create(reading.consent(r.SKJERMING, pid, data=[target]))
                return t("Svaret er skjermet for annet helsepersonell.", "The report is shielded from other personnel.")
            if action == "frigi":
                mine = [
                    c
                    for c in reading.restrictions(repo, patients, [("data", target)])
                    if c.kind == r.UTSATT and c.set_by_hpr == principal.hpr
                ]
                for c in mine:
                    reading.withdraw(repo, c.id)
                if not mine:
                    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
                    repo.create(reading.consent(r.UTSATT, pid, data=[target], release=now))
                return t("Svaret er frigitt til pasienten.", "The report is released to the patient.")
            if action == "trekk":
                reading.withdraw(repo, str(form.get("id") or ""))
                return t("Begrensningen er trukket tilbake.", "The restriction is withdrawn.")
            return t("Ukjent handling.", "Unknown action.")

        flash(request, await threaded(work))
        return redirect(f"{PREFIX}/pasient/svar/{report_id}")

    async def ordering(request: Request) -> Response:
        if (back := need_patient(request)) is not None:
            return back
        principal, fnr = current(request)
        lang = lang_of(request)
        chosen = [k for k in request.query_params.getlist("analyse") if k][:30]

        def work() -> dict[str, Any]:
            repo, patients = scope(request, principal, fnr)
            recent = duplicate_check(repo, patients, chosen, lang) if chosen else []
            return {"patient": summary_of(request, repo, patients), "recent": recent, **notice(repo)}

        data = await threaded(work)
        return render(
            request,
            "hp/order.html",
            me=me(request, principal),
            nav="bestilling",
            fnr=fnr,
            chosen=chosen,
            analyses=reading.orderable_analyses(lang),
            checked=bool(chosen),
            **data,
        )

    def mint(_request: Request, persona: dict[str, Any]) -> str:
        assert web.dev is not None
        return auth.practitioner_token(web.dev, persona, [])

    async def not_found(request: Request) -> Response:
        t = translator(lang_of(request))
        return render(request, "error.html", status=404, title=t("Fant ikke siden", "Page not found"), detail=None)

    return [
        Route("/", wrap(lookup_page), methods=["GET"]),
        Route("/oppslag", wrap(lookup), methods=["POST"]),
        Route("/avslutt", wrap(close_patient), methods=["POST"]),
        Route("/pasient", wrap(overview), methods=["GET"]),
        Route("/pasient/kumulativ", wrap(cumulative_page), methods=["GET"]),
        Route("/pasient/vitale", wrap(vitals), methods=["GET"]),
        Route("/pasient/bestilling", wrap(ordering), methods=["GET"]),
        Route("/pasient/svar/{id:str}", wrap(report), methods=["GET"]),
        Route("/pasient/svar/{id:str}/begrensning", wrap(restrict), methods=["POST"]),
        *login_routes(
            web, PREFIX, PRACTITIONER, template="hp/login.html", personas=auth.practitioner_personas, mint=mint
        ),
        Route("/{rest:path}", not_found),
    ]


def summary_of(request: Request, repo: Any, patients: list[str]) -> dict[str, Any] | None:
    """The open patient's name and birth date: read once on the overview, kept in the session."""
    kept = request.session.get("patient_summary")
    if isinstance(kept, dict):
        return kept
    return reading.patient_summary(repo, patients)


def duplicate_check(repo: Any, patients: list[str], keys: list[str], lang: str) -> list[reading.RecentResult]:
    """Recent results for the analyses about to be ordered."""
    return reading.recent_results(repo, patients, keys, lang)


__all__ = ["charts", "routes"]
