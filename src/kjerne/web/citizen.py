"""Mine prøvesvar og målinger: the citizen's portal at /innbygger."""

from __future__ import annotations

import datetime as dt
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from kjerne.access import restrictions as r
from kjerne.access.principal import Principal
from kjerne.fhir.identifiers import is_valid_hpr
from kjerne.web import auth, charts, fmt, reading
from kjerne.web.auth import CITIZEN, Web
from kjerne.web.common import flash, form_of, lang_of, page, redirect, render, threaded, translator
from kjerne.web.login import login_routes

PREFIX = "/innbygger"
LOGIN = PREFIX + "/logg-inn"
PERIODS = {"30": 30, "90": 90, "365": 365, "1095": 1095}


def period_start(choice: str | None, default: str) -> tuple[str, dt.datetime | None]:
    choice = choice if choice in (*PERIODS, "alle") else default
    if choice == "alle":
        return choice, None
    return choice, fmt.now_oslo() - dt.timedelta(days=PERIODS[choice])


def routes(web: Web) -> list[BaseRoute]:
    wrap = page(LOGIN)

    def context(request: Request) -> tuple[Principal, Any]:
        principal = web.principal(request, CITIZEN)
        return principal, translator(lang_of(request))

    def scope(principal: Principal) -> tuple[Any, list[str]]:
        repo = web.repository(principal, person_id=principal.pid)
        patients = repo.access.patients_for(principal.pid or "")
        return repo, patients

    def me(principal: Principal) -> dict[str, Any]:
        return {"name": principal.name or "", "portal": "citizen"}

    # -- results ---------------------------------------------------------------------------------
    async def results(request: Request) -> Response:
        principal, _t = context(request)
        lang = lang_of(request)
        cursor = request.query_params.get("side")

        def work() -> dict[str, Any]:
            repo, patients = scope(principal)
            views, nxt = reading.reports(repo, patients, lang, count=15, cursor=cursor)
            waiting = reading.awaiting_release(repo, patients) if not cursor else []
            return {"reports": views, "next": nxt, "waiting": waiting}

        data = await threaded(work)
        return render(request, "citizen/results.html", me=me(principal), nav="svar", next_page=bool(cursor), **data)

    async def report(request: Request) -> Response:
        principal, _t = context(request)
        lang = lang_of(request)
        report_id = request.path_params["id"]

        def work() -> dict[str, Any]:
            repo, _patients = scope(principal)
            view, _raw = reading.report_detail(repo, report_id, lang)
            return {"report": view}

        data = await threaded(work)
        return render(request, "citizen/report.html", me=me(principal), nav="svar", **data)

    async def trend(request: Request) -> Response:
        principal, t = context(request)
        lang = lang_of(request)
        key = request.query_params.get("analyse") or ""
        choice, since = period_start(request.query_params.get("periode"), "alle")

        def work() -> dict[str, Any]:
            repo, patients = scope(principal)
            return {"trend": reading.trend(repo, patients, key, lang, since)}

        data = await threaded(work)
        tr = data["trend"]
        chart = None
        if tr is not None and tr.points:
            start = since or min(p.when for p in tr.points) - dt.timedelta(days=14)
            latest = tr.points[-1]
            bands = []
            if latest.low is not None or latest.high is not None:
                bands.append(
                    charts.Band(
                        latest.low,
                        latest.high,
                        t("Referanseområde (siste svar)", "Reference range (latest result)"),
                        "band-normal",
                    )
                )
            series = charts.Series(
                tr.name, [(p.when, p.value) for p in tr.points], "s1", {i for i, p in enumerate(tr.points) if p.flag}
            )
            chart = charts.line_chart(
                tr.name,
                t(
                    f"{len(tr.points)} svar for {tr.name} i {tr.unit}. Tallene står i tabellen under.",
                    f"{len(tr.points)} results for {tr.name} in {tr.unit}. The numbers are in the table below.",
                ),
                [series],
                start=start,
                end=fmt.now_oslo(),
                bands=bands,
                unit=tr.unit,
                chart_id="trend",
            )
        return render(
            request, "citizen/trend.html", me=me(principal), nav="svar", chart=chart, key=key, period=choice, **data
        )

    # -- measurements ----------------------------------------------------------------------------
    async def measurements(request: Request) -> Response:
        principal, t = context(request)
        lang = lang_of(request)
        choice, since = period_start(request.query_params.get("periode"), "30")
        since = since or fmt.now_oslo() - dt.timedelta(days=3650)
        wanted = request.query_params.get("type")

        def work() -> dict[str, Any]:
            repo, patients = scope(principal)
            latest = reading.latest_measurements(repo, patients, lang)
            key = wanted if wanted in {x.key for x in latest} else (latest[0].key if latest else None)
            series = reading.measurement_series(repo, patients, key, lang, since) if key else []
            return {"latest": latest, "selected": key, "series": series}

        data = await threaded(work)
        return render(
            request,
            "citizen/measurements.html",
            me=me(principal),
            nav="malinger",
            period=choice,
            charts=measurement_charts(data["series"], since, t),
            **data,
        )

    # -- access log ------------------------------------------------------------------------------
    async def access_log(request: Request) -> Response:
        principal, _t = context(request)
        lang = lang_of(request)
        before = request.query_params.get("fra")
        include_own = request.query_params.get("alle") == "1"

        def work() -> dict[str, Any]:
            repo, patients = scope(principal)
            entries, older = reading.access_log(
                repo,
                patients,
                lang,
                before=int(before) if before and before.isdigit() else None,
                include_own=include_own,
            )
            return {"entries": entries, "older": older}

        data = await threaded(work)
        return render(request, "citizen/log.html", me=me(principal), nav="logg", include_own=include_own, **data)

    # -- privacy settings ------------------------------------------------------------------------
    async def privacy(request: Request) -> Response:
        principal, _t = context(request)
        query = (request.query_params.get("sok") or "").strip()[:80]
        purpose = request.query_params.get("for") or "blokkering"

        def work() -> dict[str, Any]:
            repo, patients = scope(principal)
            current = reading.restrictions(repo, patients)
            found = reading.find_personnel(repo, query) if query else []
            return {"restrictions": current, "found": found}

        data = await threaded(work)
        kinds = {k: [x for x in data["restrictions"] if x.kind == k] for k in (*r.CITIZEN_SET, r.SKJERMING)}
        return render(
            request,
            "citizen/privacy.html",
            me=me(principal),
            nav="personvern",
            query=query,
            search_for=purpose if purpose in ("blokkering", "sperring") else "blokkering",
            kinds=kinds,
            services=reading.SERVICES,
            **data,
        )

    async def set_restriction(request: Request) -> Response:
        principal, t = context(request)
        form = await form_of(request)
        kind = request.path_params["kind"]
        services = [s for s in form.getlist("tjeneste") if s in reading.SERVICES]
        if set(services) == set(reading.SERVICES):
            services = []  # every service: no codes
        personnel: list[tuple[str, str]] = []
        for raw in form.getlist("hpr"):
            hpr, _, name = str(raw).partition("|")
            if is_valid_hpr(hpr):
                personnel.append((hpr, name[:120] or hpr))
        back = PREFIX + "/personvern"
        if kind == "reservasjon":
            if form.get("bekreft") != "ja":
                flash(
                    request,
                    t(
                        "Du må bekrefte at du forstår at opplysningene blir slettet.",
                        "You must confirm that you understand the data will be deleted.",
                    ),
                    "error",
                )
                return redirect(back + "#reservasjon")
        elif kind == "sperring":
            if form.get("omfang") != "alle" and not personnel:
                flash(
                    request,
                    t(
                        "Velg helsepersonell, eller velg å sperre for alle.",
                        "Choose health personnel, or choose to block for everyone.",
                    ),
                    "error",
                )
                return redirect(back + "?for=sperring#sperring")
            if form.get("omfang") == "alle":
                personnel = []
        elif kind == "blokkering":
            if not personnel:
                flash(request, t("Velg hvem du vil blokkere.", "Choose whom to block."), "error")
                return redirect(back + "#blokkering")
            services = []
        else:
            return redirect(back)

        def work() -> None:
            repo, patients = scope(principal)
            if not patients:
                return
            if kind == "blokkering":  # one Consent per person, so each can be withdrawn on its own
                for one in personnel:
                    repo.create(reading.consent(kind, patients[0], personnel=[one]))
            else:
                repo.create(reading.consent(kind, patients[0], services=services, personnel=personnel))

        await threaded(work)
        flash(
            request,
            {
                "reservasjon": t("Reservasjonen er registrert.", "Your reservation is registered."),
                "sperring": t("Sperringen er registrert.", "The restriction is registered."),
                "blokkering": t("Blokkeringen er registrert.", "The block is registered."),
            }[kind],
        )
        return redirect(back)

    async def withdraw(request: Request) -> Response:
        principal, t = context(request)
        form = await form_of(request)
        consent_id = str(form.get("id") or "")

        def work() -> None:
            repo, _patients = scope(principal)
            reading.withdraw(repo, consent_id)

        await threaded(work)
        flash(request, t("Innstillingen er trukket tilbake.", "The setting has been withdrawn."))
        return redirect(PREFIX + "/personvern")

    def mint(_request: Request, persona: dict[str, Any]) -> str:
        assert web.dev is not None
        return auth.citizen_token(web.dev, persona)

    async def not_found(request: Request) -> Response:
        t = translator(lang_of(request))
        return render(request, "error.html", status=404, title=t("Fant ikke siden", "Page not found"), detail=None)

    return [
        Route("/", wrap(results), methods=["GET"]),
        Route("/svar/{id:str}", wrap(report), methods=["GET"]),
        Route("/trend", wrap(trend), methods=["GET"]),
        Route("/malinger", wrap(measurements), methods=["GET"]),
        Route("/logg", wrap(access_log), methods=["GET"]),
        Route("/personvern", wrap(privacy), methods=["GET"]),
        Route("/personvern/trekk", wrap(withdraw), methods=["POST"]),
        Route("/personvern/{kind:str}", wrap(set_restriction), methods=["POST"]),
        *login_routes(web, PREFIX, CITIZEN, template="citizen/login.html", personas=auth.citizen_personas, mint=mint),
        Route("/{rest:path}", not_found),
    ]


