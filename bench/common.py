"""What the benchmarks share: machine facts, a PostgreSQL cluster, a uvicorn server as a subprocess,
synthetic lab data, the rows the store writes for a resource, and the sections of bench/RESULTS.md.

Every benchmark is one command (`.venv/bin/python bench/<name>.py`) that prints a table and replaces its
own section of RESULTS.md.
"""

from __future__ import annotations

import copy
import datetime as dt
import http.client
import math
import os
import platform
import random
import shlex
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.parse
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Connection, create_engine, func, select
from sqlalchemy.pool import StaticPool

from kjerne.demo import catalogue as cat
from kjerne.fhir.identifiers import OID_FNR, OID_ORGNR, make_synthetic_fnr
from kjerne.store.db import normalise_url
from kjerne.store.schema import metadata, resource
from kjerne.store.writer import Writer
from kjerne.testing.pgcluster import Cluster, find_bindir

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
RESULTS = Path(__file__).with_name("RESULTS.md")

# PostgreSQL settings for every benchmark cluster (the rest are initdb defaults). fsync and
# synchronous_commit stay on unless a benchmark says otherwise: an acknowledged write is on disk.
PG_SETTINGS = {
    "shared_buffers": "2GB",
    "effective_cache_size": "12GB",
    "maintenance_work_mem": "1GB",
    "work_mem": "16MB",
    "max_wal_size": "8GB",
    "checkpoint_timeout": "30min",
    "max_connections": "200",
}


# -- machine and reporting ------------------------------------------------------------------------


def stop_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so a stopped benchmark still stops its server and cluster."""
    signal.signal(signal.SIGTERM, lambda _sig, _frame: sys.exit(143))


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def memory_gb() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return float("nan")


def postgres_version() -> str:
    try:
        out = subprocess.run([str(find_bindir() / "postgres"), "--version"], capture_output=True, text=True)
        return out.stdout.strip().replace("postgres (PostgreSQL) ", "PostgreSQL ")
    except (OSError, RuntimeError):
        return "PostgreSQL (not found)"


def machine() -> str:
    return (
        f"{ncpu()} CPUs ({cpu_model()}), {memory_gb():.0f} GB RAM, Linux {platform.release()}, "
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, {postgres_version()}"
    )


def command_line() -> str:
    script = Path(sys.argv[0]).resolve()
    try:
        script_s = str(script.relative_to(REPO))
    except ValueError:
        script_s = str(script)
    return shlex.join([".venv/bin/python", script_s, *sys.argv[1:]])


def code_version() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "src"], cwd=REPO, capture_output=True, text=True)
    except OSError:
        return "unknown"
    rev = head.stdout.strip() or "unknown"
    return rev + (" with uncommitted changes in src/" if dirty.stdout.strip() else "")


def header(started: float) -> str:
    took = time.perf_counter() - started
    return (
        f"Measured {dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z} on {machine()}; code at {code_version()}.\n"
        f"Command: `{command_line()}` (ran {took / 60:.1f} min).\n"
    )


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out) + "\n"


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(c) for c in headers], *[[str(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
        if n == 0:
            print("  ".join("-" * w for w in widths))
    sys.stdout.flush()


_PREAMBLE = """# Benchmark results

Each section below is written by its own command (`make bench` runs them all); a run replaces its
section and leaves the others alone. Figures are from one run on the machine named in the section, with
the client, the server and the database sharing its cores.
"""


def update_results(key: str, body: str) -> None:
    """Replace (or append) the section between the markers for `key` in bench/RESULTS.md."""
    start, end = f"<!-- bench:{key} -->", f"<!-- /bench:{key} -->"
    block = f"{start}\n{body.rstrip()}\n{end}\n"
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else _PREAMBLE
    if start in text and end in text:
        before, rest = text.split(start, 1)
        after = rest.split(end, 1)[1].lstrip("\n")
        text = before + block + ("\n" + after if after else "")
    else:
        text = text.rstrip() + "\n\n" + block
    RESULTS.write_text(text, encoding="utf-8")
    print(f"\nwrote the '{key}' section of {RESULTS.relative_to(REPO)}")


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


# -- CPU accounting from /proc ---------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def _children() -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        out.setdefault(int(fields[1]), []).append(int(entry.name))
    return out


def tree_cpu(root: int) -> float:
    """CPU seconds (user + system) used so far by a process, its live descendants and the children it
    has reaped (PostgreSQL backends that have exited count towards the postmaster)."""
    kids = _children()
    total = 0.0
    todo = [root]
    while todo:
        pid = todo.pop()
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
        if pid == root:
            total += int(fields[13]) + int(fields[14])
        todo += kids.get(pid, [])
    return total / _TICK


def machine_busy() -> float:
    """CPU seconds all processes on the machine have used since boot (every core, /proc/stat)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / _TICK


