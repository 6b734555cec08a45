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
    print(f"  portals:         {base}/innbygger/   {base}/helsepersonell/")
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
        out = BundleProcessor(repo, minimal=True).transaction(bundle)
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


def cmd_token(args: argparse.Namespace) -> int:
    from kjerne.api.auth import dev_issuer

    dev = dev_issuer(_settings(args))
    try:
        if args.kind == "citizen":
            print(dev.citizen_token(args.pid))
        elif args.kind == "practitioner":
            print(
                dev.practitioner_token(
                    hpr=args.hpr,
                    pid=args.pid,
                    org=args.org,
                    child_org=args.child_org,
                    purpose=args.purpose,
                    patients=args.patient,
                    name=args.name,
                )
            )
        else:
            print(dev.system_token(org=args.org, scope=args.scope))
    except ValueError as exc:
        print(f"kjerne token: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from kjerne.audit.log import verify
    from kjerne.store.db import make_engine

    result = verify(make_engine(_settings(args).db_url))
    if result.ok:
        print(f"audit log intact: {result.checked} entries verified")
        return 0
    print(
        f"audit log BROKEN at entry {result.broken_at}: {result.reason} ({result.checked} entries before it verified)"
    )
    return 1


def cmd_restrictions_apply(args: argparse.Namespace) -> int:
    from kjerne.store.db import make_engine
    from kjerne.store.reservations import purge_due

    done = purge_due(make_engine(_settings(args).db_url))
    for item in done:
        print(f"Consent/{item.consent_id}: {item.resources} resources of Patient/{item.patient} deleted")
    print(f"{len(done)} reservasjon(er) carried out")
    return 0


def cmd_stats_producers(args: argparse.Namespace) -> int:
    import json

    from kjerne.services.ingest_log import producer_stats
    from kjerne.store.db import make_engine

    stats = producer_stats(make_engine(_settings(args).db_url), days=args.days)
    if args.json:
        print(json.dumps(stats, indent=1, ensure_ascii=False))
        return 0
    if not stats:
        print(f"no deliveries in the last {args.days} days")
    for p in stats:
        lag = p["lag_seconds"]
        per_day = p["reports_per_day"]
        avg = sum(per_day.values()) / max(1, len(per_day))
        print(f"{p['producer']}  {p['name'] or ''}")
        print(
            f"  latest delivery {p['latest']}; {p['delivered']} messages, {avg:.1f} reports/day on {len(per_day)} days"
        )
        if lag["median"] is not None:
            print(f"  delivery lag: median {lag['median']:.0f}s, p95 {lag['p95']:.0f}s, max {lag['max']:.0f}s")
        print(f"  rejected: {p['rejected_count']}, accepted with warnings: {p['warnings']}")
        for r in p["rejected"][-5:]:
            first = (r["reasons"] or "").splitlines()[0] if r["reasons"] else ""
            print(f"    {r['received']} {r['msg_id'] or ''}: {first}")
    return 0


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

    sp = sub.add_parser("token", help="print a signed token from the built-in development issuer")
    tsub = sp.add_subparsers(dest="kind", required=True)
    t = tsub.add_parser("citizen", help="a citizen at security level 4")
    t.add_argument("--pid", required=True, help="the citizen's fødselsnummer")
    t = tsub.add_parser("practitioner", help="health personnel with a tillitsrammeverk attestation")
    t.add_argument("--hpr", required=True)
    t.add_argument("--pid", required=True, help="the practitioner's own fødselsnummer")
    t.add_argument("--org", required=True, help="legal entity organisation number")
    t.add_argument("--child-org", help="point of care organisation number")
    t.add_argument("--purpose", default="TREAT", choices=["TREAT", "ETREAT", "COC", "BTG"])
    t.add_argument("--patient", action="append", required=True, help="an attested patient's fødselsnummer")
    t.add_argument("--name")
    t = tsub.add_parser("system", help="a producer or platform client")
    t.add_argument("--org", required=True)
    t.add_argument("--scope", default="system/*.write")
    sp.set_defaults(func=cmd_token)

    sp = sub.add_parser("audit", help="the audit log")
    asub = sp.add_subparsers(dest="audit_command", required=True)
    v = asub.add_parser("verify", help="check the hash chain; report the first broken link")
    db_flag(v)
    v.set_defaults(func=cmd_audit_verify)

    sp = sub.add_parser("restrictions", help="restrictions that take effect later")
    rsub = sp.add_subparsers(dest="restrictions_command", required=True)
    ra = rsub.add_parser("apply", help="delete the data of every reservasjon whose start date has come")
    db_flag(ra)
    ra.set_defaults(func=cmd_restrictions_apply)

    sp = sub.add_parser("stats", help="usage and delivery statistics")
    ssub = sp.add_subparsers(dest="stats_command", required=True)
    st = ssub.add_parser("producers", help="deliveries per lab and radiology unit: volume, latest, lag, rejections")
    db_flag(st)
    st.add_argument("--days", type=int, default=30)
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_stats_producers)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