def measurement_charts(series: list[reading.MeasurementSeries], since: dt.datetime, t: Any) -> list[dict[str, Any]]:
    """One chart per series, its alert range drawn as bands (beyond the thresholds: alert; beyond the
    critical ones: critical)."""
    out = []
    for s in series:
        bands = []
        a = s.alert
        if a is not None:
            if a.low is not None:
                bands.append(
                    charts.Band(
                        a.critical_low,
                        a.low,
                        t(f"Under varselgrensen ({fmt.number(a.low)})", f"Below the alert limit ({fmt.number(a.low)})"),
                    )
                )
            if a.critical_low is not None:
                bands.append(charts.Band(None, a.critical_low, t("Kritisk lavt", "Critically low"), "band-critical"))
            if a.high is not None:
                bands.append(
                    charts.Band(
                        a.high,
                        a.critical_high,
                        t(
                            f"Over varselgrensen ({fmt.number(a.high)})",
                            f"Above the alert limit ({fmt.number(a.high)})",
                        ),
                    )
                )
            if a.critical_high is not None:
                bands.append(charts.Band(a.critical_high, None, t("Kritisk høyt", "Critically high"), "band-critical"))
        description = t(
            f"{len(s.points)} målinger av {s.name.lower()} i {s.unit}; {len(s.flagged)} utenfor varselgrensene. "
            "Tallene står i tabellen under grafen.",
            f"{len(s.points)} measurements of {s.name.lower()} in {s.unit}; {len(s.flagged)} outside the alert "
            "limits. The numbers are in the table below the chart.",
        )
        svg = charts.line_chart(
            s.name,
            description,
            [charts.Series(s.name, s.points, "s1", s.flagged)],
            start=since,
            end=fmt.now_oslo(),
            bands=bands,
            unit=s.unit,
            chart_id="c-" + s.key.replace(".", "-"),
        )
        rows = [(m, v, i in s.flagged) for i, (m, v) in enumerate(s.points)]
        out.append({"series": s, "svg": svg, "rows": list(reversed(rows))})
    return out