def ncpu() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def analyse(db_url: str) -> None:
    """PostgreSQL: gather planner statistics after the warm-up, as autovacuum has long done in a running
    service. A benchmark starts from empty tables, and statements prepared then keep plans made for
    empty tables until the next ANALYZE (autovacuum's first one comes a minute or more later)."""
    if not db_url.startswith("postgresql"):
        return
    engine = create_engine(normalise_url(db_url), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
    finally:
        engine.dispose()


def wait_for_quiet(*, threshold: float = 0.15, max_wait: float = 30.0) -> float:
    """Wait (up to max_wait s) until other processes use less than `threshold` of the machine over a
    2 s sample, so a run does not start while something else is busy. Returns the last busy share."""
    deadline = time.monotonic() + max_wait
    said = False
    while True:
        b0, t0 = machine_busy(), time.monotonic()
        time.sleep(2)
        share = (machine_busy() - b0) / ((time.monotonic() - t0) * ncpu())
        if share < threshold:
            return share
        if time.monotonic() > deadline:
            print(f"  (other processes still keep the machine {share:.0%} busy; measuring anyway)", flush=True)
            return share
        if not said:
            print(f"  waiting up to {max_wait:.0f} s: other processes keep the machine {share:.0%} busy ...",
                  flush=True)
            said = True


def own_cpu() -> float:
    t = os.times()
    return t.user + t.system


# -- PostgreSQL and the HTTP server -----------------------------------------------------------------


@contextmanager
def postgres(*, fsync: bool = True) -> Iterator[Cluster]:
    with Cluster(fsync=fsync, settings=PG_SETTINGS) as cluster:
        yield cluster


def postmaster_pid(cluster: Cluster) -> int:
    return int((cluster.data / "postmaster.pid").read_text().split()[0])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str  # http://127.0.0.1:port
    port: int
    process: subprocess.Popen[bytes]


@dataclass
class Reply:
    status_code: int
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


class LoadClient:
    """One keep-alive HTTP/1.1 connection for a load generator: the standard library's http.client,
    which costs the shared cores about a fifth of httpx's CPU per request (so the benchmark measures
    the server, not its client). Reconnects when the server closes the connection."""

    def __init__(self, base_url: str, *, timeout: float = 120) -> None:
        parts = urllib.parse.urlsplit(base_url)
        self._host, self._port, self._timeout = parts.hostname or "127.0.0.1", parts.port or 80, timeout
        self._conn: http.client.HTTPConnection | None = None

    def post(self, path: str, content: bytes, headers: dict[str, str]) -> Reply:
        for attempt in (0, 1):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
            try:
                self._conn.request("POST", path, body=content, headers=headers)
                response = self._conn.getresponse()
                reply = Reply(response.status, response.read())
            except (ConnectionError, http.client.BadStatusLine):
                self.close()  # the server closed an idle keep-alive connection: send again on a new one
                if attempt:
                    raise
                continue
            if response.will_close:
                self.close()
            return reply
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


@contextmanager
def server(db_url: str, var_dir: Path, *, workers: int = 1) -> Iterator[Server]:
    """`kjerne serve --dev` on a free loopback port, as its own process group; stopped on exit."""
    port = free_port()
    log = open(var_dir / f"server-{port}.log", "wb")  # noqa: SIM115 - closed below
    env = {**os.environ, "KJERNE_VAR": str(var_dir)}
    cmd = [str(BIN / "kjerne"), "serve", "--dev", "--db", db_url, "--host", "127.0.0.1", "--port", str(port)]
    if workers > 1:
        cmd += ["--workers", str(workers)]
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited: {(var_dir / f'server-{port}.log').read_text()[-2000:]}")
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not come up within 60 s")
            time.sleep(0.1)
        yield Server(url, port, proc)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            pass
        log.close()


def producer_policy(engine: Any, var_dir: Path) -> Any:
    """The AccessPolicy the server builds for the benchmark's producer (a system token for
    PRODUCER_ORG): it stamps meta.source on what the producer writes."""
    from kjerne.access.policy import AccessPolicy, RequestInfo
    from kjerne.api.auth import build_verifier
    from kjerne.config import Settings

    port = free_port()
    token = issuer_for(var_dir, port).system_token(org=PRODUCER_ORG, scope="system/*.write")
    settings = Settings(dev=True, var_dir=var_dir, host="127.0.0.1", port=port)
    principal = build_verifier(settings).verify(f"Bearer {token}")
    return AccessPolicy(engine, principal, RequestInfo())


def issuer_for(var_dir: Path, port: int) -> Any:
    """The development issuer as the server on `port` sees it (same key directory, same issuer URL)."""
    from kjerne.api.auth import dev_issuer
    from kjerne.config import Settings

    return dev_issuer(Settings(var_dir=var_dir, host="127.0.0.1", port=port))


PRACTITIONER = {"hpr": "9144889", "pid": "13116900216", "org": "974760673"}
PRODUCER_ORG = "987654325"


# -- synthetic persons and lab results --------------------------------------------------------------


def synthetic_fnrs(n: int, seed: int) -> list[str]:
    """`n` distinct synthetic fødselsnummer with valid check digits."""
    rng = random.Random(f"bench-fnr:{seed}")
    seen: set[str] = set()
    out: list[str] = []
    while len(out) < n:
        born = dt.date(1930, 1, 1) + dt.timedelta(days=rng.randint(0, 33000))
        individ = rng.randint(500, 999) if born.year >= 2000 else rng.randint(0, 499)
        fnr = make_synthetic_fnr(born, individ)
        if fnr is None or fnr in seen:
            continue
        seen.add(fnr)
        out.append(fnr)
    return out


ANALYSES = [a for a in cat.ANALYSES.values()]
LABS = ["lab-fjordvik", "lab-kystlab", "lab-mjosdalen"]
_OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
_VITALS = [
    ("8867-4", "Heart rate", "Puls", "/min", "/min", 50, 100),
    ("9279-1", "Respiratory rate", "Respirasjonsfrekvens", "/min", "/min", 10, 22),
    ("29463-7", "Body weight", "Vekt", "kg", "kg", 50, 110),
    ("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry", "Oksygenmetning", "%", "%", 90, 100),
]


def person_subject(fnr: str) -> dict[str, Any]:
    """A subject named only by national id: the store resolves it to the person's Patient."""
    return {"type": "Patient", "identifier": {"system": OID_FNR, "value": fnr}}


def fhir_time(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _org(lab_key: str) -> dict[str, Any]:
    org = cat.ORG_BY_KEY[lab_key]
    return {"reference": f"Organization/{org.id}", "identifier": {"system": OID_ORGNR, "value": org.orgnr},
            "display": org.name}


def lab_result(rng: random.Random, analysis: Any, lab_key: str) -> tuple[float, str]:
    """A plausible value in the lab's unit and its interpretation flag (L, N or H)."""
    unit = analysis.unit_at(lab_key)
    low, high = analysis.ref["F"]
    centre = ((low or 0) + (high or (low or 1) * 2)) / 2 or 1.0
    value = round(rng.lognormvariate(math.log(centre), 0.25) * unit.factor, unit.decimals)
    if low is not None and value < low * unit.factor:
        return value, "L"
    if high is not None and value > high * unit.factor:
        return value, "H"
    return value, "N"


def lab_observation_body(
    analysis: Any, lab_key: str, value: float, flag: str, subject: dict[str, Any], collected: str, issued: str,
    request_ref: str, specimen_ref: str,
) -> dict[str, Any]:
    unit = analysis.unit_at(lab_key)
    low, high = analysis.ref["F"]
    reference: dict[str, Any] = {}
    if low is not None:
        reference["low"] = {"value": round(low * unit.factor, 2), "unit": unit.unit, "system": cat.UCUM,
                            "code": unit.ucum}
    if high is not None:
        reference["high"] = {"value": round(high * unit.factor, 2), "unit": unit.unit, "system": cat.UCUM,
                             "code": unit.ucum}
    nlk, loinc = unit.nlk or analysis.nlk, unit.loinc or analysis.loinc
    return {
        "resourceType": "Observation",
        "basedOn": [{"reference": request_ref}],
        "status": "final",
        "category": [{"coding": [{"system": _OBS_CATEGORY, "code": "laboratory", "display": "Laboratory"}]}],
        "code": {"coding": [{"system": cat.NLK, "code": nlk[0], "display": nlk[1]},
                            {"system": cat.LOINC, "code": loinc[0], "display": loinc[1]}], "text": analysis.text},
        "subject": copy.deepcopy(subject),
        "effectiveDateTime": collected,
        "issued": issued,
        "performer": [_org(lab_key)],
        "valueQuantity": {"value": value, "unit": unit.unit, "system": cat.UCUM, "code": unit.ucum},
        "interpretation": [{"coding": [{"system": cat.INTERPRETATION, "code": flag}]}],
        "specimen": {"reference": specimen_ref},
        "referenceRange": [reference] if reference else [{"text": "Ingen referanse"}],
    }


def lab_observation(
    rng: random.Random, analysis: Any, subject: dict[str, Any], collected: dt.datetime, issued: dt.datetime,
    lab_key: str, request_ref: str, specimen_ref: str,
) -> dict[str, Any]:
    value, flag = lab_result(rng, analysis, lab_key)
    return lab_observation_body(analysis, lab_key, value, flag, subject, fhir_time(collected), fhir_time(issued),
                                request_ref, specimen_ref)


VITALS = _VITALS


def vital_observation_body(vital: tuple[Any, ...], value: int, subject: dict[str, Any], moment: str) -> dict[str, Any]:
    loinc, display, text, unit, ucum, _lo, _hi = vital
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": _OBS_CATEGORY, "code": "vital-signs", "display": "Vital Signs"}]}],
        "code": {"coding": [{"system": cat.LOINC, "code": loinc, "display": display}], "text": text},
        "subject": copy.deepcopy(subject),
        "effectiveDateTime": moment,
        "valueQuantity": {"value": value, "unit": unit, "system": cat.UCUM, "code": ucum},
    }


def random_moment(rng: random.Random, years: float = 5.0) -> dt.datetime:
    now = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)
    return now - dt.timedelta(seconds=rng.randint(0, int(years * 365.25 * 86400)))


