"""The portals in a real browser against a real server with the demo data: log-in, results, restrictions
set in one portal and felt in the other, the access log, and accessibility (axe-core) on every main page."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from portal_server import Portal
from portal_steps import (
    CITIZENS,
    PRACTITIONERS,
    axe_violations,
    csrf_of,
    horizontal_overflow,
    log_in_citizen,
    log_in_practitioner,
    look_up,
)

pytestmark = pytest.mark.browser


def test_a_citizen_sees_results_blocks_her_gp_and_the_gp_is_denied(portal: Portal, new_page: Any) -> None:
    citizen = CITIZENS["ung-kvinne-oslo"]
    gp = PRACTITIONERS["fastlege-oslo"]
    page = new_page()
    log_in_citizen(page, portal.url, citizen["key"])
    assert page.locator("h1").inner_text() == "Prøvesvar"
    assert page.locator("ol.reports > li").count() > 0
    assert page.locator("table.results tbody tr").count() > 0

    page.click("text=Personvern")
    page.fill("#sok-b", gp["family"])
    page.click("#blokkering button[type=submit]")
    row = page.locator("#sok-resultat li", has_text=gp["name"])
    row.locator("button", has_text="Blokker").click()
    assert "Blokkeringen er registrert" in page.locator(".flash").inner_text()
    assert gp["name"] in page.locator("#blokkering ul.settings").inner_text()

    doctor = new_page()
    log_in_practitioner(doctor, portal.url, gp["key"])
    look_up(doctor, citizen["fnr"])
    assert "Du har ikke tilgang" in doctor.locator(".notice.denied").inner_text()
    assert doctor.locator("article.report").count() == 0
    # Not even in an emergency.
    doctor.goto(portal.url + "/helsepersonell/")
    look_up(doctor, citizen["fnr"], "akutt", "Pasienten er bevisstløs i akuttmottaket")
    assert doctor.locator(".notice.denied").count() == 1
    assert doctor.locator("article.report").count() == 0

    page.goto(portal.url + "/innbygger/logg")
    log = page.locator("ol.log").inner_text()
    assert gp["name"] in log, "the blocked practitioner's attempt is in the citizen's access log"


def test_emergency_access_shows_in_the_citizens_log_without_the_workers_national_id(
    portal: Portal, new_page: Any
) -> None:
    citizen = CITIZENS["stoffskifte-drammen"]
    doctor = PRACTITIONERS["lege-sykehus"]
    reason = "Innlagt bevisstløs, trenger siste prøvesvar"
    hp = new_page()
    log_in_practitioner(hp, portal.url, doctor["key"])
    hp.fill("#fnr", citizen["fnr"])
    hp.check("input[name=grunnlag][value=akutt]")
    assert hp.locator("#akutt-warning").is_visible()
    assert "Pasienten vil se at du brukte akuttilgang" in hp.locator("#akutt-warning").inner_text()
    hp.fill("#begrunnelse", reason)
    hp.click("form.lookup button[type=submit]")
    hp.wait_for_url(portal.url + "/helsepersonell/pasient")
    assert "Akuttilgang" in hp.locator(".patient-bar").inner_text()
    assert hp.locator("article.report").count() > 0

    page = new_page()
    log_in_citizen(page, portal.url, citizen["key"])
    page.goto(portal.url + "/innbygger/logg")
    entry = page.locator("ol.log li.emergency").first
    text = entry.inner_text()
    assert doctor["name"] in text
    assert doctor["org_name"] in text
    assert reason in text
    assert "Akuttilgang" in text
    html = page.content()
    assert doctor["fnr"] not in html and doctor["hpr"] not in html


def test_emergency_access_needs_a_written_reason(portal: Portal, new_page: Any) -> None:
    hp = new_page()
    log_in_practitioner(hp, portal.url, "sykepleier-sykehus")
    hp.fill("#fnr", CITIZENS["kols-hamar"]["fnr"])
    hp.check("input[name=grunnlag][value=akutt]")
    hp.evaluate("document.getElementById('begrunnelse').required = false")
    hp.click("form.lookup button[type=submit]")
    assert "krever en skriftlig begrunnelse" in hp.locator(".notice.danger").inner_text()


def test_a_report_under_utsatt_innsyn_shows_no_content_to_the_citizen(portal: Portal, new_page: Any) -> None:
    citizen = CITIZENS["barn-hamar"]
    hp = new_page()
    log_in_practitioner(hp, portal.url, "fastlege-hamar")
    look_up(hp, citizen["fnr"])
    first = hp.locator("article.report h3 a").first
    title = first.inner_text()
    first.click()
    hp.wait_for_url("**/pasient/svar/*")
    report_url = hp.url
    report_id = report_url.rsplit("/", 1)[1]
    hp.click("form.utsatt button[type=submit]")
    hp.wait_for_load_state()
    assert "Utsatt innsyn er satt" in hp.locator("main").inner_text(), hp.locator("main").inner_text()

    page = new_page()
    log_in_citizen(page, portal.url, citizen["key"])
    assert page.locator(f"a[href='/innbygger/svar/{report_id}']").count() == 0
    page.goto(f"{portal.url}/innbygger/svar/{report_id}")
    assert page.locator("h1").inner_text() == "Fant ikke det du lette etter"
    assert page.locator("table.results").count() == 0
    assert title not in page.locator("main").inner_text()

    hp.goto(report_url)
    hp.click("text=Frigi svaret til pasienten nå")
    assert "frigitt" in hp.locator(".flash").inner_text()
    page.goto(portal.url + "/innbygger/")
    assert page.locator(f"a[href='/innbygger/svar/{report_id}']").count() == 1


def test_the_language_toggle(portal: Portal, new_page: Any) -> None:
    page = new_page()
    log_in_citizen(page, portal.url, "hjertesvikt-oslo")
    page.click("text=English")
    assert page.locator("h1").inner_text() == "Test results"
    assert page.locator("html").get_attribute("lang") == "en"
    page.click("text=Norsk")
    assert page.locator("h1").inner_text() == "Prøvesvar"


def test_forms_without_the_csrf_token_are_refused(portal: Portal) -> None:
    with httpx.Client(base_url=portal.url, follow_redirects=True) as client:
        login = client.get("/innbygger/logg-inn")
        r = client.post("/innbygger/logg-inn", data={"persona": "hjertesvikt-oslo"})
        assert r.status_code == 403
        r = client.post("/innbygger/logg-inn", data={"persona": "hjertesvikt-oslo", "csrf": csrf_of(login.text)})
        assert r.status_code == 200 and "Prøvesvar" in r.text
        r = client.post("/innbygger/personvern/blokkering", data={"hpr": "5651203|Siri Holmen", "csrf": "wrong"})
        assert r.status_code == 403
        cookie = next(c for c in client.cookies.jar if c.name == "kjerne_innbygger")
        assert cookie.has_nonstandard_attr("HttpOnly") or "httponly" in str(cookie._rest).lower()


CITIZEN_PAGES = ["/innbygger/", "/innbygger/malinger", "/innbygger/logg", "/innbygger/personvern?sok=Holmen"]
PRACTITIONER_PAGES = [
    "/helsepersonell/pasient",
    "/helsepersonell/pasient/kumulativ",
    "/helsepersonell/pasient/vitale",
    "/helsepersonell/pasient/bestilling?analyse=haemoglobin",
]


def _check(page: Any, where: str, problems: list[str]) -> None:
    for v in axe_violations(page):
        problems.append(f"{where}: {v['impact']} {v['id']} ({v['help']}) at {v['nodes']}")


def test_accessibility_of_the_citizen_portal(portal: Portal, new_page: Any) -> None:
    problems: list[str] = []
    page = new_page()
    for path in ("/", "/innbygger/logg-inn"):
        page.goto(portal.url + path)
        _check(page, path, problems)
    log_in_citizen(page, portal.url, "hjertesvikt-oslo")
    for path in CITIZEN_PAGES:
        page.goto(portal.url + path)
        _check(page, path, problems)
    page.goto(portal.url + "/innbygger/")
    page.locator("ol.reports a[href^='/innbygger/svar/']").first.click()
    _check(page, "report", problems)
    page.goto(portal.url + "/innbygger/")
    page.locator("table.results a[href^='/innbygger/trend']").first.click()
    assert page.locator("svg.chart").count() == 1
    _check(page, "trend", problems)
    page.goto(portal.url + "/innbygger/malinger?type=blood-pressure&periode=90")
    assert page.locator("svg.chart").count() == 2
    assert page.locator("svg.chart rect.band-alert").count() > 0
    _check(page, "blood pressure", problems)
    page.goto(portal.url + "/sprak?til=en&neste=/innbygger/")
    _check(page, "English results", problems)
    page.goto(portal.url + "/sprak?til=nb&neste=/innbygger/")
    assert not problems, "\n".join(problems)


def test_accessibility_of_the_practitioner_portal(portal: Portal, new_page: Any) -> None:
    problems: list[str] = []
    page = new_page()
    page.goto(portal.url + "/helsepersonell/logg-inn")
    _check(page, "login", problems)
    log_in_practitioner(page, portal.url, "lege-sykehus")
    _check(page, "lookup", problems)
    look_up(page, CITIZENS["hjertesvikt-oslo"]["fnr"], "samtykke")
    for path in PRACTITIONER_PAGES:
        page.goto(portal.url + path)
        _check(page, path, problems)
    assert page.locator("#resultat").count() == 1, "the duplicate check answered"
    page.goto(portal.url + "/helsepersonell/pasient/vitale")
    assert page.locator("svg.chart").count() >= 3
    page.goto(portal.url + "/helsepersonell/pasient")
    page.locator("article.report h3 a").first.click()
    _check(page, "report", problems)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("portal_kind", ["citizen", "practitioner"])
def test_pages_fit_a_phone(portal: Portal, new_page: Any, portal_kind: str) -> None:
    page = new_page(width=375, height=740)
    if portal_kind == "citizen":
        log_in_citizen(page, portal.url, "hjertesvikt-oslo")
        paths = ["/", "/innbygger/", *CITIZEN_PAGES]
    else:
        log_in_practitioner(page, portal.url, "sykepleier-sykehus")
        look_up(page, CITIZENS["hjertesvikt-oslo"]["fnr"])
        paths = PRACTITIONER_PAGES
    problems: list[str] = []
    for path in paths:
        page.goto(portal.url + path)
        overflow = horizontal_overflow(page)
        if overflow > 0:
            problems.append(f"{path} is {overflow}px wider than a phone")
        _check(page, f"{path} (phone)", problems)
    assert not problems, "\n".join(problems)


def test_the_practitioner_sees_the_patient_has_restricted_data(portal: Portal, new_page: Any) -> None:
    citizen = CITIZENS["kols-hamar"]
    page = new_page()
    log_in_citizen(page, portal.url, citizen["key"])
    page.goto(portal.url + "/innbygger/personvern")
    page.check("#sperring input[name=omfang][value=alle]")
    page.locator("#sperring form[method=post] button[type=submit]").click()
    assert "Sperringen er registrert" in page.locator(".flash").inner_text()

    hp = new_page()
    log_in_practitioner(hp, portal.url, "sykepleier-hamar")
    look_up(hp, citizen["fnr"])
    notice = hp.locator(".notice.withheld").inner_text()
    assert "sperret opplysninger for helsepersonell" in notice
    assert hp.locator("article.report").count() == 0
    hp.goto(portal.url + "/helsepersonell/")
    look_up(hp, citizen["fnr"], "samtykke", consent_blocked=True)
    assert hp.locator("article.report").count() > 0
    assert "Pasienten ser i tilgangsloggen" in hp.locator(".notice.emergency").inner_text()

    page.goto(portal.url + "/innbygger/logg")
    assert re.search(r"Sperring overstyrt", page.locator("ol.log").inner_text())
