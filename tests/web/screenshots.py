"""Screenshots of the portals' main pages for docs/screenshots/.

    .venv/bin/python tests/web/screenshots.py

Starts a server with the demo data on a fresh database, walks through both portals in Chromium and
writes one PNG per page (a desktop window, and two pages at phone width).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from playwright.sync_api import sync_playwright
from portal_server import CHROMIUM, CHROMIUM_ARGS, REPO, demo_database, serve
from portal_steps import CITIZENS, log_in_citizen, log_in_practitioner, look_up

OUT = REPO / "docs" / "screenshots"


def shoot(page: Any, name: str) -> None:
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(OUT / f"{name}.png"))
    print(f"docs/screenshots/{name}.png")


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    heart = CITIZENS["hjertesvikt-oslo"]
    copd = CITIZENS["kols-hamar"]
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        directory = Path(tmp)
        db_url = demo_database(directory, persons=8)
        with serve(db_url, directory / "var") as portal:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            desktop = browser.new_context(viewport={"width": 1024, "height": 768})
            page = desktop.new_page()
            page.goto(portal.url + "/")
            shoot(page, "landing")

            log_in_practitioner(page, portal.url, "lege-sykehus")
            page.fill("#fnr", heart["fnr"])
            page.check("input[name=grunnlag][value=akutt]")
            page.fill("#begrunnelse", "Innlagt med akutt tung pust, trenger siste prøvesvar")
            shoot(page, "helsepersonell-oppslag")
            page.click("form.lookup button[type=submit]")
            shoot(page, "helsepersonell-oversikt")
            page.goto(portal.url + "/helsepersonell/pasient/kumulativ")
            shoot(page, "helsepersonell-kumulativ")
            page.goto(portal.url + "/helsepersonell/pasient")
            page.locator("article[data-kind=radiology] h3 a").first.click()
            page.locator("#innsyn-h").scroll_into_view_if_needed()
            shoot(page, "helsepersonell-svar")
            page.goto(portal.url + "/helsepersonell/")
            look_up(page, copd["fnr"])
            page.goto(portal.url + "/helsepersonell/pasient/vitale?periode=30")
            shoot(page, "helsepersonell-vitale")

            citizen = browser.new_context(viewport={"width": 1024, "height": 768}).new_page()
            log_in_citizen(citizen, portal.url, heart["key"])
            shoot(citizen, "innbygger-provesvar")
            citizen.locator("article[data-kind=radiology] h2 a").first.click()
            shoot(citizen, "innbygger-radiologisvar")
            citizen.goto(portal.url + "/innbygger/")
            citizen.locator("table.results a[href*='analyse=creatinine']").first.click()
            shoot(citizen, "innbygger-trend")
            citizen.goto(portal.url + "/innbygger/malinger?type=blood-pressure&periode=90")
            shoot(citizen, "innbygger-malinger")
            citizen.goto(portal.url + "/innbygger/logg")
            shoot(citizen, "innbygger-tilgangslogg")
            citizen.goto(portal.url + "/innbygger/personvern?sok=Holmen&for=blokkering#sok-resultat")
            shoot(citizen, "innbygger-personvern")

            phone = browser.new_context(viewport={"width": 375, "height": 740}, device_scale_factor=1).new_page()
            log_in_citizen(phone, portal.url, copd["key"])
            shoot(phone, "mobil-innbygger-provesvar")
            phone.goto(portal.url + "/innbygger/malinger?type=oxygen-saturation&periode=30")
            shoot(phone, "mobil-innbygger-malinger")
            browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