def lab_bundle(rng: random.Random, fnr: str, n_results: int = 10) -> dict[str, Any]:
    """A transaction as a laboratory delivers one report: ServiceRequest, Specimen, DiagnosticReport and
    `n_results` Observations, all POSTs with urn:uuid references, the patient named by fødselsnummer."""
    subject = person_subject(fnr)
    collected = random_moment(rng)
    issued = collected + dt.timedelta(minutes=rng.randint(60, 1200))
    lab_key = rng.choice(LABS)
    urn = {k: f"urn:uuid:{uuid.UUID(int=rng.getrandbits(128), version=4)}" for k in ("sr", "spec", "dr")}
    analyses = rng.sample(ANALYSES, n_results)
    obs_urns = [f"urn:uuid:{uuid.UUID(int=rng.getrandbits(128), version=4)}" for _ in analyses]
    service_request = {
        "resourceType": "ServiceRequest",
        "identifier": [{"system": "https://id.kjerne.example/rekvisisjon", "value": f"R{rng.getrandbits(40)}"}],
        "status": "completed",
        "intent": "order",
        "category": [{"coding": [{"system": cat.SNOMED, "code": "108252007", "display": "Laboratory procedure"}]}],
        "code": {"coding": [{"system": cat.KV_8202, "code": "CLIN", "display": "Medisinsk biokjemi"}]},
        "subject": copy.deepcopy(subject),
        "authoredOn": fhir_time(collected - dt.timedelta(minutes=30)),
        "performer": [_org(lab_key)],
        "specimen": [{"reference": urn["spec"]}],
    }
    specimen = {
        "resourceType": "Specimen",
        "accessionIdentifier": {"system": "https://id.kjerne.example/provenummer", "value": str(rng.getrandbits(40))},
        "status": "available",
        "type": {"coding": [{"system": cat.KV_8351, "code": "P", "display": "Plasma"},
                            {"system": cat.SNOMED, "code": "119361006", "display": "Plasma specimen"}]},
        "subject": copy.deepcopy(subject),
        "receivedTime": fhir_time(collected + dt.timedelta(minutes=45)),
        "request": [{"reference": urn["sr"]}],
        "collection": {"collectedDateTime": fhir_time(collected)},
    }
    report = {
        "resourceType": "DiagnosticReport",
        "identifier": [{"system": "https://id.kjerne.example/svarrapport", "value": f"S{rng.getrandbits(40)}"}],
        "basedOn": [{"reference": urn["sr"]}],
        "status": "final",
        "category": [{"coding": [{"system": cat.KV_8202, "code": "LAB", "display": "Laboratoriemedisin"},
                                 {"system": cat.V2_0074, "code": "LAB", "display": "Laboratory"}]}],
        "code": {"coding": [{"system": cat.LOINC, "code": "11502-2", "display": "Laboratory report"}],
                 "text": "Medisinsk biokjemi"},
        "subject": copy.deepcopy(subject),
        "effectiveDateTime": fhir_time(collected),
        "issued": fhir_time(issued),
        "performer": [_org(lab_key)],
        "specimen": [{"reference": urn["spec"]}],
        "result": [{"reference": u, "display": a.text} for u, a in zip(obs_urns, analyses, strict=True)],
    }
    observations = [
        lab_observation(rng, a, subject, collected, issued, lab_key, urn["sr"], urn["spec"]) for a in analyses
    ]
    entries = [(urn["sr"], service_request), (urn["spec"], specimen), (urn["dr"], report)]
    entries += list(zip(obs_urns, observations, strict=True))
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": full, "resource": res, "request": {"method": "POST", "url": res["resourceType"]}}
            for full, res in entries
        ],
    }


