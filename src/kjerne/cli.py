"""The `kjerne` command: serve, db, demo, import, token."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from kjerne.config import Settings


def _settings(args: argparse.Namespace) -> Settings:
    s = Settings.from_env()
    if getattr(args, "db", None):
        s.db_url = args.db
    if getattr(args, "host", None):
        s.host = args.host
    if getattr(args, "port", None):
        s.port = args.port
    if getattr(args, "dev", False):
        s.dev = True
    return s


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    s = _settings(args)
    os.environ.update(KJERNE_DB=s.db_url, KJERNE_HOST=s.host, KJERNE_PORT=str(s.port))
    if s.dev:
        os.environ["KJERNE_DEV"] = "1"
    base = s.public_base()
    print(f"Kjerne on {base}")
    print(f"  FHIR API:        {base}/fhir  (capabilities: {base}/fhir/metadata)")
    print(f"  database:        {s.db_url}")
    if s.dev:
        print("  tokens (dev):    .venv/bin/kjerne token citizen --pid <fnr>   |   kjerne token --help")
    print("Stop with Ctrl-C.")
    sys.stdout.flush()
    if args.workers and args.workers > 1:
        uvicorn.run(
            "kjerne.app:asgi", factory=True, host=s.host, port=s.port, workers=args.workers, log_level="warning"
        )
    else:
        from kjerne.app import create_app

        uvicorn.run(create_app(s), host=s.host, port=s.port, log_level="warning")
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from kjerne.store.migrate import upgrade

    upgrade(_settings(args).db_url)
    print("database is at the newest schema")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from kjerne.demo.generate import generate
    from kjerne.store.bundles import BundleProcessor
    from kjerne.store.db import make_engine
    from kjerne.store.migrate import upgrade
    from kjerne.store.repository import Repository

    s = _settings(args)
    upgrade(s.db_url)
    repo = Repository(make_engine(s.db_url), base_url=s.fhir_base())
    started = time.perf_counter()
    created = updated = 0
    for bundle in generate(seed=args.seed, persons=args.persons):
        out = BundleProcessor(repo).transaction(bundle)
        for e in out["entry"]:
            status = e["response"]["status"]
            created += status.startswith("201")
            updated += status.startswith("200")
    print(f"demo data: {created} created, {updated} already present, {time.perf_counter() - started:.1f}s")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from kjerne.importer import run_import
    from kjerne.store.db import make_engine
    from kjerne.store.repository import Repository

    s = _settings(args)
    repo = Repository(make_engine(s.db_url), base_url=s.fhir_base())
    summary = run_import(repo, [Path(p) for p in args.paths], progress=sys.stderr.isatty())
    c = summary.counts
    print(f"created {c['created']}, updated {c['updated']}, unchanged {c['unchanged']}, rejected {c['rejected']}")
    for where, reason in summary.rejected:
        print(f"  rejected {where}: {reason}")
    return 1 if summary.rejected else 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kjerne", description="Kjerne national health-data sharing services")
    sub = p.add_subparsers(dest="command", required=True)

    def db_flag(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--db", help="sqlite:///path or postgresql://… (default $KJERNE_DB or sqlite:///var/kjerne.db)")

    sp = sub.add_parser("serve", help="run the HTTP service")
    db_flag(sp)
    sp.add_argument("--host")
    sp.add_argument("--port", type=int)
    sp.add_argument("--workers", type=int, default=1)
    sp.add_argument("--dev", action="store_true", help="turn on the built-in development token issuer")
    sp.set_defaults(func=cmd_serve)

    sp = sub.add_parser("db", help="database schema")
    dbsub = sp.add_subparsers(dest="db_command", required=True)
    up = dbsub.add_parser("upgrade", help="apply Alembic migrations")
    db_flag(up)
    up.set_defaults(func=cmd_db_upgrade)

    sp = sub.add_parser("demo", help="load the synthetic demo data (idempotent)")
    db_flag(sp)
    sp.add_argument("--seed", type=int, default=1)
    sp.add_argument("--persons", type=int, default=60)
    sp.set_defaults(func=cmd_demo)

    sp = sub.add_parser("import", help="import FHIR JSON / Bundles / NDJSON files or folders")
    db_flag(sp)
    sp.add_argument("paths", nargs="+")
    sp.set_defaults(func=cmd_import)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
