"""Ingest: laboratory transaction Bundles POSTed over HTTP, in resources per second.

Each Bundle is what a laboratory delivers for one report: 1 DiagnosticReport, 10 Observations, 1 Specimen
and 1 ServiceRequest (13 resources), POSTs with urn:uuid references, the patient named only by
fødselsnummer so identity resolution runs (the first Bundle for a person creates the Patient). About
1,000 distinct patients. Client threads with keep-alive connections send them to `kjerne serve` on
loopback, with one and with two uvicorn workers.

In the same run the same rows (resource rows and their index rows, the Patients identity resolution
creates included, made beforehand by the store's own BundleProcessor in a scratch database) are inserted
directly with SQLAlchemy Core executemany, one transaction per Bundle, from as many threads, with no
validation, identity look-ups, version checks or audit: the raw rate the database and driver allow.
API/raw is the share of that the service achieves. On PostgreSQL the raw run is repeated with the index
rows sent by COPY.

    .venv/bin/python bench/ingest.py [--db sqlite|postgres|both] [--bundles N] [--clients 4]
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine, func, insert, select

import common as c
from kjerne.store.db import make_engine
from kjerne.store.migrate import upgrade
from kjerne.store.schema import resource

RESOURCES_PER_BUNDLE = 13
TARGET_PG = 2000  # resources/s


@dataclass
class Run:
    db: str
    mode: str  # "API, 1 worker" | "API, 2 workers" | "raw inserts"
    bundles: int
    seconds: float
    latencies: list[float] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)  # client/server/database CPU seconds
    rows: dict[str, int] = field(default_factory=dict)
    other: float = 0.0  # share of the machine other processes used during the run

    def __post_init__(self) -> None:
        machine = self.cpu.pop("machine", None)
        if machine is not None:
            self.other = max(0.0, machine - sum(self.cpu.values())) / (self.seconds * c.ncpu())

    @property
    def resources_per_s(self) -> float:
        return self.bundles * RESOURCES_PER_BUNDLE / self.seconds


# -- the workload ----------------------------------------------------------------------------------


def workload(n_bundles: int, n_patients: int, seed: int) -> tuple[list[str], list[dict[str, Any]]]:
    """Bundles for patients in a shuffled cycle, so every patient gets one before any gets two."""
    fnrs = c.synthetic_fnrs(n_patients, seed)
    random.Random(seed).shuffle(fnrs)
    rng = random.Random(f"bench-ingest:{seed}")
    owners = [fnrs[i % n_patients] for i in range(n_bundles)]
    return owners, [c.lab_bundle(rng, fnr) for fnr in owners]


def fan_out(n: int, threads: int, work: Callable[[int, Any], None], setup: Callable[[], Any]) -> float:
    """Run work(i, state) for i in range(n) on `threads` threads (state from setup() per thread);
    returns the wall time from the first start to the last finish."""
    lock = threading.Lock()
    nxt = [0]
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads + 1)

    def loop() -> None:
        state = setup()
        barrier.wait()
        try:
            while True:
                with lock:
                    i = nxt[0]
                    nxt[0] += 1
                if i >= n or errors:
                    return
                work(i, state)
        except BaseException as exc:  # reported by the caller
            errors.append(exc)
        finally:
            close = getattr(state, "close", None)
            if close:
                close()

    pool = [threading.Thread(target=loop, daemon=True) for _ in range(threads)]
    for t in pool:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in pool:
        t.join()
    took = time.perf_counter() - started
    if errors:
        raise errors[0]
    return took


# -- through the API ---------------------------------------------------------------------------------


def run_api(db: str, db_url: str, var: Path, bodies: list[bytes], *, workers: int, clients: int, warmup: int,
            pg_pid: int | None, profile: Path | None = None) -> Run:
    upgrade(db_url)
    with c.server(db_url, var, workers=workers) as srv:
        token = c.issuer_for(var, srv.port).system_token(org=c.PRODUCER_ORG, scope="system/*.write")
        headers = {"authorization": f"Bearer {token}", "content-type": "application/fhir+json"}
        latencies: list[float] = [0.0] * len(bodies)
        created = [0] * len(bodies)

        def post(i: int, client: c.LoadClient) -> None:
            t0 = time.perf_counter()
            r = client.post("/fhir/", content=bodies[i], headers=headers)
            latencies[i] = time.perf_counter() - t0
            if r.status_code != 200:
                raise RuntimeError(f"bundle {i}: HTTP {r.status_code}: {r.text[:500]}")
            created[i] = r.content.count(b'"status":"201 Created"')

        def client() -> c.LoadClient:
            return c.LoadClient(srv.url)

        fan_out(warmup, clients, post, client)
        c.analyse(db_url)
        c.wait_for_quiet()
        timed = bodies[warmup:]
        offset = warmup
        with c.py_spy(srv.process.pid, profile, gil=True):
            cpu0 = _cpu(srv.process.pid, pg_pid)
            took = fan_out(len(timed), clients, lambda i, cl: post(i + offset, cl), client)
            cpu1 = _cpu(srv.process.pid, pg_pid)
    if sum(created) != RESOURCES_PER_BUNDLE * len(bodies):
        raise RuntimeError(f"expected {RESOURCES_PER_BUNDLE * len(bodies)} resources created, got {sum(created)}")
    mode = f"API, {workers} worker{'s' if workers > 1 else ''}"
    run = Run(db, mode, len(timed), took, latencies[warmup:], {k: cpu1[k] - cpu0[k] for k in cpu0})
    run.rows = row_counts(db_url)
    return run


def _cpu(server_pid: int | None, pg_pid: int | None) -> dict[str, float]:
    out = {"machine": c.machine_busy(), "client": c.own_cpu()}
    if server_pid is not None:
        out["server"] = c.tree_cpu(server_pid)
    if pg_pid is not None:
        out["database"] = c.tree_cpu(pg_pid)
    return out


def row_counts(db_url: str) -> dict[str, int]:
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            out = {"resource": conn.execute(select(func.count()).select_from(resource)).scalar_one()}
            out["index rows"] = sum(
                conn.execute(select(func.count()).select_from(t)).scalar_one() for t in c.ROW_TABLES + c.SIDE_TABLES
            )
            return out
    finally:
        engine.dispose()


# -- raw inserts ---------------------------------------------------------------------------------------

_TABLES = {t.name: t for t in c.ROW_TABLES + c.SIDE_TABLES}


@dataclass
class Prepared:
    """One Bundle's rows: resource rows in write order, per index table (resource position, row), and the
    rows of tables that do not name a resource (patient_code)."""

    resources: list[dict[str, Any]]
    index: dict[str, list[tuple[int, dict[str, Any]]]]
    side: dict[str, list[dict[str, Any]]]


def row_total(p: Prepared) -> int:
    return len(p.resources) + sum(len(v) for v in p.index.values()) + sum(len(v) for v in p.side.values())


def prepare(bundles: list[dict[str, Any]], var: Path) -> list[Prepared]:
    """The rows the store writes for each Bundle, Patients created by identity resolution included: the
    store's own BundleProcessor writes them, for the same producer as the API runs, into a scratch
    database and they are read back. Not timed."""
    scratch = c.Scratch()
    policy = c.producer_policy(scratch.engine, var)
    out = []
    for bundle in bundles:
        written, side = scratch.transaction(orjson.loads(orjson.dumps(bundle)), policy)
        resources = []
        index: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        for pos, rows in enumerate(written):
            resources.append(dict(zip(c.RESOURCE_COLUMNS[1:], rows["resource"][0][1:], strict=True)))
            for table, table_rows in rows.items():
                if table != "resource":
                    cols = c.INDEX_COLUMNS[table]
                    index.setdefault(table, []).extend((pos, dict(zip(cols, r, strict=True))) for r in table_rows)
        side_rows = {t: [dict(zip(c.INDEX_COLUMNS[t], r, strict=True)) for r in rows] for t, rows in side.items()}
        out.append(Prepared(resources, index, side_rows))
    return out


def insert_bundle(engine: Engine, p: Prepared) -> None:
    with engine.connect() as conn:
        conn.info["sqlite_write"] = True
        with conn.begin():
            rids = conn.execute(
                insert(resource).returning(resource.c.rid, sort_by_parameter_order=True), p.resources
            ).scalars().all()
            for table, rows in p.index.items():
                for pos, row in rows:
                    row["rid"] = rids[pos]
                conn.execute(insert(_TABLES[table]), [row for _, row in rows])
            for table, side_rows in p.side.items():
                conn.execute(insert(_TABLES[table]), side_rows)


def copy_bundle(engine: Engine, p: Prepared) -> None:
    """The same rows, with the index rows sent by COPY (PostgreSQL only)."""
    with engine.connect() as conn, conn.begin():
        rids = conn.execute(
            insert(resource).returning(resource.c.rid, sort_by_parameter_order=True), p.resources
        ).scalars().all()
        cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        for table, rows in p.index.items():
            cols = c.INDEX_COLUMNS[table]
            with cur.copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN") as cp:
                for pos, row in rows:
                    row["rid"] = rids[pos]
                    cp.write_row(tuple(row[col] for col in cols))
        for table, side_rows in p.side.items():
            conn.execute(insert(_TABLES[table]), side_rows)


def run_raw(db: str, db_url: str, prepared: list[Prepared], *, clients: int, warmup: int,
            pg_pid: int | None, copy: bool = False) -> Run:
    upgrade(db_url)
    engine = make_engine(db_url)
    write = copy_bundle if copy else insert_bundle
    try:
        latencies = [0.0] * len(prepared)

        def work(i: int, _state: Any) -> None:
            t0 = time.perf_counter()
            write(engine, prepared[i])
            latencies[i] = time.perf_counter() - t0

        fan_out(warmup, clients, work, lambda: None)
        c.analyse(db_url)
        c.wait_for_quiet()
        offset = warmup
        cpu0 = _cpu(None, pg_pid)
        took = fan_out(len(prepared) - warmup, clients, lambda i, s: work(i + offset, s), lambda: None)
        cpu1 = _cpu(None, pg_pid)
    finally:
        engine.dispose()
    cpu = {k: cpu1[k] - cpu0[k] for k in cpu0}
    cpu["inserter"] = cpu.pop("client")
    run = Run(db, "raw, index rows by COPY" if copy else "raw inserts", len(prepared) - warmup, took,
              latencies[warmup:], cpu)
    run.rows = row_counts(db_url)
    return run


# -- reporting ---------------------------------------------------------------------------------------------


def ceiling(run: Run) -> float:
    """The rate the measured CPU cost allows on this machine's cores with nothing else running: the
    service's processes and the database share the cores, and one Python process uses at most one."""
    per = {k: v / (run.bundles * RESOURCES_PER_BUNDLE) for k, v in run.cpu.items()}
    python = per.get("server", per.get("inserter", 0.0))
    workers = 2 if "2 workers" in run.mode else 1
    total = python + per.get("database", 0.0)
    return min(workers / python if python else float("inf"), c.ncpu() / total if total else float("inf"))


