"""The cumulative view: one patient's results per analysis over time, across all labs, harmonised by
code (data/analyses.csv) and converted to one unit where the quantity allows, each value with its own
lab's reference interval."""

from __future__ import annotations

from dataclasses import dataclass, field

from kjerne.services.provesvar.reading import all_matches, patient_pairs
from kjerne.store.repository import Repository
from kjerne.terminology.analyses import Harmonised, catalogue, harmonise

CANCELLED = ("cancelled", "entered-in-error")


@dataclass(slots=True)
class Cell:
    effective: str
    value: float
    unit: str | None
    original_value: float
    original_unit: str | None
    reference_low: float | None
    reference_high: float | None
    flag: str | None  # H | L | HH | LL | A | None (normal or unknown)
    lab: str | None
    observation_id: str | None
    converted: bool
    comparator: str | None = None
    status: str | None = None


@dataclass(slots=True)
class Row:
    key: str
    display_no: str
    display_en: str
    unit: str | None
    category: str | None
    cells: list[Cell] = field(default_factory=list)


@dataclass(slots=True)
class CumulativeTable:
    rows: list[Row]
    dates: list[str]  # every date (YYYY-MM-DD) with at least one result, newest first
    unmatched: int  # numeric results whose analysis is not in the catalogue


def _flag(h: Harmonised) -> str | None:
    if h.interpretation and h.interpretation not in ("N",):
        return h.interpretation
    if h.reference_high is not None and h.value > h.reference_high:
        return "H"
    if h.reference_low is not None and h.value < h.reference_low:
        return "L"
    return None


def cumulative(repo: Repository, patient_ids: list[str], *, since: str | None = None) -> CumulativeTable:
    pairs = [*patient_pairs(patient_ids), ("category", "laboratory"), ("_sort", "-date")]
    if since:
        pairs.append(("date", f"ge{since}"))
    rows: dict[str, Row] = {}
    dates: set[str] = set()
    unmatched = 0
    cat = catalogue()
    for obs in all_matches(repo, "Observation", pairs):
        if obs.get("status") in CANCELLED:
            continue
        h = harmonise(obs, cat)
        if h is None:
            unmatched += "valueQuantity" in obs
            continue
        a = h.analysis
        row = rows.get(a.key)
        if row is None:
            row = rows[a.key] = Row(a.key, a.display_no, a.display_en, a.canonical_unit, a.category)
        effective = h.effective or ""
        row.cells.append(
            Cell(
                effective=effective,
                value=h.value,
                unit=h.unit,
                original_value=h.original_value,
                original_unit=h.original_unit,
                reference_low=h.reference_low,
                reference_high=h.reference_high,
                flag=_flag(h),
                lab=h.lab_display,
                observation_id=h.observation_id or obs.get("id"),
                converted=h.converted,
                comparator=h.comparator,
                status=obs.get("status"),
            )
        )
        if effective:
            dates.add(effective[:10])
    for row in rows.values():
        row.cells.sort(key=lambda c: c.effective, reverse=True)
    ordered = sorted(rows.values(), key=lambda r: ((r.category or ""), r.display_no))
    return CumulativeTable(ordered, sorted(dates, reverse=True), unmatched)
