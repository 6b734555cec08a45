"""A real Kjerne server for the browser tests, the screenshots and the portal benchmark: a fresh SQLite
database with the demo data, the application with its development issuer, served by uvicorn on a free
loopback port in a background thread."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from kjerne.app import create_app
from kjerne.cli import main as kjerne
from kjerne.config import Settings
from kjerne.web.app import PORTAL_PATHS, routes

REPO = Path(__file__).resolve().parents[2]
AXE = REPO / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@dataclass(frozen=True)
class Portal:
    url: str
    settings: Settings


def demo_database(directory: Path, persons: int = 10) -> str:
    """A migrated SQLite database under `directory` with the demo data for `persons` citizens."""
    url = f"sqlite:///{directory / 'kjerne.db'}"
    with contextlib.redirect_stdout(None):
        kjerne(["demo", "--db", url, "--persons", str(persons)])
    return url


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def application(settings: Settings):  # type: ignore[no-untyped-def]
    app = create_app(settings)
    mounted = {getattr(r, "path", None) for r in app.routes}
    if not set(PORTAL_PATHS) <= mounted:
        # The portals are part of the application; mount them here when this build does not.
        app.router.routes.extend(routes(settings, app.state.engine))
    return app


@contextlib.contextmanager
def serve(db_url: str, var_dir: Path) -> Iterator[Portal]:
    port = free_port()
    settings = Settings(db_url=db_url, host="127.0.0.1", port=port, dev=True, var_dir=var_dir)
    app = application(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, name="kjerne-portal", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the portal server did not start")
        time.sleep(0.05)
    try:
        yield Portal(f"http://127.0.0.1:{port}", settings)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        app.state.engine.dispose()