def cpu_text(run: Run) -> str:
    per = 1000 / (run.bundles * RESOURCES_PER_BUNDLE)
    return ", ".join(f"{k} {v * per:.2f}" for k, v in run.cpu.items())


def report(runs: list[Run], args: argparse.Namespace, started: float, pg_note: str) -> None:
    headers = ["database", "path", "resources/s", "bundles/s", "bundle p50 ms", "bundle p99 ms",
               "API/raw", "CPU ms per resource", "CPU ceiling, resources/s", "other load"]
    raw = {r.db: r for r in runs if r.mode == "raw inserts"}
    rows = []
    for r in runs:
        base = raw.get(r.db)
        ratio = f"{r.resources_per_s / base.resources_per_s:.2f}" if base and r.mode.startswith("API") else ""
        rows.append([
            r.db, r.mode, f"{r.resources_per_s:,.0f}", f"{r.bundles / r.seconds:.1f}",
            c.ms(statistics.median(r.latencies)), c.ms(c.percentile(r.latencies, 99)), ratio, cpu_text(r),
            f"{ceiling(r):,.0f}", f"{r.other:.0%}",
        ])
    print()
    c.print_table(headers, rows)
    pg = [r for r in runs if r.db == "PostgreSQL" and r.mode.startswith("API")]
    verdict = ""
    if pg:
        best = max(pg, key=lambda r: r.resources_per_s)
        met = "met" if best.resources_per_s >= TARGET_PG else "missed"
        verdict = (f"Target ≥ {TARGET_PG:,} resources/s on PostgreSQL: **{met}** "
                   f"(best {best.resources_per_s:,.0f}, {best.mode}).\n\n")
        print(f"\n{verdict.strip()}")
    counts = [
        f"{r.db} {r.mode}: {r.rows.get('resource', 0):,} resource rows, {r.rows.get('index rows', 0):,} other rows"
        for r in runs
    ]
    body = (
        "## Ingest: lab transaction Bundles over HTTP\n\n"
        + c.header(started)
        + f"\n{args.bundles:,} Bundles of {RESOURCES_PER_BUNDLE} resources (1 DiagnosticReport, 10 Observations, "
        f"1 Specimen, 1 ServiceRequest) for {min(args.patients, args.bundles):,} patients named by fødselsnummer; "
        f"the first {args.warmup} Bundles of each run are a warm-up and not counted. {args.clients} client threads, "
        "each with its own keep-alive connection (`c.LoadClient`, on http.client), POST pre-serialised Bundles to "
        "`kjerne serve --dev` on 127.0.0.1. Resources/s counts the 13 resources of each Bundle; the Patients that "
        "identity resolution creates are extra. Each run starts on a fresh, migrated database; on PostgreSQL the "
        "tables are analysed after the warm-up (`c.analyse`), as autovacuum keeps them in a running service.\n\n"
        + markdown_table_runs(headers, rows)
        + "\n"
        + verdict
        + "Notes:\n\n"
        "- *raw inserts*: the same rows (resource rows and all their index rows, the Patients identity "
        "resolution creates included), made beforehand by the store's own BundleProcessor in a scratch "
        "SQLite database (so `extract` and the Writer's row shapes, not a copy of them) and inserted with "
        "SQLAlchemy Core executemany on the same driver, one transaction per Bundle, from the same number of "
        "threads. No validation, identity look-ups, version checks, audit entry or HTTP. API/raw is the API "
        "rate divided by this.\n"
        f"- {pg_note}\n"
        "- SQLite: WAL, `synchronous=FULL` (the store's own settings); one writer at a time.\n"
        "- CPU ms per resource: process CPU time during the timed part (client = this benchmark process, "
        "server = the uvicorn process tree, database = the PostgreSQL postmaster tree; with SQLite the database "
        "work is inside the server). The client, server and database share the machine's 2 cores, so the "
        "sum bounds the rate: 2 cores / (sum of CPU ms per resource). *Other load*: the share of the machine "
        "that processes outside the benchmark used during the timed part (from /proc/stat); each run waits "
        "for the machine to be quiet before it starts (up to 30 s). *CPU ceiling*: the rate the measured "
        "server and database CPU per resource would allow on the machine's cores with nothing else running "
        "(one uvicorn worker uses at most one core); the client's CPU is left out.\n"
        "- *raw, index rows by COPY*: as raw inserts, but the index rows go in with COPY instead of "
        "executemany: what the database itself can take for this schema.\n"
        "- Row counts after each run (resource rows; index and patient_code rows; the API also writes an audit "
        "entry per Bundle, not counted here): "
        + "; ".join(counts)
        + ".\n"
    )
    if args.profile:  # a profiled run's figures are perturbed by the sampler: keep them out of RESULTS.md
        body += c.hotspot_markdown(sorted(args.profile.glob("ingest-*.txt")),
                                   "Where the server's CPU goes (py-spy, `--profile`)")
        (args.profile / "ingest.md").write_text(body, encoding="utf-8")
        print(f"\nwrote {args.profile / 'ingest.md'} (RESULTS.md is left alone in a profiled run)")
        return
    c.update_results("ingest", body)


