"""Portal page response times with the demo data.

    .venv/bin/python bench/portal.py [--rounds 40] [--persons 60]

Loads the demo data into a fresh SQLite database, starts the service (with the portals) as its own
process on a loopback port, logs in as a demo citizen and a demo practitioner the way a browser does
(CSRF token, session cookie), and requests each main page of both portals `--rounds` times one after the
other, after a warm-up. Every page view is a full request: token verification, one AccessPolicy, the
reads through the Repository with their audit entries, and the HTML. Prints p50/p95/max per page and the
p95 over all page views, and replaces the 'portal' section of bench/RESULTS.md. Target: p95 ≤ 200 ms.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from common import free_port, header, markdown_table, percentile, print_table, update_results

TARGET_MS = 200.0
CITIZEN = "hjertesvikt-oslo"
PRACTITIONER = "lege-sykehus"


def serve_forever(db_url: str, port: int, var_dir: str) -> None:
    """The server process: the application as `kjerne serve --dev` builds it, with the portals mounted."""
    import uvicorn

    from kjerne.app import create_app
    from kjerne.config import Settings
    from kjerne.web.app import PORTAL_PATHS, routes

    settings = Settings(db_url=db_url, host="127.0.0.1", port=port, dev=True, var_dir=Path(var_dir))
    app = create_app(settings)
    if not set(PORTAL_PATHS) <= {getattr(r, "path", None) for r in app.routes}:
        app.router.routes.extend(routes(settings, app.state.engine))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


@contextlib.contextmanager
def server(db_url: str, var_dir: Path) -> Iterator[str]:
    port = free_port()
    log = open(var_dir / "server.log", "wb")  # noqa: SIM115 - closed below
    cmd = [sys.executable, __file__, "--serve", db_url, str(port), str(var_dir)]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError((var_dir / "server.log").read_text()[-2000:])
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not come up within 60 s")
            time.sleep(0.1)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
        log.close()


def csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    if not found:
        raise RuntimeError("no CSRF token on the page")
    return found.group(1)


def log_in(client: httpx.Client, portal: str, persona: str) -> str:
    page = client.get(f"/{portal}/logg-inn")
    r = client.post(f"/{portal}/logg-inn", data={"csrf": csrf(page.text), "persona": persona})
    r.raise_for_status()
    return r.text


def first_link(html: str, prefix: str) -> str:
    found = re.search(rf'href="({re.escape(prefix)}[^"#]+)"', html)
    if not found:
        raise RuntimeError(f"no link to {prefix}")
    return found.group(1).replace("&amp;", "&")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--persons", type=int, default=60)
    args = parser.parse_args()
    started = time.perf_counter()

    from kjerne.cli import main as kjerne
    from kjerne.demo.personas import personas

    patient = next(p for p in personas()["citizens"] if p["key"] == CITIZEN)
    with tempfile.TemporaryDirectory() as tmp:
        var = Path(tmp)
        db_url = f"sqlite:///{var / 'kjerne.db'}"
        with contextlib.redirect_stdout(None):
            kjerne(["demo", "--db", db_url, "--persons", str(args.persons)])
        with server(db_url, var) as url, httpx.Client(base_url=url, follow_redirects=True, timeout=30) as citizen:
            home = log_in(citizen, "innbygger", CITIZEN)
            pages = [
                ("citizen", "results", "/innbygger/"),
                ("citizen", "report (radiology)", first_link(re.sub(r"\s+", " ", home), "/innbygger/svar/demo-dr-")),
                ("citizen", "trend (creatinine)", "/innbygger/trend?analyse=creatinine"),
                ("citizen", "measurements (BP, 90 days)", "/innbygger/malinger?type=blood-pressure&periode=90"),
                ("citizen", "access log", "/innbygger/logg"),
                ("citizen", "privacy settings", "/innbygger/personvern"),
            ]
            with httpx.Client(base_url=url, follow_redirects=True, timeout=30) as hp:
                lookup = log_in(hp, "helsepersonell", PRACTITIONER)
                overview = hp.post(
                    "/helsepersonell/oppslag", data={"csrf": csrf(lookup), "fnr": patient["fnr"], "grunnlag": "normal"}
                ).text
                pages += [
                    ("practitioner", "overview", "/helsepersonell/pasient"),
                    ("practitioner", "cumulative table", "/helsepersonell/pasient/kumulativ"),
                    ("practitioner", "vital signs (90 days)", "/helsepersonell/pasient/vitale"),
                    ("practitioner", "report", first_link(overview, "/helsepersonell/pasient/svar/")),
                    (
                        "practitioner",
                        "duplicate check",
                        "/helsepersonell/pasient/bestilling?analyse=haemoglobin&analyse=creatinine",
                    ),
                ]
                timings: dict[str, list[float]] = {}
                for who, name, path in pages:
                    client = citizen if who == "citizen" else hp
                    for _ in range(args.warmup):
                        client.get(path).raise_for_status()
                    spent = timings.setdefault(f"{who}: {name}", [])
                    for _ in range(args.rounds):
                        t0 = time.perf_counter()
                        r = client.get(path)
                        spent.append(time.perf_counter() - t0)
                        if r.status_code != 200 or "logg-inn" in str(r.url):
                            raise RuntimeError(f"{path} answered {r.status_code} at {r.url}")

    rows = []
    for name, values in timings.items():
        rows.append(
            [
                name,
                f"{percentile(values, 50) * 1000:.1f}",
                f"{percentile(values, 95) * 1000:.1f}",
                f"{max(values) * 1000:.1f}",
            ]
        )
    everything = [v for values in timings.values() for v in values]
    p95 = percentile(everything, 95) * 1000
    headers = ["page", "p50 ms", "p95 ms", "max ms"]
    print_table(headers, rows)
    verdict = "met" if p95 <= TARGET_MS else "**missed**"
    print(f"\nall pages: p95 {p95:.1f} ms over {len(everything)} page views (target ≤ {TARGET_MS:.0f} ms: {verdict})")
    body = "\n".join(
        [
            "## Portal: page response times",
            "",
            header(started).rstrip(),
            "",
            f"Demo data for {args.persons} citizens on SQLite; the service with both portals as its own process on "
            f"127.0.0.1, one worker. One browser-like client per portal (session cookie, keep-alive) requests each "
            f"page {args.rounds} times in a row after {args.warmup} warm-up requests; the citizen is "
            f"`{CITIZEN}`, the practitioner `{PRACTITIONER}` with the same patient open. Each page view verifies "
            "the token, builds one AccessPolicy and reads through the Repository (with its audit entries).",
            "",
            markdown_table(headers, rows),
            "",
            f"All pages: p95 **{p95:.1f} ms** over {len(everything)} page views. Target p95 ≤ {TARGET_MS:.0f} ms: "
            f"{verdict}.",
            "",
            f"Notes: load average on the machine at the end of the run {os.getloadavg()[0]:.1f} (2 cores; other "
            "processes share them). Every page view commits at least one audit entry with `synchronous=FULL`; the "
            "slowest pages are the ones that call `$lastn` (latest value of each measurement type: one subquery "
            "per code, each with the access filter).",
        ]
    )
    update_results("portal", body)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--serve":
        serve_forever(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        sys.exit(main())