# -- the rows the store writes -----------------------------------------------------------------------


def new_patient(fnr: str, res_id: str) -> dict[str, Any]:
    """The Patient the store creates when data first arrives for an unknown person
    (kjerne.store.identity.resolve_person_references)."""
    return {"resourceType": "Patient", "id": res_id, "identifier": [{"system": OID_FNR, "value": fnr}]}


RESOURCE_COLUMNS = [col.name for col in resource.columns]
# Every table whose rows belong to one stored resource (the search index tables and any other the store
# adds), found from the schema rather than listed, so new index tables are carried along.
ROW_TABLES = [
    t for t in metadata.sorted_tables
    if "rid" in t.c and t.name not in ("resource", "resource_history") and not t.name.startswith("search_")
]
# Tables the store writes beside a resource without naming it (patient_code: which codes a patient has),
# read back by SQLite rowid in the scratch database. The audit log and search snapshots are left out.
SIDE_TABLES = [
    t for t in metadata.sorted_tables
    if "rid" not in t.c and not t.name.startswith(("audit_", "search_"))
]
INDEX_COLUMNS = {t.name: [col.name for col in t.columns] for t in ROW_TABLES + SIDE_TABLES}
Rows = dict[str, list[tuple[Any, ...]]]  # table -> rows in column order; "resource" has one row


