"""Prøvesvar operations: Observation/$cumulative, ServiceRequest/$duplicate-check, ServiceRequest/$requested."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from kjerne.api.fhir_routes import base_url, repo_for, scope_to_person
from kjerne.api.operations.observation_stats import _pairs
from kjerne.api.render import FhirResponse
from kjerne.fhir.outcome import FhirError, invalid
from kjerne.services.provesvar.cumulative import cumulative
from kjerne.services.provesvar.duplicates import recent_results
from kjerne.services.provesvar.requisitions import requested_by
from kjerne.store import observation_ops as ops
from kjerne.store.repository import Repository


def _patients(repo: Repository, pairs: list[tuple[str, str]], person_id: str | None, allowed: set[str]) -> list[str]:
    unknown = [k for k, _ in pairs if k not in allowed]
    if unknown:
        raise invalid(f"unknown parameter '{unknown[0]}'", unknown[0])
    scoped = scope_to_person(repo, "Observation", [(k, v) for k, v in pairs if k == "patient"], person_id)
    ids = [v.removeprefix("Patient/") for k, value in scoped if k == "patient" for v in value.split(",")]
    if not ids:
        raise invalid("name the patient: patient=Patient/<id> or the person-id header", "patient")
    if hasattr(repo.access, "check_patient_ids"):
        repo.access.check_patient_ids(ids)
    return ids


def _num(name: str, value: float | None) -> list[dict[str, Any]]:
    return [] if value is None else [{"name": name, "valueDecimal": value}]


async def cumulative_view(request: Request) -> FhirResponse:
    pairs = await _pairs(request)
    repo = await run_in_threadpool(repo_for, request)
    patients = _patients(repo, pairs, request.headers.get("person-id"), {"patient", "since"})
    since = dict(pairs).get("since")
    table = await run_in_threadpool(cumulative, repo, patients, since=since)
    base = base_url(request)
    params: list[dict[str, Any]] = []
    for row in table.rows:
        parts: list[dict[str, Any]] = [
            {"name": "key", "valueCode": row.key},
            {"name": "display", "valueString": row.display_no},
            {"name": "displayEnglish", "valueString": row.display_en},
        ]
        if row.unit:
            parts.append({"name": "unit", "valueCode": row.unit})
        for c in row.cells:
            result: list[dict[str, Any]] = [
                {"name": "effective", "valueDateTime": c.effective},
                {"name": "value", "valueDecimal": c.value},
                {"name": "converted", "valueBoolean": c.converted},
                {
                    "name": "original",
                    "valueQuantity": {
                        "value": c.original_value,
                        **({"unit": c.original_unit} if c.original_unit else {}),
                    },
                },
                *_num("referenceLow", c.reference_low),
                *_num("referenceHigh", c.reference_high),
            ]
            if c.unit:
                result.append({"name": "unit", "valueCode": c.unit})
            if c.flag:
                result.append({"name": "interpretation", "valueCode": c.flag})
            if c.lab:
                result.append({"name": "lab", "valueString": c.lab})
            if c.observation_id:
                result.append(
                    {"name": "observation", "valueReference": {"reference": f"{base}/Observation/{c.observation_id}"}}
                )
            parts.append({"name": "result", "part": result})
        params.append({"name": "analysis", "part": parts})
    withheld = getattr(repo.access, "withheld_outcome", None)
    outcome = withheld() if withheld else None
    if outcome:
        params.append({"name": "outcome", "resource": outcome})
    return FhirResponse({"resourceType": "Parameters", "parameter": params})


async def duplicate_check(request: Request) -> FhirResponse:
    pairs = await _pairs(request)
    repo = await run_in_threadpool(repo_for, request)
    patients = _patients(repo, pairs, request.headers.get("person-id"), {"patient", "code"})
    codes = ops.parse_codes([v for k, v in pairs if k == "code"])
    if not codes:
        raise invalid("name the analyses to be ordered: code=system|code", "code")
    checks = await run_in_threadpool(recent_results, repo, patients, codes)
    base = base_url(request)
    params = []
    for check in checks:
        parts: list[dict[str, Any]] = [
            {
                "name": "code",
                "valueCoding": {"system": check.system, "code": check.code} if check.system else {"code": check.code},
            },
            {"name": "lookbackDays", "valueInteger": check.lookback_days},
            {"name": "duplicate", "valueBoolean": check.duplicate},
        ]
        if check.analysis is not None:
            parts.append({"name": "analysis", "valueString": check.analysis.display_no})
        for r in check.recent:
            recent = [{"name": "effective", "valueDateTime": r.effective}] if r.effective else []
            if r.value is not None:
                recent.append(
                    {"name": "value", "valueQuantity": {"value": r.value, **({"unit": r.unit} if r.unit else {})}}
                )
            if r.lab:
                recent.append({"name": "lab", "valueString": r.lab})
            if r.observation_id:
                recent.append(
                    {"name": "observation", "valueReference": {"reference": f"{base}/Observation/{r.observation_id}"}}
                )
            parts.append({"name": "recent", "part": recent})
        params.append({"name": "check", "part": parts})
    return FhirResponse({"resourceType": "Parameters", "parameter": params})


async def requested(request: Request) -> FhirResponse:
    repo = await run_in_threadpool(repo_for, request)
    principal = getattr(repo.access, "principal", None)
    if principal is None or principal.kind != "practitioner" or not principal.hpr:
        raise FhirError.of(
            403, "forbidden", "$requested lists the caller's own requisitions; it needs health personnel"
        )
    pairs = list(request.query_params.multi_items())
    patients = None
    if request.headers.get("person-id") or any(k == "patient" for k, _ in pairs):
        patients = _patients(repo, pairs, request.headers.get("person-id"), {"patient", "status"})
    items = await run_in_threadpool(requested_by, repo, principal.hpr, patients)
    wanted = dict(pairs).get("status")
    if wanted not in (None, "answered", "waiting"):
        raise invalid("status is answered or waiting", "status")
    base = base_url(request)
    params = []
    for item in items:
        state = "answered" if item.answered else "waiting"
        if wanted and wanted != state:
            continue
        parts = [{"name": "request", "resource": item.service_request}, {"name": "state", "valueCode": state}]
        parts += [
            {"name": "report", "valueReference": {"reference": f"{base}/DiagnosticReport/{r['id']}"}}
            for r in item.reports
        ]
        params.append({"name": "requisition", "part": parts})
    return FhirResponse({"resourceType": "Parameters", "parameter": params})
