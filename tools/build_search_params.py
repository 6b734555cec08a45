#!/usr/bin/env python3
"""Build the compact search-parameter table shipped in `src/kjerne/data/search-parameters.json`.

Reads the normative FHIR R4 SearchParameter Bundle and keeps only what the store needs per
parameter: code, type, expression, base, target, url and, for composites, their components.

It also records which element paths used by the expressions are choice elements (`value[x]`),
with the type suffixes their JSON names take. The R4 definitions still carry the XPath form of
every expression, and XPath spells choice elements concretely (`f:Observation/f:effectiveDateTime`),
so comparing the two tells the FHIRPath compiler that `Observation.effective` is read from
`effectiveDateTime`, `effectivePeriod`, `effectiveTiming` and `effectiveInstant`.

Usage: tools/build_search_params.py [BUNDLE] [OUTPUT]
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO.parent / "shared" / "data" / "fhir-r4" / "search-parameters.json"
DEFAULT_OUTPUT = REPO / "src" / "kjerne" / "data" / "search-parameters.json"

# Resource types that derive from Resource directly rather than from DomainResource.
NON_DOMAIN_RESOURCES = ("Binary", "Bundle", "Parameters")
ABSTRACT = ("Resource", "DomainResource")

_PREDICATE = re.compile(r"\[[^\[\]]*\]")
_STRING = re.compile(r"'(?:[^'\\]|\\.)*'")
_PATH = re.compile(r"\b[A-Z][A-Za-z]+(?:\.[a-z][A-Za-z]*)+")


def _xpath_paths(xpath: str) -> set[str]:
    """Dotted element paths of every alternative of an R4 XPath expression, predicates removed."""
    text = xpath
    while True:
        stripped = _PREDICATE.sub("", text)
        if stripped == text:
            break
        text = stripped
    out = set()
    for alt in text.split("|"):
        steps = re.findall(r"f:([A-Za-z]+)", alt)
        if steps:
            out.add(".".join(steps))
    return out


def _strip_calls(expr: str) -> str:
    """Remove `.where(...)`, `.exists()` style calls and indexers so only navigation remains."""
    expr = _STRING.sub("''", expr)
    out: list[str] = []
    i = 0
    while i < len(expr):
        ch = expr[i]
        if ch == "." and re.match(r"\.(where|exists|first|as|ofType|is)\(", expr[i:]):
            depth = 0
            j = expr.index("(", i)
            while j < len(expr):
                if expr[j] == "(":
                    depth += 1
                elif expr[j] == ")":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            i = j + 1
            continue
        if ch == "[":
            i = expr.index("]", i) + 1
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _expression_paths(expr: str) -> set[str]:
    """All dotted prefixes (two steps or more) of the navigation paths in an expression."""
    out = set()
    for path in _PATH.findall(_strip_calls(expr)):
        steps = path.split(".")
        for n in range(2, len(steps) + 1):
            out.add(".".join(steps[:n]))
    return out


def choice_elements(resources: list[dict]) -> tuple[dict[str, list[str]], list[str]]:
    """Choice elements referred to by the expressions, with the type suffixes XPath spells out.

    Returns the mapping and a list of expression paths XPath does not account for."""
    xpaths: set[str] = set()
    expr_paths: set[str] = set()
    for r in resources:
        if r.get("xpath"):
            xpaths |= _xpath_paths(r["xpath"])
        if r.get("expression") and r["type"] != "composite":
            expr_paths |= _expression_paths(r["expression"])
    by_parent: dict[str, list[str]] = {}
    for x in xpaths:
        parent, _, name = x.rpartition(".")
        by_parent.setdefault(parent, []).append(name)
    choices: dict[str, list[str]] = {}
    unexplained: list[str] = []
    for p in sorted(expr_paths):
        if p in xpaths:
            continue
        parent, _, name = p.rpartition(".")
        suffixes = sorted(
            n[len(name) :]
            for n in by_parent.get(parent, ())
            if n.startswith(name) and len(n) > len(name) and n[len(name)].isupper()
        )
        if suffixes:
            choices[p] = suffixes
        elif not any(x.startswith(p + ".") for x in xpaths):
            unexplained.append(p)
    return choices, unexplained


def compact(resource: dict) -> dict:
    out: dict = {
        "code": resource["code"],
        "type": resource["type"],
        "expression": resource.get("expression"),
        "base": list(resource.get("base", [])),
        "target": list(resource.get("target", [])),
        "url": resource["url"],
    }
    if resource.get("component"):
        out["component"] = [
            {"definition": c["definition"], "expression": c["expression"]} for c in resource["component"]
        ]
    return out


def build(source: Path) -> tuple[dict, list[str]]:
    bundle = json.loads(source.read_text(encoding="utf-8"))
    resources = [e["resource"] for e in bundle.get("entry", []) if e.get("resource")]
    resources = [r for r in resources if r.get("resourceType") == "SearchParameter"]
    params = sorted((compact(r) for r in resources), key=lambda p: (p["base"][0], p["code"]))
    types = {t for p in params for t in p["base"]} | {t for p in params for t in p["target"]}
    types |= set(NON_DOMAIN_RESOURCES)
    types -= set(ABSTRACT)
    choices, unexplained = choice_elements(resources)
    version = {r.get("version") for r in resources} - {None}
    data = {
        "fhirVersion": sorted(version)[0] if len(version) == 1 else None,
        "resourceTypes": sorted(types),
        "nonDomainResourceTypes": list(NON_DOMAIN_RESOURCES),
        "choiceElements": choices,
        "params": params,
    }
    return data, unexplained


def dump(data: dict) -> str:
    """Compact JSON with one parameter / choice element per line, so diffs stay readable."""
    dumps = lambda v: json.dumps(v, ensure_ascii=False, separators=(",", ":"))  # noqa: E731
    lines = ["{"]
    lines.append(f'"fhirVersion":{dumps(data["fhirVersion"])},')
    lines.append(f'"resourceTypes":{dumps(data["resourceTypes"])},')
    lines.append(f'"nonDomainResourceTypes":{dumps(data["nonDomainResourceTypes"])},')
    lines.append('"choiceElements":{')
    items = list(data["choiceElements"].items())
    for i, (k, v) in enumerate(items):
        lines.append(f"{dumps(k)}:{dumps(v)}{',' if i < len(items) - 1 else ''}")
    lines.append("},")
    lines.append('"params":[')
    for i, p in enumerate(data["params"]):
        lines.append(f"{dumps(p)}{',' if i < len(data['params']) - 1 else ''}")
    lines.append("]")
    lines.append("}")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    source = Path(argv[1]) if len(argv) > 1 else DEFAULT_SOURCE
    output = Path(argv[2]) if len(argv) > 2 else DEFAULT_OUTPUT
    data, unexplained = build(source)
    text = dump(data)
    json.loads(text)  # the hand-rolled layout must still be valid JSON
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    for p in unexplained:
        print(f"note: no XPath counterpart for expression path {p}", file=sys.stderr)
    print(
        f"wrote {output}: {len(data['params'])} parameters, {len(data['resourceTypes'])} resource types, "
        f"{len(data['choiceElements'])} choice elements"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