class Scratch:
    """An in-memory SQLite database with the store's schema. The store's own Writer and BundleProcessor
    write into it, and the rows they wrote are read back: exactly the rows the store would write
    anywhere else, for copying into the database under test."""

    def __init__(self) -> None:
        import kjerne.audit.schema  # noqa: F401 - the audit tables, for writes made under an AccessPolicy

        self.engine = create_engine("sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False})
        metadata.create_all(self.engine)

    def write(self, res: dict[str, Any], res_id: str) -> Rows:
        """The rows Writer.put stores for `res` as a new resource (no validation), side tables included;
        nothing is kept."""
        with self.engine.connect() as conn:
            tx = conn.begin()
            try:
                marks = _side_marks(conn)
                writer = Writer(conn, validate_input=False)
                stored = writer.put(res, res_id).stored
                writer.finish()
                return {**read_rows(conn, [stored.rid])[stored.rid], **_side_rows(conn, marks)}
            finally:
                tx.rollback()

    def transaction(self, bundle: dict[str, Any], access: Any = None) -> tuple[list[Rows], Rows]:
        """The rows BundleProcessor stores for a transaction Bundle sent by `access` (an AccessPolicy;
        the platform itself when None), committed here so that later Bundles find the Patients identity
        resolution created: per resource in the order they were written, and the side-table rows."""
        from kjerne.access.context import UNRESTRICTED
        from kjerne.store.bundles import BundleProcessor
        from kjerne.store.repository import Repository

        with self.engine.connect() as conn:
            before = conn.execute(select(func.coalesce(func.max(resource.c.rid), 0))).scalar_one()
            marks = _side_marks(conn)
        BundleProcessor(Repository(self.engine, access or UNRESTRICTED)).process(bundle)
        with self.engine.connect() as conn:
            rids = list(conn.execute(select(resource.c.rid).where(resource.c.rid > before)).scalars())
            rows = read_rows(conn, rids)
            side = _side_rows(conn, marks)
        return [rows[rid] for rid in sorted(rids)], side


def _side_marks(conn: Connection) -> dict[str, int]:
    return {t.name: conn.exec_driver_sql(f"SELECT coalesce(max(rowid), 0) FROM {t.name}").scalar_one()
            for t in SIDE_TABLES}


def _side_rows(conn: Connection, marks: dict[str, int]) -> Rows:
    out: Rows = {}
    for t in SIDE_TABLES:
        cols = ", ".join(INDEX_COLUMNS[t.name])
        rows = conn.exec_driver_sql(f"SELECT {cols} FROM {t.name} WHERE rowid > ? ORDER BY rowid",
                                    (marks[t.name],)).all()
        if rows:
            out[t.name] = [_plain(r) for r in rows]
    return out


def read_rows(conn: Connection, rids: Sequence[int]) -> dict[int, Rows]:
    """The resource row and every index row of each rid, as stored."""
    out: dict[int, Rows] = {rid: {"resource": []} for rid in rids}
    for row in conn.execute(select(resource).where(resource.c.rid.in_(rids))):
        out[row.rid]["resource"].append(_plain(row))
    for table in ROW_TABLES:
        for row in conn.execute(select(table).where(table.c.rid.in_(rids))):
            out[row.rid].setdefault(table.name, []).append(_plain(row))
    return out


def _plain(row: Any) -> tuple[Any, ...]:
    return tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)


