"""Access: what the access check and the audit entry cost on a read.

The same reads, in-process, with the platform's UNRESTRICTED context and with the real AccessPolicy of a
practitioner whose attestation names the patient (purpose TREAT): `Repository.read` of an Observation by
id, and the search "a patient's lab Observations, newest first, 50 a page". Four variants of each read
run interleaved, in rotating order, for the same patient and resource:

- *unrestricted*: `Repository(engine, UNRESTRICTED)`; no filter, no audit entry;
- *filter only*: an AccessPolicy built beforehand whose audit entry is switched off (the SQL filter alone);
- *filter + audit*: an AccessPolicy built beforehand (the filter and the audit append);
- *policy, filter, audit*: the AccessPolicy built inside the timed part, as the API does per request.

The last against the first is the cost of access control per read; the differences between neighbouring
variants split it into policy construction, SQL filter and audit append. Token verification is not part of
any variant (it is reported on its own).

    .venv/bin/python bench/access.py [--db sqlite|postgres|both] [--iterations 400]
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

import common as c
import dataset as d
from kjerne.access.context import UNRESTRICTED, AccessRecord
from kjerne.access.policy import AccessPolicy, RequestInfo
from kjerne.api.auth import build_verifier
from kjerne.api.fhir_routes import scope_to_person
from kjerne.config import Settings
from kjerne.store.db import make_engine
from kjerne.store.migrate import upgrade
from kjerne.store.repository import Repository

QUERY = [("category", "laboratory"), ("_sort", "-date"), ("_count", "50")]
TARGET_RATIO = 1.3
VARIANTS = ["unrestricted", "filter only", "filter + audit", "policy, filter, audit"]


class PolicyWithoutAudit(AccessPolicy):
    """The real policy with its audit append switched off, to time the SQL filter alone."""

    def record(self, conn: Any, rec: AccessRecord) -> None:
        return None


@dataclass
class Result:
    db: str
    op: str  # read | search
    times: dict[str, list[float]] = field(default_factory=dict)
    construct: list[float] = field(default_factory=list)
    verify: list[float] = field(default_factory=list)
    other: float = 0.0

    def med(self, variant: str) -> float:
        return statistics.median(self.times[variant])


def run(db: str, url: str, var: Path, args: argparse.Namespace) -> list[Result]:
    upgrade(url)
    engine = make_engine(url)
    patients = access_patients(args)
    print(f"{db}: loading {sum(p.obs for p in patients):,} Observations for {len(patients)} patients ...",
          flush=True)
    loaded = d.load(engine, url, patients, seed=args.seed, procs=2)
    port = c.free_port()
    settings = Settings(db_url=url, dev=True, var_dir=var, host="127.0.0.1", port=port)
    issuer = c.issuer_for(var, port)
    verifier = build_verifier(settings)
    base = settings.fhir_base()
    p = c.PRACTITIONER
    tokens = {x.fnr: issuer.practitioner_token(hpr=p["hpr"], pid=p["pid"], org=p["org"], patients=[x.fnr],
                                               purpose="TREAT") for x in patients}
    rng = random.Random(f"bench-access:{args.seed}")
    results = {op: Result(db, op) for op in ("read", "search")}
    for r in results.values():
        r.times = {v: [] for v in VARIANTS}

    def once(op: str, variant: str, x: d.PatientPlan, obs_id: str, principal: Any, pairs: list[tuple[str, str]],
             record: bool) -> float:
        info = RequestInfo(person_id=x.fnr)
        policy: Any = None
        if variant == "filter only":
            policy = PolicyWithoutAudit(engine, principal, info)
        elif variant == "filter + audit":
            policy = AccessPolicy(engine, principal, info)
        t0 = time.perf_counter()
        if variant == "unrestricted":
            repo = Repository(engine, UNRESTRICTED, base_url=base)
        elif variant == "policy, filter, audit":
            policy = AccessPolicy(engine, principal, info)
            if record:
                results[op].construct.append(time.perf_counter() - t0)
            repo = Repository(engine, policy, base_url=base)
        else:
            repo = Repository(engine, policy, base_url=base)
        if op == "read":
            stored = repo.read("Observation", obs_id)
            assert stored.res_id == obs_id
        else:
            result = repo.search("Observation", pairs)
            if result.page.total != loaded.lab_counts[x.pid]:
                raise AssertionError(f"{variant}: total {result.page.total}, {loaded.lab_counts[x.pid]} loaded")
        return time.perf_counter() - t0

    def iteration(i: int, record: bool) -> None:
        x = rng.choice(patients)
        obs_id = rng.choice(loaded.lab_ids[x.pid])
        t0 = time.perf_counter()
        principal = verifier.verify(f"Bearer {tokens[x.fnr]}")
        verify = time.perf_counter() - t0
        probe = Repository(engine, AccessPolicy(engine, principal, RequestInfo(person_id=x.fnr)), base_url=base)
        pairs = scope_to_person(probe, "Observation", list(QUERY), x.fnr)
        for op in ("read", "search"):
            order = VARIANTS[i % 4:] + VARIANTS[: i % 4]
            for variant in order:
                took = once(op, variant, x, obs_id, principal, pairs, record)
                if record:
                    results[op].times[variant].append(took)
            if record:
                results[op].verify.append(verify)

    for i in range(args.warmup):
        iteration(i, False)
    c.wait_for_quiet()
    busy0, cpu0, t0 = c.machine_busy(), c.own_cpu() + _db_cpu(args), time.perf_counter()
    iterations = args.sqlite_iterations if db == "SQLite" else args.iterations
    for i in range(iterations):
        iteration(i, True)
    wall = time.perf_counter() - t0
    other = max(0.0, c.machine_busy() - busy0 - (c.own_cpu() + _db_cpu(args) - cpu0)) / (wall * c.ncpu())
    for r in results.values():
        r.other = other
    engine.dispose()
    return list(results.values())


def access_patients(args: argparse.Namespace) -> list[d.PatientPlan]:
    """Typical patients only: `--observations` of them, PER_PATIENT each."""
    everyone = d.plan(args.observations + d.HEAVY * d.HEAVY_OBS, args.seed)
    return [p for p in everyone if not p.heavy]


def _db_cpu(args: argparse.Namespace) -> float:
    return c.tree_cpu(args.pg_pid) if args.pg_pid else 0.0


def report(results: list[Result], args: argparse.Namespace, started: float, pg_note: str) -> None:
    headers = ["database", "read", *[f"{v} p50" for v in VARIANTS], "p99 unrestricted / full", "ratio (p50)",
               "policy construction", "SQL filter", "audit append", "other load"]
    rows = []
    for r in results:
        u, f, a, full = (r.med(v) for v in VARIANTS)
        rows.append([
            r.db, r.op, *[c.ms(r.med(v)) for v in VARIANTS],
            f"{c.ms(c.percentile(r.times['unrestricted'], 99))} / {c.ms(c.percentile(r.times[VARIANTS[3]], 99))}",
            f"{full / u:.2f}×",
            f"{c.ms(statistics.median(r.construct))} ({statistics.median(r.construct) / (full - u):.0%})"
            if full > u else c.ms(statistics.median(r.construct)),
            f"{c.ms(f - u)} ({(f - u) / (full - u):.0%})" if full > u else c.ms(f - u),
            f"{c.ms(a - f)} ({(a - f) / (full - u):.0%})" if full > u else c.ms(a - f),
            f"{r.other:.0%}",
        ])
    print()
    c.print_table(headers, rows)
    verdicts = []
    for r in results:
        ratio = r.med(VARIANTS[3]) / r.med("unrestricted")
        verdicts.append(f"{r.db} {r.op}: {ratio:.2f}× ({'met' if ratio <= TARGET_RATIO else 'missed'})")
    verdict = f"Target ≤ {TARGET_RATIO}× : " + "; ".join(verdicts) + ".\n"
    print("\n" + verdict)
    verify = statistics.median([t for r in results for t in r.verify])
    body = (
        "## Access: the cost of the access check and audit entry per read\n\n"
        + c.header(started)
        + f"\nIn-process, {args.iterations} iterations on PostgreSQL and {args.sqlite_iterations} on SQLite, after "
        f"{args.warmup} warm-up ones; each iteration picks a "
        f"patient at random ({sum(x.obs for x in access_patients(args)):,} Observations over "
        f"{len(access_patients(args))} patients, {d.PER_PATIENT} each) and one of their laboratory "
        "Observations, and runs the four variants "
        "of each read interleaved, in an order that rotates from one iteration to the next. *read*: "
        "`Repository.read('Observation', id)`; *search*: `Repository.search` for "
        "`category=laboratory&_sort=-date&_count=50` scoped to the patient the way the API scopes `person-id`. "
        "The practitioner's principal comes from a verified development token with an attestation for the "
        "patient (purpose TREAT). Times in ms (medians unless marked).\n\n"
        + c.markdown_table(headers, rows)
        + "\n"
        + verdict
        + "\nNotes:\n\n"
        "- *unrestricted*: `Repository(engine, UNRESTRICTED)`: no filter and no audit entry, but the same "
        "transaction (a read-only commit). *filter only*: a real AccessPolicy built beforehand with its "
        "`record` switched off. *filter + audit*: a real AccessPolicy built beforehand. *policy, filter, "
        "audit*: the AccessPolicy built inside the timed part, as the API builds one per request. The ratio is "
        "the last over the first; the last three columns split the difference (shares of it in brackets): "
        "policy construction (timed on its own; the policy loads the caller's patients and their "
        "restrictions lazily, in the request's first transaction, so that cost falls under SQL filter), SQL "
        "filter (filter only − unrestricted, the restriction look-up included) and audit append (filter + "
        "audit − filter only). An ordinary read commits its audit entry without waiting for the disk "
        "(`Repository.audit_tx`); an emergency or other override would wait.\n"
        f"- Token verification (not in any variant): median {c.ms(verify)} ms per request.\n"
        f"- {pg_note}\n"
        "- SQLite: WAL, `synchronous=FULL` for writes, `NORMAL` for the commit of an ordinary read's audit "
        "entry (the store's settings).\n"
        "- *other load*: share of the machine used by processes outside the benchmark during the timed part.\n"
    )
    c.update_results("access", body)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    p.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    p.add_argument("--iterations", type=int, default=400, help="timed iterations on PostgreSQL")
    p.add_argument("--sqlite-iterations", type=int, default=120,
                   help="timed iterations on SQLite (its search takes a quarter of a second; see bench/search.py)")
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--observations", type=int, default=40_000)
    p.add_argument("--no-fsync", action="store_true", help="PostgreSQL with fsync off (not durable)")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    c.stop_on_sigterm()
    args.pg_pid = None
    started = time.perf_counter()
    results: list[Result] = []
    tmp = Path(tempfile.mkdtemp(prefix="kjerne-bench-access-"))
    pg_note = "PostgreSQL: not run."
    try:
        if args.db in ("sqlite", "both"):
            results += run("SQLite", f"sqlite:///{tmp}/access.db", tmp, args)
        if args.db in ("postgres", "both"):
            with c.postgres(fsync=not args.no_fsync) as cluster:
                args.pg_pid = c.postmaster_pid(cluster)
                durability = ("fsync=off (NOT durable)" if args.no_fsync
                              else "fsync=on, synchronous_commit=on (the audit entry's commit is flushed)")
                pg_note = f"PostgreSQL: {durability}; " + ", ".join(f"{k}={v}" for k, v in c.PG_SETTINGS.items())
                results += run("PostgreSQL", cluster.create_database("access"), tmp, args)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report(results, args, started, pg_note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
