"""Search: a patient's laboratory Observations, newest first, 50 a page, as a practitioner sees them.

`POST /fhir/Observation/_search` with `category=laboratory&_sort=-date&_count=50` and the patient's
fødselsnummer in the `person-id` header, with a practitioner token whose attestation names that patient
(purpose TREAT). One request at a time over a keep-alive connection, each for a patient drawn at random,
so the access policy, the search and its audit entry are paid on every request. Latency percentiles at
each size of the store, through HTTP and in-process (`Repository.search` with the same AccessPolicy and
the same bundle rendering, no HTTP), to separate the HTTP overhead.

Data: Observations spread over patients, `dataset.PER_PATIENT` each (about 85 % laboratory results, the
rest home measurements) plus `dataset.HEAVY` heavy patients with `dataset.HEAVY_OBS` each, bulk-loaded as
the store itself would have written them (see bench/dataset.py) and then VACUUM ANALYZEd. The database
grows from one size to the next. Every response is checked: its total must equal the number of laboratory
Observations loaded for that patient, its first page must be 50 entries newest first.

    .venv/bin/python bench/search.py [--db sqlite|postgres|both] [--sizes 100000,1000000]
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from sqlalchemy import Engine, event, text

import common as c
import dataset as d
from kjerne.access.policy import AccessPolicy, RequestInfo
from kjerne.api.auth import build_verifier
from kjerne.api.fhir_routes import scope_to_person
from kjerne.api.render import search_bundle
from kjerne.config import Settings
from kjerne.store.db import make_engine
from kjerne.store.migrate import upgrade
from kjerne.store.repository import Repository

QUERY = [("category", "laboratory"), ("_sort", "-date"), ("_count", "50")]
TARGET_P99_MS = 50.0


@dataclass
class Measured:
    db: str
    size: int
    patients: int
    load_s: float
    load_phases: dict[str, float]
    http: list[float] = field(default_factory=list)
    heavy_http: list[float] = field(default_factory=list)
    inproc: dict[str, list[float]] = field(default_factory=dict)  # verify/policy/search/render/total
    heavy_inproc: list[float] = field(default_factory=list)
    checked: int = 0
    statements: list[tuple[float, int, str]] = field(default_factory=list)  # (median s, runs, SQL)
    plan: str = ""
    other: float = 0.0
    cpu_per_request: float = 0.0  # server and database CPU seconds per timed HTTP request


def practitioner_token(issuer: Any, fnr: str) -> str:
    p = c.PRACTITIONER
    return str(issuer.practitioner_token(hpr=p["hpr"], pid=p["pid"], org=p["org"], patients=[fnr], purpose="TREAT"))


def check(body: dict[str, Any], expected: int, fnr: str) -> None:
    total = body.get("total")
    entries = [e for e in body.get("entry", []) if e.get("search", {}).get("mode") == "match"]
    if total != expected:
        raise AssertionError(f"patient {fnr}: the search says total {total}, {expected} were loaded")
    if len(entries) != min(50, expected):
        raise AssertionError(f"patient {fnr}: {len(entries)} entries on the first page, expected {min(50, expected)}")
    dates = [e["resource"]["effectiveDateTime"] for e in entries]
    if any(e["resource"].get("category", [{}])[0].get("coding", [{}])[0].get("code") != "laboratory"
           for e in entries):
        raise AssertionError(f"patient {fnr}: a non-laboratory Observation on the page")
    if dates != sorted(dates, reverse=True):
        raise AssertionError(f"patient {fnr}: the page is not newest first")


@dataclass
class Counts:
    http: int
    inproc: int
    heavy: int
    warmup: int


def measure(db: str, db_url: str, engine: Engine, var: Path, patients: list[d.PatientPlan], lab: dict[str, int],
            args: argparse.Namespace, m: Measured, profile: Path | None, n: Counts) -> None:
    rng = random.Random(f"bench-search:{args.seed}:{m.size}")
    typical = [p for p in patients if not p.heavy]
    heavy = [p for p in patients if p.heavy]
    warm = [rng.choice(typical) for _ in range(n.warmup)]
    sample = [rng.choice(typical) for _ in range(n.http)]
    heavy_sample = [heavy[i % len(heavy)] for i in range(n.heavy)] if heavy else []
    with c.server(db_url, var) as srv:
        issuer = c.issuer_for(var, srv.port)
        tokens: dict[str, str] = {}
        for p in warm + sample + heavy_sample:
            if p.fnr not in tokens:
                tokens[p.fnr] = practitioner_token(issuer, p.fnr)
        form = "&".join(f"{k}={v}" for k, v in QUERY)

        def http(client: httpx.Client, p: d.PatientPlan) -> float:
            headers = {"authorization": f"Bearer {tokens[p.fnr]}", "person-id": p.fnr,
                       "content-type": "application/x-www-form-urlencoded"}
            t0 = time.perf_counter()
            r = client.post(srv.url + "/fhir/Observation/_search", content=form, headers=headers)
            took = time.perf_counter() - t0
            if r.status_code != 200:
                raise AssertionError(f"HTTP {r.status_code}: {r.text[:500]}")
            check(orjson.loads(r.content), lab[p.pid], p.fnr)
            m.checked += 1
            return took

        with httpx.Client(timeout=60) as client:
            for p in warm:
                http(client, p)
            c.wait_for_quiet()
            busy0, t0 = c.machine_busy(), time.perf_counter()
            service0 = c.tree_cpu(srv.process.pid) + (c.tree_cpu(args.pg_pid) if args.pg_pid else 0)
            cpu0 = c.own_cpu() + service0
            with c.py_spy(srv.process.pid, profile, gil=True):
                m.http = [http(client, p) for p in sample]
            service1 = c.tree_cpu(srv.process.pid) + (c.tree_cpu(args.pg_pid) if args.pg_pid else 0)
            cpu1 = c.own_cpu() + service1
            m.cpu_per_request = (service1 - service0) / len(sample)
            wall = time.perf_counter() - t0
            m.other = max(0.0, (c.machine_busy() - busy0) - (cpu1 - cpu0)) / (wall * c.ncpu())
            m.heavy_http = [http(client, p) for p in heavy_sample]

        settings = Settings(db_url=db_url, dev=True, var_dir=var, host="127.0.0.1", port=srv.port)
        verifier = build_verifier(settings)
        base = settings.fhir_base()

        def inproc(p: d.PatientPlan) -> dict[str, float]:
            t0 = time.perf_counter()
            principal = verifier.verify(f"Bearer {tokens[p.fnr]}")
            t1 = time.perf_counter()
            policy = AccessPolicy(engine, principal, RequestInfo(person_id=p.fnr))
            repo = Repository(engine, policy, base_url=base)
            pairs = scope_to_person(repo, "Observation", list(QUERY), p.fnr)
            t2 = time.perf_counter()
            result = repo.search("Observation", pairs)
            t3 = time.perf_counter()
            body = orjson.dumps(search_bundle(result, base, "Observation", policy.withheld_outcome()))
            t4 = time.perf_counter()
            check(orjson.loads(body), lab[p.pid], p.fnr)
            m.checked += 1
            return {"verify token": t1 - t0, "policy": t2 - t1, "search": t3 - t2, "render": t4 - t3,
                    "total": t4 - t0}

        for p in warm[:10]:
            inproc(p)
        parts = [inproc(p) for p in sample[: n.inproc]]
        m.inproc = {k: [x[k] for x in parts] for k in parts[0]}
        m.heavy_inproc = [inproc(p)["total"] for p in heavy_sample[: max(3, n.heavy // 3)]]
        m.statements, m.plan = sql_profile(engine, verifier, tokens, sample[:10], base, db)


def sql_profile(engine: Engine, verifier: Any, tokens: dict[str, str], sample: list[d.PatientPlan], base: str,
                db: str) -> tuple[list[tuple[float, int, str]], str]:
    """The SQL a search runs (policy and audit included): per distinct statement, the median time from
    the driver call to its return over `sample` searches and how often it ran per search; and the plans
    of the statements that read the resource table, from the first patient of the sample."""
    seen: list[tuple[float, str, Any]] = []
    starts: list[float] = []

    def before(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        starts.append(time.perf_counter())

    def after(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        seen.append((time.perf_counter() - starts.pop(), statement, parameters))

    first: list[tuple[float, str, Any]] = []
    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    try:
        for p in sample:
            principal = verifier.verify(f"Bearer {tokens[p.fnr]}")
            policy = AccessPolicy(engine, principal, RequestInfo(person_id=p.fnr))
            repo = Repository(engine, policy, base_url=base)
            repo.search("Observation", scope_to_person(repo, "Observation", list(QUERY), p.fnr))
            if not first:
                first = list(seen)
    finally:
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "after_cursor_execute", after)
    times: dict[str, list[float]] = {}
    for took, stmt, _ in seen:
        times.setdefault(" ".join(stmt.split()), []).append(took)
    out = [(statistics.median(v), round(len(v) / len(sample)), k) for k, v in times.items()]
    plans = []
    for _, stmt, params in first:
        flat = " ".join(stmt.split())
        if "FROM resource AS r" not in flat:
            continue
        prefix = "EXPLAIN (ANALYZE, BUFFERS) " if db == "PostgreSQL" else "EXPLAIN QUERY PLAN "
        if flat.startswith("INSERT"):  # explain the query that fills the table, without inserting twice
            stmt = stmt[stmt.index("SELECT"):]
        with engine.connect() as conn:
            tx = conn.begin()
            try:
                rows = conn.exec_driver_sql(prefix + stmt, params).all()
            finally:
                tx.rollback()
        lines = [" | ".join(str(x) for x in row) for row in rows]
        plans.append(f"{flat[:160]} ...\n" + "\n".join("  " + line[:180] for line in lines[:60]))
    return out, "\n\n".join(plans)


def load_step(engine: Engine, db_url: str, patients: list[d.PatientPlan], lab: dict[str, int], seed: int,
              procs: int) -> d.Loaded:
    loaded = d.load(engine, db_url, patients, seed=seed, procs=procs)
    lab.update(loaded.lab_counts)
    return loaded


def summarise(m: Measured) -> list[str]:
    http, inp = m.http, m.inproc
    return [
        m.db, f"{m.size:,}", f"{m.patients:,}", f"{m.load_s:.0f} s",
        f"{len(http)}", c.ms(statistics.median(http)), c.ms(c.percentile(http, 99)), c.ms(max(http)),
        f"{len(inp['total'])}", c.ms(statistics.median(inp["total"])), c.ms(c.percentile(inp["total"], 99)),
        c.ms(statistics.median(inp["search"])), c.ms(c.percentile(inp["search"], 99)),
        (f"{c.ms(statistics.median(m.heavy_http))} / {c.ms(c.percentile(m.heavy_http, 99))}" if m.heavy_http
         else "-"),
        c.ms(m.cpu_per_request),
        f"{m.other:.0%}",
    ]


HEADERS = ["database", "Observations", "patients", "load", "HTTP requests", "HTTP p50", "HTTP p99", "HTTP max",
           "in-process requests", "in-process p50", "in-process p99", "search() p50", "search() p99",
           "heavy HTTP p50 / p99", "CPU ms per request", "other load"]


def report(results: list[Measured], args: argparse.Namespace, started: float, pg_note: str) -> None:
    rows = [summarise(m) for m in results]
    print()
    c.print_table(HEADERS, rows)
    verdict = ""
    pg = [m for m in results if m.db == "PostgreSQL"]
    if pg:
        largest = max(pg, key=lambda m: m.size)
        p99 = c.percentile(largest.http, 99) * 1000
        met = "met" if p99 <= TARGET_P99_MS and largest.size >= 1_000_000 else (
            "missed" if p99 > TARGET_P99_MS else "not measured at 1M")
        verdict = (f"Target p99 ≤ {TARGET_P99_MS:.0f} ms at 1M on PostgreSQL (default settings): **{met}** "
                   f"(p99 {p99:.1f} ms over HTTP at {largest.size:,} Observations).")
        for m in results:
            if m.db.startswith("PostgreSQL, "):
                verdict += (f" With {m.db.split(', ', 1)[1]}: p99 {c.percentile(m.http, 99) * 1000:.1f} ms "
                            f"({'met' if c.percentile(m.http, 99) * 1000 <= TARGET_P99_MS else 'missed'}).")
        verdict += "\n\n"
        print("\n" + verdict.strip())
    breakdown = []
    for m in results:
        parts = ", ".join(f"{k} {c.ms(statistics.median(v))}" for k, v in m.inproc.items() if k != "total")
        loads = ", ".join(f"{k} {v:.0f} s" for k, v in m.load_phases.items())
        breakdown.append(f"- {m.db}, {m.size:,}: in-process medians (ms): {parts}. "
                         f"HTTP overhead (p50 HTTP − p50 in-process): "
                         f"{c.ms(statistics.median(m.http) - statistics.median(m.inproc['total']))} ms. "
                         f"Heavy patients ({d.HEAVY_OBS:,} Observations each) in-process p50 "
                         f"{c.ms(statistics.median(m.heavy_inproc)) if m.heavy_inproc else '-'} ms."
                         + (f" Load of this step: {loads}." if loads else ""))
    sql = []
    for m in results:
        sql.append(f"\n{m.db} at {m.size:,} Observations: {sum(n for _, n, _ in m.statements)} statements per "
                   f"search, {sum(s * n for s, n, _ in m.statements) * 1000:.1f} ms in the database driver "
                   "(medians over 10 searches):\n")
        sql += [f"  {s * 1000:7.2f} ms x{n}  {stmt[:150]}" for s, n, stmt in m.statements]
        if m.plan:
            sql.append("\nplans (first search of the 10):\n")
            sql += ["  " + line for line in m.plan.splitlines()]
    body = (
        "## Search: a patient's lab Observations, newest first, 50 a page\n\n"
        + c.header(started)
        + "\n`POST /fhir/Observation/_search` with `category=laboratory&_sort=-date&_count=50` and `person-id`, "
        "as a practitioner with a valid attestation for that patient (a fresh policy and an audit entry on every "
        "request). One request at a time over one keep-alive connection to `kjerne serve --dev` (1 worker) on "
        "127.0.0.1, for patients drawn at random from those with "
        f"{d.PER_PATIENT} Observations (about {d.LAB_SHARE:.0%} of them laboratory), after a warm-up; then requests "
        f"for the {d.HEAVY} heavy patients with {d.HEAVY_OBS:,} each. The same patients are then searched "
        "in-process. Every response was checked: its `total` equals the laboratory Observations loaded for the "
        f"patient, the page has 50 entries, laboratory only, newest first ({sum(m.checked for m in results):,} "
        "responses checked). Times in ms.\n\n"
        + c.markdown_table(HEADERS, rows)
        + "\n"
        + verdict
        + "Where the time goes:\n\n"
        + "\n".join(breakdown)
        + "\n\nNotes:\n\n"
        "- *in-process*: the same work without HTTP: token verification, AccessPolicy, `scope_to_person`, "
        "`Repository.search` (with its audit entry and commit) and the search Bundle as JSON; *search()* is "
        "`Repository.search` alone.\n"
        "- *PostgreSQL, jit=off* (and any other `--pg-variant`): the same database at the largest size, measured "
        "again after `ALTER SYSTEM SET jit = off` and a configuration reload; PostgreSQL's default is jit=on.\n"
        "- Data: bulk-loaded rows identical to what the store writes (bench/dataset.py: each shape of "
        "Observation goes through the store's own preparation, `extract` and the Writer's row shapes, a sample "
        "is rebuilt the slow way and compared, and one Observation is written by the real Writer and compared); "
        "secondary indexes dropped during the load and rebuilt, then VACUUM ANALYZE (PostgreSQL) or ANALYZE "
        "(SQLite). *load* is the time to reach that size, generating the rows on 2 processes included.\n"
        f"- {pg_note}\n"
        "- SQLite: WAL, `synchronous=FULL` (the store's settings); each search commits its audit entry. Fewer "
        "requests by default than on PostgreSQL, because each takes most of a second (see the notes on the plan).\n"
        "- *CPU ms per request*: CPU time of the server process and the database (PostgreSQL backends) per "
        "timed HTTP request; unlike the latencies it hardly changes when other processes compete for the "
        "cores. *other load*: share of the machine used by processes outside the benchmark during the timed "
        "HTTP requests.\n"
        "\n<details><summary>SQL of a typical search (policy, search, audit) and the plans of the "
        "statements that read the resource table</summary>\n\n```\n"
        + "\n".join(sql).strip("\n")
        + "\n```\n</details>\n"
    )
    if args.profile:  # a profiled run's figures are perturbed by the sampler: keep them out of RESULTS.md
        body += c.hotspot_markdown(sorted(args.profile.glob("search-*.txt")),
                                   "Where the server's CPU goes during the timed requests (py-spy, `--profile`)")
        (args.profile / "search.md").write_text(body, encoding="utf-8")
        print(f"\nwrote {args.profile / 'search.md'} (RESULTS.md is left alone in a profiled run)")
        return
    c.update_results("search", body)


def set_pg(engine: Engine, setting: str | None) -> None:
    """ALTER SYSTEM SET name = value (or RESET ALL with None) and reload the configuration."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        if setting is None:
            conn.exec_driver_sql("ALTER SYSTEM RESET ALL")
        else:
            name, _, value = setting.partition("=")
            conn.exec_driver_sql(f"ALTER SYSTEM SET {name.strip()} = '{value.strip()}'")
        conn.exec_driver_sql("SELECT pg_reload_conf()")
    time.sleep(0.5)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    p.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    p.add_argument("--sizes", default="100000,1000000", help="PostgreSQL sizes (stored Observations)")
    p.add_argument("--sqlite-sizes", default="100000", help="SQLite sizes")
    p.add_argument("--requests", type=int, default=500, help="timed HTTP requests per size (PostgreSQL)")
    p.add_argument("--inproc", type=int, default=150, help="timed in-process searches per size (PostgreSQL)")
    p.add_argument("--heavy", type=int, default=30, help="HTTP requests for the heavy patients (PostgreSQL)")
    p.add_argument("--sqlite-requests", type=int, default=100)
    p.add_argument("--sqlite-inproc", type=int, default=30)
    p.add_argument("--sqlite-heavy", type=int, default=6)
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--pg-variant", action="append", default=None, metavar="NAME=VALUE",
                   help="measure the largest PostgreSQL size again with this server setting (default: jit=off; "
                   "'none' for no second measurement)")
    p.add_argument("--procs", type=int, default=2, help="processes generating rows during a load")
    p.add_argument("--no-fsync", action="store_true", help="PostgreSQL with fsync off (not durable)")
    p.add_argument("--profile", type=Path, help="py-spy the server during the timed requests; raw stacks here")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    c.stop_on_sigterm()
    args.pg_pid = None
    variants = [v for v in (args.pg_variant or ["jit=off"]) if v != "none"]
    started = time.perf_counter()
    sizes = sorted(int(s) for s in args.sizes.split(",") if s)
    sqlite_sizes = sorted(int(s) for s in args.sqlite_sizes.split(",") if s)
    everyone = d.plan(max(sizes + sqlite_sizes), args.seed)
    results: list[Measured] = []
    tmp = Path(tempfile.mkdtemp(prefix="kjerne-bench-search-"))
    pg_note = "PostgreSQL: not run."
    try:
        if args.db in ("sqlite", "both"):
            counts = Counts(args.sqlite_requests, args.sqlite_inproc, args.sqlite_heavy, min(args.warmup, 10))
            for size in sqlite_sizes:
                print(f"SQLite, {size:,} Observations: loading ...", flush=True)
                url = f"sqlite:///{tmp}/search-{size}.db"
                upgrade(url)
                engine = make_engine(url)
                patients = d.prefix_for(everyone, size)
                lab: dict[str, int] = {}
                loaded = load_step(engine, url, patients, lab, args.seed, args.procs)
                d.check_against_writer(engine, patients[-1], args.seed)
                print(f"  loaded in {loaded.seconds:.0f} s; measuring ...", flush=True)
                m = Measured("SQLite", sum(x.obs for x in patients), len(patients), loaded.seconds, loaded.phases)
                prof = args.profile / f"search-sqlite-{size}.txt" if args.profile else None
                measure("SQLite", url, engine, tmp, patients, lab, args, m, prof, counts)
                engine.dispose()
                results.append(m)
                print("  " + " ".join(summarise(m)), flush=True)
        if args.db in ("postgres", "both"):
            counts = Counts(args.requests, args.inproc, args.heavy, args.warmup)
            with c.postgres(fsync=not args.no_fsync) as cluster:
                args.pg_pid = c.postmaster_pid(cluster)
                settings = ", ".join(f"{k}={v}" for k, v in c.PG_SETTINGS.items())
                durability = ("fsync=off (NOT durable)" if args.no_fsync
                              else "fsync=on, synchronous_commit=on (each search's audit commit is flushed)")
                pg_note = f"PostgreSQL: {durability}; {settings}; other settings at their defaults; local TCP."
                url = cluster.create_database("search")
                upgrade(url)
                engine = make_engine(url)
                lab = {}
                done: list[d.PatientPlan] = []
                load_total = 0.0
                for size in sizes:
                    patients = d.prefix_for(everyone, size)
                    new = patients[len(done):]
                    print(f"PostgreSQL, {size:,} Observations: loading {len(new):,} patients ...", flush=True)
                    loaded = load_step(engine, url, new, lab, args.seed, args.procs)
                    load_total += loaded.seconds
                    done = patients
                    d.check_against_writer(engine, patients[-1], args.seed)
                    with engine.connect() as conn:
                        n_obs = conn.execute(text("SELECT count(*) FROM resource WHERE res_type = 'Observation'")
                                             ).scalar_one()
                    planned = sum(x.obs for x in patients)
                    if n_obs != planned:
                        raise AssertionError(f"{n_obs} Observations stored, {planned} planned")
                    print(f"  loaded in {loaded.seconds:.0f} s; measuring ...", flush=True)
                    m = Measured("PostgreSQL", n_obs, len(patients), load_total, loaded.phases)
                    prof = args.profile / f"search-pg-{size}.txt" if args.profile else None
                    measure("PostgreSQL", url, engine, tmp, patients, lab, args, m, prof, counts)
                    results.append(m)
                    print("  " + " ".join(summarise(m)), flush=True)
                for variant in variants:
                    print(f"PostgreSQL, {done and sum(x.obs for x in done):,} Observations, {variant}: measuring ...",
                          flush=True)
                    set_pg(engine, variant)
                    m = Measured(f"PostgreSQL, {variant}", results[-1].size, len(done), load_total, {})
                    measure("PostgreSQL", url, engine, tmp, done, lab, args, m, None, counts)
                    set_pg(engine, None)
                    results.append(m)
                    print("  " + " ".join(summarise(m)), flush=True)
                engine.dispose()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report(results, args, started, pg_note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
