"""Observation/$lastn and Observation/$stats."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from kjerne.api.body import FORM, form_pairs, media_type
from kjerne.api.fhir_routes import base_url, repo_for, scope_to_person
from kjerne.api.render import FhirResponse, entry
from kjerne.fhir.outcome import invalid
from kjerne.store import observation_ops as ops
from kjerne.store.clock import now_us
from kjerne.store.indexing import date_range
from kjerne.store.repository import Repository

OSLO = ZoneInfo("Europe/Oslo")
STATS_SYSTEM = "http://hl7.org/fhir/observation-statistics"
KJ_STATS = "http://kjerne.no/fhir/CodeSystem/observation-statistics"


async def _pairs(request: Request) -> list[tuple[str, str]]:
    pairs = list(request.query_params.multi_items())
    if request.method == "POST" and media_type(request) == FORM:
        pairs += await form_pairs(request, request.app.state.settings.max_body_bytes)
    return pairs


def _query(repo: Repository, pairs: list[tuple[str, str]], person_id: str | None, allowed: set[str]) -> ops.ObsQuery:
    unknown = [k for k, _ in pairs if k not in allowed]
    if unknown:
        raise invalid(f"unknown parameter '{unknown[0]}'", unknown[0])
    scoped = scope_to_person(repo, "Observation", [(k, v) for k, v in pairs if k in ("patient", "subject")], person_id)
    patients = [
        v.removeprefix("Patient/") for k, value in scoped if k in ("patient", "subject") for v in value.split(",")
    ]
    if not patients:
        raise invalid("name the patient: patient=Patient/<id> or the person-id header", "patient")
    if hasattr(repo.access, "check_patient_ids"):
        repo.access.check_patient_ids(patients)
    q = ops.ObsQuery(patients=patients)
    q.codes = ops.parse_codes([v for k, v in pairs if k == "code"])
    q.categories = ops.parse_codes([v for k, v in pairs if k == "category"])
    for k, v in pairs:
        if k in ("date", "start", "end"):
            prefix, raw = (v[:2], v[2:]) if v[:2] in ("ge", "gt", "le", "lt") else ("", v)
            try:
                low, high = date_range(raw.replace(" ", "+"))
            except ValueError as exc:
                raise invalid(f"{k}: '{v}' is not a date", k) from exc
            if k == "start" or prefix in ("ge", "gt"):
                q.start_us = low
            elif k == "end" or prefix in ("le", "lt"):
                q.end_us = high
            else:
                q.start_us, q.end_us = low, high
    return q


async def lastn(request: Request) -> FhirResponse:
    pairs = await _pairs(request)
    repo = await run_in_threadpool(repo_for, request)
    allowed = {"patient", "subject", "code", "category", "max", "date", "_count"}
    q = _query(repo, pairs, request.headers.get("person-id"), allowed)
    raw_max = dict(pairs).get("max", "1")
    if not raw_max.isdigit():
        raise invalid("max must be a positive integer", "max")
    stored = await run_in_threadpool(ops.lastn, repo, q, int(raw_max))
    base = base_url(request)
    return FhirResponse(
        {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(stored),
            "entry": [entry(s, base, "match") for s in stored],
        }
    )


def _statistic(s: ops.CodeStats, period: dict[str, str]) -> dict[str, Any]:
    def quantity(value: float | None) -> dict[str, Any]:
        q: dict[str, Any] = {"value": round(value, 4) if value is not None else None}
        if s.unit:
            q.update(unit=s.unit, system="http://unitsofmeasure.org", code=s.unit)
        return q

    comps = [
        ("count", STATS_SYSTEM, {"valueInteger": s.count}),
        ("minimum", STATS_SYSTEM, {"valueQuantity": quantity(s.minimum)}),
        ("maximum", STATS_SYSTEM, {"valueQuantity": quantity(s.maximum)}),
        ("average", STATS_SYSTEM, {"valueQuantity": quantity(s.mean)}),
        ("last", KJ_STATS, {"valueQuantity": quantity(s.last)}),
    ]
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": s.system, "code": s.code} if s.system else {"code": s.code}]},
        "effectivePeriod": period,
        "component": [
            {"code": {"coding": [{"system": system, "code": code}]}, **value}
            for code, system, value in comps
            if not (isinstance(value.get("valueQuantity"), dict) and value["valueQuantity"]["value"] is None)
        ],
    }
    return obs


async def stats(request: Request) -> FhirResponse:
    pairs = await _pairs(request)
    repo = await run_in_threadpool(repo_for, request)
    allowed = {"patient", "subject", "code", "start", "end", "date", "duration", "bucket"}
    q = _query(repo, pairs, request.headers.get("person-id"), allowed)
    params = dict(pairs)
    if "duration" in params:
        try:
            hours = float(params["duration"])
        except ValueError as exc:
            raise invalid("duration is a number of hours", "duration") from exc
        if not 0 < hours <= 24 * 366 * 10:
            raise invalid("duration must be between 0 and ten years", "duration")
        q.end_us = q.end_us or now_us()
        q.start_us = q.end_us - int(hours * 3_600_000_000)
    result = await run_in_threadpool(ops.stats, repo, q, bucket=params.get("bucket"), tz=OSLO)
    period = {}
    if q.start_us is not None:
        period["start"] = dt.datetime.fromtimestamp(q.start_us / 1e6, dt.UTC).isoformat()
    if q.end_us is not None:
        period["end"] = dt.datetime.fromtimestamp(q.end_us / 1e6, dt.UTC).isoformat()
    parameters: list[dict[str, Any]] = []
    for s in result:
        parameters.append({"name": "statistic", "resource": _statistic(s, period)})
        for b in s.buckets:
            parameters.append(
                {
                    "name": "bucket",
                    "part": [
                        {"name": "code", "valueCode": s.code},
                        {"name": "start", "valueDate": b["start"]},
                        {"name": "count", "valueInteger": b["count"]},
                        {"name": "min", "valueDecimal": b["min"]},
                        {"name": "max", "valueDecimal": b["max"]},
                        {"name": "mean", "valueDecimal": round(b["mean"], 4) if b["mean"] is not None else None},
                    ],
                }
            )
    return FhirResponse({"resourceType": "Parameters", "parameter": parameters})