@contextmanager
def fixed_clock(now: int) -> Iterator[None]:
    """Every version written meanwhile gets `now` as its lastUpdated (for rows made from templates)."""
    import kjerne.store.writer as writer_module

    saved = writer_module.now_us
    writer_module.now_us = lambda: now
    try:
        yield
    finally:
        writer_module.now_us = saved


def random_id(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


# -- profiling a server with py-spy -----------------------------------------------------------------


@contextmanager
def py_spy(pid: int, out: Path | None, *, rate: int = 250, gil: bool = False) -> Iterator[None]:
    """Sample the process tree `pid` with py-spy (raw collapsed stacks to `out`) while the block runs.
    Does nothing when `out` is None."""
    if out is None:
        yield
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [str(BIN / "py-spy"), "record", "-p", str(pid), "--subprocesses", "--format", "raw", "--rate", str(rate),
           "--nonblocking", *(["--gil"] if gil else []), "-o", str(out)]
    spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1.0)
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        try:
            spy.wait(timeout=30)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait()


Shares = list[tuple[str, float]]
_IDLE = ("select (selectors.py", "_worker (concurrent/futures/thread.py", "wait (threading.py")


def _function(frame: str) -> str:
    """'name (path/file.py:123)' -> 'name (path/file.py)'."""
    head, _, tail = frame.rpartition(":")
    return head + ")" if tail.rstrip(")").isdigit() else frame


def hotspots(raw: Path, *, top: int = 20) -> tuple[Shares, Shares]:
    """From py-spy's raw output: the lines with the most samples on top of the stack (self time) and the
    project functions on the most stacks (inclusive time), as shares of all non-idle samples."""
    self_counts: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not count_s.isdigit():
            continue
        frames = [f for f in stack.split(";") if f and not f.startswith(("process ", "thread "))]
        if not frames or frames[-1].startswith(_IDLE):
            continue
        n = int(count_s)
        total += n
        self_counts[frames[-1]] = self_counts.get(frames[-1], 0) + n
        for key in {_function(f) for f in frames if "kjerne/" in f}:
            incl[key] = incl.get(key, 0) + n
    if total == 0:
        return [], []
    by_self = sorted(((k, v / total) for k, v in self_counts.items()), key=lambda kv: -kv[1])[:top]
    by_incl = sorted(((k, v / total) for k, v in incl.items()), key=lambda kv: -kv[1])[:top]
    return by_self, by_incl


def hotspot_markdown(files: list[Path], title: str, *, top: int = 20) -> str:
    """A collapsed section with the hotspots of each py-spy file, for RESULTS.md; also printed."""
    parts = []
    for f in files:
        if not f.exists():
            continue
        by_self, by_incl = hotspots(f, top=top)
        lines = [f"{f.stem}: self time (samples with the GIL held, top {top})"]
        lines += [f"  {v:6.1%}  {k}" for k, v in by_self]
        lines.append(f"{f.stem}: inclusive time of project functions (top {top})")
        lines += [f"  {v:6.1%}  {k}" for k, v in by_incl]
        print("\n" + "\n".join(lines))
        parts.append("\n".join(lines))
    if not parts:
        return ""
    return (f"\n<details><summary>{title}</summary>\n\n```\n" + "\n\n".join(parts) + "\n```\n</details>\n")
