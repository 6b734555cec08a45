"""`kjerne import`: FHIR JSON resources or Bundles, or NDJSON, from files or folders."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from kjerne.fhir.outcome import FhirError
from kjerne.store.bundles import BundleProcessor
from kjerne.store.repository import Repository

SUFFIXES = (".json", ".ndjson")


@dataclass
class ImportSummary:
    counts: Counter[str] = field(default_factory=Counter)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (where, reason)

    def reject(self, where: str, reason: str) -> None:
        self.counts["rejected"] += 1
        self.rejected.append((where, reason))


def files(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.is_file() and f.suffix in SUFFIXES))
        else:
            out.append(p)
    return out


def _items(path: Path) -> Iterator[tuple[str, Any]]:
    data = path.read_bytes()
    if path.suffix == ".ndjson":
        for n, line in enumerate(data.splitlines(), 1):
            if line.strip():
                yield f"{path}:{n}", orjson.loads(line)
    else:
        yield str(path), orjson.loads(data)


def import_item(repo: Repository, where: str, item: Any, summary: ImportSummary) -> None:
    if not isinstance(item, dict) or "resourceType" not in item:
        summary.reject(where, "not a FHIR resource")
        return
    if item["resourceType"] == "Bundle" and item.get("type") in ("transaction", "batch"):
        response = BundleProcessor(repo, minimal=True).process(item)
        for n, entry in enumerate(response.get("entry", [])):
            status = entry.get("response", {}).get("status", "")
            if status.startswith("201"):
                summary.counts["created"] += 1
            elif status.startswith("2"):
                summary.counts["updated"] += 1
            else:
                issues = entry.get("response", {}).get("outcome", {}).get("issue", [])
                summary.reject(f"{where} entry {n}", "; ".join(i.get("diagnostics", "") for i in issues) or status)
        return
    if item["resourceType"] == "Bundle" and item.get("type") in ("collection", "searchset", "document", "message"):
        for n, entry in enumerate(item.get("entry") or []):
            res = entry.get("resource") if isinstance(entry, dict) else None
            if res is None:
                continue
            try:
                import_item(repo, f"{where} entry {n}", res, summary)
            except FhirError as err:
                summary.reject(f"{where} entry {n}", str(err))
        return
    result = repo.update(item, item["id"]) if item.get("id") else repo.create(item)
    summary.counts["created" if result.created else ("updated" if result.changed else "unchanged")] += 1


def run_import(repo: Repository, paths: list[Path], *, progress: bool = True) -> ImportSummary:
    from rich.progress import Progress

    summary = ImportSummary()
    todo = files(paths)
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("importing", total=len(todo))
        for path in todo:
            try:
                for where, item in _items(path):
                    try:
                        import_item(repo, where, item, summary)
                    except FhirError as err:
                        summary.reject(where, str(err))
            except (OSError, orjson.JSONDecodeError) as exc:
                summary.reject(str(path), f"cannot read: {exc}")
            bar.advance(task)
    return summary
