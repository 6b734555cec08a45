"""Home measurements: PMD batch Bundles POSTed to /ingest/maledata, in measurements per second.

Each Bundle is a PMD upload (`type: batch`) of 100 vital-sign Observations, every entry with a urn:uuid
fullUrl and `request: POST Observation`: heart rate (8867-4, /min), oxygen saturation (2708-6, %), body
weight (29463-7, kg) and blood pressure (85354-9 with systolic 8480-6 and diastolic 8462-4, mm[Hg]),
plausible values, a time in the past, the patient named only by fødselsnummer (identity resolution runs)
and a performer organisation. Client threads with keep-alive connections send them with a producer's
system token (system/Observation.write) to `kjerne serve` on loopback, with one and with two workers, on
PostgreSQL with fsync on.

In the same run the same rows (made beforehand by the store's own BundleProcessor in a scratch database)
are inserted directly, one transaction per Bundle, from as many threads: resource rows by executemany and
index rows by executemany or COPY, with no validation, plausibility check, identity look-up or audit.
API/raw is the share of that raw rate the service achieves. A short extra API run under py-spy gives the
server's hotspots (its figures are not reported).

    .venv/bin/python bench/maledata.py [--bundles 300] [--patients 1000] [--clients 4]
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import shutil
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

import common as c
import ingest as ing
from kjerne.store.migrate import upgrade

PER_BUNDLE = 100
TARGET = 5000  # measurements/s
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
PERFORMER = {"identifier": {"system": c.OID_ORGNR, "value": c.PRODUCER_ORG}, "display": "Hjemmemåling AS"}
# (LOINC, display, Norwegian text, UCUM unit, low, high) of the single-value measurements
SINGLE = [
    ("8867-4", "Heart rate", "Puls", "/min", 50, 100),
    ("2708-6", "Oxygen saturation in Arterial blood", "Oksygenmetning", "%", 93, 100),
    ("29463-7", "Body weight", "Vekt", "kg", 50, 110),
]


def quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def measurement(rng: random.Random, fnr: str) -> dict[str, Any]:
    """One plausible home measurement for the person `fnr`, taken in the past 90 days."""
    moment = dt.datetime(2025, 6, 1, tzinfo=dt.UTC) - dt.timedelta(seconds=rng.randint(3600, 90 * 86400))
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": CATEGORY, "code": "vital-signs", "display": "Vital Signs"}]}],
        "subject": {"identifier": {"system": c.OID_FNR, "value": fnr}},
        "effectiveDateTime": c.fhir_time(moment),
        "performer": [dict(PERFORMER)],
    }
    kind = rng.randrange(4)
    if kind == 3:
        sys_, dia = rng.randint(105, 150), rng.randint(60, 95)
        obs["code"] = {"coding": [{"system": LOINC, "code": "85354-9",
                                   "display": "Blood pressure panel with all children optional"}],
                       "text": "Blodtrykk"}
        obs["component"] = [
            {"code": {"coding": [{"system": LOINC, "code": "8480-6", "display": "Systolic blood pressure"}]},
             "valueQuantity": quantity(sys_, "mm[Hg]")},
            {"code": {"coding": [{"system": LOINC, "code": "8462-4", "display": "Diastolic blood pressure"}]},
             "valueQuantity": quantity(dia, "mm[Hg]")},
        ]
    else:
        code, display, text, unit, low, high = SINGLE[kind]
        value: float = rng.randint(low, high) if unit != "kg" else round(rng.uniform(low, high), 1)
        obs["code"] = {"coding": [{"system": LOINC, "code": code, "display": display}], "text": text}
        obs["valueQuantity"] = quantity(value, unit)
    return obs


def pmd_bundle(rng: random.Random, fnr: str) -> dict[str, Any]:
    """A PMD upload: 100 measurements of one person in a batch Bundle."""
    return {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"fullUrl": f"urn:uuid:{uuid.UUID(int=rng.getrandbits(128), version=4)}",
             "resource": measurement(rng, fnr), "request": {"method": "POST", "url": "Observation"}}
            for _ in range(PER_BUNDLE)
        ],
    }


def workload(n_bundles: int, n_patients: int, seed: int) -> list[dict[str, Any]]:
    fnrs = c.synthetic_fnrs(n_patients, seed)
    random.Random(seed).shuffle(fnrs)
    rng = random.Random(f"bench-maledata:{seed}")
    return [pmd_bundle(rng, fnrs[i % n_patients]) for i in range(n_bundles)]


@dataclass
class Run:
    mode: str
    messages: int
    items: int  # measurements (or results) in the timed part
    seconds: float
    latencies: list[float] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)
    other: float = 0.0

    @property
    def rate(self) -> float:
        return self.items / self.seconds

    def cpu_text(self) -> str:
        return ", ".join(f"{k} {v * 1000 / self.items:.2f}" for k, v in self.cpu.items())


def finish_cpu(cpu0: dict[str, float], cpu1: dict[str, float], seconds: float) -> tuple[dict[str, float], float]:
    cpu = {k: cpu1[k] - cpu0[k] for k in cpu0}
    machine = cpu.pop("machine")
    return cpu, max(0.0, machine - sum(cpu.values())) / (seconds * c.ncpu())


def run_api(db_url: str, var: Path, bodies: list[bytes], *, path: str, content_type: str, scope: str,
            workers: int, clients: int, warmup: int, pg_pid: int, per_message: int,
            accepted: Any, profile: Path | None = None) -> Run:
    """POST `bodies` to `path` from `clients` threads; `accepted(response)` says whether a message was stored."""
    upgrade(db_url)
    with c.server(db_url, var, workers=workers) as srv:
        token = c.issuer_for(var, srv.port).system_token(org=c.PRODUCER_ORG, scope=scope)
        headers = {"authorization": f"Bearer {token}", "content-type": content_type, "prefer": "return=minimal"}
        latencies = [0.0] * len(bodies)

        def post(i: int, client: c.LoadClient) -> None:
            t0 = time.perf_counter()
            r = client.post(path, content=bodies[i], headers=headers)
            latencies[i] = time.perf_counter() - t0
            if not accepted(r):
                raise RuntimeError(f"message {i}: HTTP {r.status_code}: {r.text[:800]}")

        def client() -> c.LoadClient:
            return c.LoadClient(srv.url)

        ing.fan_out(warmup, clients, post, client)
        c.analyse(db_url)
        c.wait_for_quiet()
        timed = len(bodies) - warmup
        with c.py_spy(srv.process.pid, profile, gil=True):
            cpu0 = ing._cpu(srv.process.pid, pg_pid)
            took = ing.fan_out(timed, clients, lambda i, cl: post(i + warmup, cl), client)
            cpu1 = ing._cpu(srv.process.pid, pg_pid)
    cpu, other = finish_cpu(cpu0, cpu1, took)
    mode = f"API, {workers} worker{'s' if workers > 1 else ''}"
    return Run(mode, timed, timed * per_message, took, latencies[warmup:], cpu, other)


def run_raw(db_url: str, prepared: list[ing.Prepared], *, clients: int, warmup: int, pg_pid: int, copy: bool,
            per_message: int) -> Run:
    r = ing.run_raw("PostgreSQL", db_url, prepared, clients=clients, warmup=warmup, pg_pid=pg_pid, copy=copy)
    cpu = dict(r.cpu)
    return Run("raw, index rows by COPY" if copy else "raw inserts (executemany)", r.bundles,
               r.bundles * per_message, r.seconds, r.latencies, cpu, r.other)


def table(runs: list[Run], unit: str, msg: str) -> tuple[list[str], list[list[str]]]:
    raw = max((r for r in runs if r.mode.startswith("raw")), key=lambda r: r.rate)
    headers = ["path", f"{unit}/s", f"{msg}/s", f"{msg} p50 ms", f"{msg} p99 ms", "API/raw",
               f"CPU ms per {unit[:-1] if unit.endswith('s') else unit}", "other load"]
    rows = []
    for r in runs:
        ratio = f"{r.rate / raw.rate:.2f}" if r.mode.startswith("API") else ""
        rows.append([r.mode, f"{r.rate:,.0f}", f"{r.messages / r.seconds:,.1f}", c.ms(statistics.median(r.latencies)),
                     c.ms(c.percentile(r.latencies, 99)), ratio, r.cpu_text(), f"{r.other:.0%}"])
    return headers, rows


Shares = list[tuple[str, float]]


def top_hotspots(raw: Path, n: int = 5) -> tuple[Shares, Shares, Shares]:
    """The top `n` lines by self time, project lines by self time, and project functions by inclusive time."""
    if not raw.exists():
        return [], [], []
    by_self, by_incl = c.hotspots(raw, top=200)
    project = [(k, v) for k, v in by_self if "kjerne/" in k][:n]
    top_incl = [(k, v) for k, v in by_incl if "/api/" not in k and "starlette" not in k][:n]
    return by_self[:n], project, top_incl


def hotspot_text(by_self: Shares, project: Shares, incl: Shares | None = None) -> str:
    if not by_self:
        return "(py-spy gave no samples)\n"
    lines = ["self time, top lines (share of non-idle samples with the GIL held):"]
    lines += [f"  {v:6.1%}  {k}" for k, v in by_self]
    lines.append("project lines with the most self time:")
    lines += [f"  {v:6.1%}  {k}" for k, v in project]
    if incl:
        lines.append("project functions by inclusive time (request plumbing left out):")
        lines += [f"  {v:6.1%}  {k}" for k, v in incl]
    return "```\n" + "\n".join(lines) + "\n```\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    p.add_argument("--bundles", type=int, default=300, help="Bundles per run, warm-up included")
    p.add_argument("--patients", type=int, default=1000)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--workers", default="1,2")
    p.add_argument("--profile-bundles", type=int, default=80, help="Bundles in the extra py-spy run (0: none)")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    c.stop_on_sigterm()
    started = time.perf_counter()
    workers = [int(w) for w in args.workers.split(",") if w]

    print(f"building {args.bundles} PMD Bundles of {PER_BUNDLE} measurements ...", flush=True)
    bundles = workload(args.bundles, args.patients, args.seed)
    bodies = [orjson.dumps(b) for b in bundles]
    print("preparing the raw rows (the store writes them into a scratch database; not timed) ...", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="kjerne-bench-maledata-"))
    prepared = ing.prepare(bundles, tmp)
    n_rows = sum(ing.row_total(x) for x in prepared) / len(prepared)

    def accepted(r: c.Reply) -> bool:
        return r.status_code == 200 and r.content.count(b'"status":"201') == PER_BUNDLE

    runs: list[Run] = []
    hot: tuple[Shares, Shares, Shares] = ([], [], [])
    try:
        with c.postgres(fsync=True) as cluster:
            pg_pid = c.postmaster_pid(cluster)
            common = dict(path="/ingest/maledata", content_type="application/fhir+json",
                          scope="system/Observation.write", clients=args.clients, warmup=args.warmup,
                          pg_pid=pg_pid, per_message=PER_BUNDLE, accepted=accepted)
            for w in workers:
                print(f"API with {w} worker(s) ...", flush=True)
                runs.append(run_api(cluster.create_database(f"api{w}"), tmp, bodies, workers=w, **common))
                print(f"  {runs[-1].rate:,.0f} measurements/s", flush=True)
            for copy in (False, True):
                print(f"raw inserts{' with COPY' if copy else ''} ...", flush=True)
                runs.append(run_raw(cluster.create_database(f"raw{int(copy)}"), prepared, clients=args.clients,
                                    warmup=args.warmup, pg_pid=pg_pid, copy=copy, per_message=PER_BUNDLE))
                print(f"  {runs[-1].rate:,.0f} measurements/s", flush=True)
            if args.profile_bundles:
                print("py-spy run (1 worker; figures not reported) ...", flush=True)
                prof = tmp / "maledata-spy.txt"
                run_api(cluster.create_database("spy"), tmp, bodies[: args.warmup + args.profile_bundles],
                        workers=1, profile=prof, **common)
                hot = top_hotspots(prof)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    headers, rows = table(runs, "measurements", "Bundle")
    print()
    c.print_table(headers, rows)
    best = max((r for r in runs if r.mode.startswith("API")), key=lambda r: r.rate)
    met = "met" if best.rate >= TARGET else "missed"
    verdict = f"Target ≥ {TARGET:,} measurements/s on PostgreSQL: **{met}** (best {best.rate:,.0f}, {best.mode})."
    print("\n" + verdict)
    spots = hotspot_text(*hot)
    print(spots)
    body = (
        "## Home measurements: PMD batch Bundles to /ingest/maledata\n\n"
        + c.header(started)
        + f"\n{args.bundles:,} batch Bundles of {PER_BUNDLE} vital-sign Observations (heart rate, SpO2, weight, "
        f"blood pressure with two components; each entry a urn:uuid fullUrl and POST Observation) for "
        f"{min(args.patients, args.bundles):,} persons named by fødselsnummer; the first {args.warmup} Bundles of "
        f"each run are a warm-up and not counted. {args.clients} client threads with keep-alive connections, a "
        "producer's system token (`system/Observation.write`) and `Prefer: return=minimal` (each entry answers "
        "with its status, location and version, not the stored resource), `kjerne serve --dev` on 127.0.0.1. "
        "PostgreSQL "
        "with **fsync=on, synchronous_commit=on**; each run on a fresh, migrated database, whose tables are "
        "analysed after the warm-up (`c.analyse`), as autovacuum keeps them in a running service.\n\n"
        + c.markdown_table(headers, rows)
        + f"\n{verdict}\n\n"
        "Notes:\n\n"
        "- *raw*: the same rows (resource rows and all their index rows, the Patients identity resolution "
        f"creates included; {n_rows:,.0f} rows per Bundle) made beforehand by the store's own BundleProcessor "
        "in a scratch SQLite database and inserted with SQLAlchemy Core executemany (or the index rows by COPY), "
        "one transaction per Bundle, from the same number of threads, with no bundle rules, plausibility "
        "check, validation, identity look-up, version check, audit or HTTP (the `patient_code` rows included). "
        "API/raw divides by the faster raw run.\n"
        "- The API answers a batch per entry; each run checks that every entry of every Bundle came back 201.\n"
        "- CPU ms per measurement: client = this process, server = the uvicorn process tree, database = the "
        "PostgreSQL postmaster tree (inserter = this process in the raw runs). *Other load*: the share of the "
        "2 cores that processes outside the benchmark used in the timed part (the machine is shared).\n"
        "- Where the server's time goes (an extra 1-worker run of "
        f"{args.profile_bundles} Bundles under py-spy, GIL samples; not in the table):\n\n"
        + spots
    )
    c.update_results("maledata", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