def markdown_table_runs(headers: list[str], rows: list[list[str]]) -> str:
    return c.markdown_table(headers, rows)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    p.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    p.add_argument("--bundles", type=int, default=1500, help="Bundles per run, warm-up included")
    p.add_argument("--patients", type=int, default=1000)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--warmup", type=int, default=40)
    p.add_argument("--workers", default="1,2", help="uvicorn worker counts to run, comma-separated")
    p.add_argument("--no-fsync", action="store_true", help="PostgreSQL with fsync off (not durable)")
    p.add_argument("--profile", type=Path, help="py-spy the server during the API runs (GIL samples); raw stacks "
                   "go here and the hotspots into RESULTS.md")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    c.stop_on_sigterm()
    started = time.perf_counter()
    workers = [int(w) for w in args.workers.split(",") if w]

    print(f"building {args.bundles} Bundles ...", flush=True)
    _, bundles = workload(args.bundles, args.patients, args.seed)
    bodies = [orjson.dumps(b) for b in bundles]
    print("preparing the raw rows (the store writes them into a scratch database; not timed) ...", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="kjerne-bench-ingest-"))
    runs: list[Run] = []
    try:
        prepared = prepare(bundles, tmp)
        if args.db in ("sqlite", "both"):
            for w in workers:
                print(f"SQLite, API with {w} worker(s) ...", flush=True)
                prof = args.profile / f"ingest-sqlite-{w}.txt" if args.profile else None
                runs.append(run_api("SQLite", f"sqlite:///{tmp}/api-{w}.db", tmp, bodies, workers=w,
                                    clients=args.clients, warmup=args.warmup, pg_pid=None, profile=prof))
                print(f"  {runs[-1].resources_per_s:,.0f} resources/s", flush=True)
            print("SQLite, raw inserts ...", flush=True)
            runs.append(run_raw("SQLite", f"sqlite:///{tmp}/raw.db", prepared,
                                clients=args.clients, warmup=args.warmup, pg_pid=None))
            print(f"  {runs[-1].resources_per_s:,.0f} resources/s", flush=True)
        pg_note = "PostgreSQL: not run."
        if args.db in ("postgres", "both"):
            with c.postgres(fsync=not args.no_fsync) as cluster:
                pg_pid = c.postmaster_pid(cluster)
                settings = ", ".join(f"{k}={v}" for k, v in c.PG_SETTINGS.items())
                durability = ("fsync=off, synchronous_commit=off, full_page_writes=off (NOT durable)"
                              if args.no_fsync else "fsync=on, synchronous_commit=on (every commit is flushed)")
                pg_note = f"PostgreSQL: {durability}; {settings}; local TCP connection."
                for w in workers:
                    print(f"PostgreSQL, API with {w} worker(s) ...", flush=True)
                    prof = args.profile / f"ingest-pg-{w}.txt" if args.profile else None
                    runs.append(run_api("PostgreSQL", cluster.create_database(f"api{w}"), tmp, bodies, workers=w,
                                        clients=args.clients, warmup=args.warmup, pg_pid=pg_pid, profile=prof))
                    print(f"  {runs[-1].resources_per_s:,.0f} resources/s", flush=True)
                print("PostgreSQL, raw inserts ...", flush=True)
                runs.append(run_raw("PostgreSQL", cluster.create_database("raw"), prepared, clients=args.clients,
                                    warmup=args.warmup, pg_pid=pg_pid))
                print(f"  {runs[-1].resources_per_s:,.0f} resources/s", flush=True)
                print("PostgreSQL, raw with COPY for the index rows ...", flush=True)
                runs.append(run_raw("PostgreSQL", cluster.create_database("rawcopy"), prepared,
                                    clients=args.clients, warmup=args.warmup, pg_pid=pg_pid, copy=True))
                print(f"  {runs[-1].resources_per_s:,.0f} resources/s", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report(runs, args, started, pg_note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
