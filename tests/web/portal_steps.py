"""Steps the browser tests share."""

from __future__ import annotations

import re
from typing import Any

from portal_server import AXE

from kjerne.demo.personas import personas

PERSONAS = personas()
CITIZENS = {p["key"]: p for p in PERSONAS["citizens"]}
PRACTITIONERS = {p["key"]: p for p in PERSONAS["practitioners"]}


def log_in_citizen(page: Any, url: str, key: str) -> None:
    page.goto(url + "/innbygger/")
    page.click(f"button[data-persona='{key}']")
    page.wait_for_url(url + "/innbygger/")


def log_in_practitioner(page: Any, url: str, key: str) -> None:
    page.goto(url + "/helsepersonell/")
    page.click(f"button[data-persona='{key}']")
    page.wait_for_url(url + "/helsepersonell/")


def look_up(page: Any, fnr: str, basis: str = "normal", reason: str = "", consent_blocked: bool = False) -> None:
    page.fill("#fnr", fnr)
    page.check(f"input[name=grunnlag][value={basis}]")
    if consent_blocked:
        page.check("input[name=sperret]")
    if reason:
        page.fill("#begrunnelse", reason)
    page.click("form.lookup button[type=submit]")


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """Serious and critical WCAG 2.1 A/AA violations axe-core finds on the page as it is now."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE))
    result = page.evaluate(
        """async () => {
            const r = await axe.run(document, {
                runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']},
                resultTypes: ['violations'],
            });
            return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}));
        }"""
    )
    return [v for v in result if v["impact"] in ("serious", "critical")]


def horizontal_overflow(page: Any) -> int:
    """How many pixels the page is wider than the window (0: nothing to scroll sideways)."""
    return int(page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth"))


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "the page has no CSRF field"
    return found.group(1)
