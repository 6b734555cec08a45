"""The FHIR R4 (4.0.1) structure model: resource types, datatypes and their elements.

The data comes from ``kjerne/data/fhir-r4-model.json``, which ``tools/build_fhir_model.py``
generates from the specification's StructureDefinitions. It is read once and cached.

Structures are named by type (``Observation``, ``Quantity``) or, for backbone elements, by path
(``Observation.component``). Elements are keyed by their name in the definition, so a choice
element keeps its ``[x]`` (``value[x]``); :func:`element` also resolves JSON names such as
``valueQuantity``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import orjson

MODEL_PATH = Path(__file__).resolve().parents[1] / "data" / "fhir-r4-model.json"

#: The base type of resources-in-elements (Bundle.entry.resource, contained, ...).
RESOURCE = "Resource"


@dataclass(frozen=True, slots=True)
class ElementDef:
    path: str  # "Observation.value[x]", "Observation.component.code"
    name: str  # "value[x]", "code"
    min: int
    max: int | None  # None when unbounded ("*")
    types: tuple[str, ...]  # type codes; for a backbone element the structure it opens
    structure: str | None = None  # backbone or contentReference target, e.g. "Questionnaire.item"

    @property
    def is_choice(self) -> bool:
        return self.name.endswith("[x]")

    @property
    def repeats(self) -> bool:
        return self.max is None or self.max > 1


@dataclass(frozen=True, slots=True)
class Model:
    version: str
    primitives: dict[str, str | None]  # primitive type -> the regex the spec gives (None for xhtml)
    resources: frozenset[str]
    datatypes: frozenset[str]
    structures: dict[str, dict[str, ElementDef]]


def _element(structure: str, name: str, raw: list[Any], structures: dict[str, Any], in_datatype: bool) -> ElementDef:
    lo, hi, spec = raw
    maximum = None if hi == "*" else int(hi)
    if isinstance(spec, list):
        return ElementDef(f"{structure}.{name}", name, lo, maximum, tuple(spec))
    if spec in structures and "." in spec:  # backbone element or contentReference
        base = "Element" if in_datatype else "BackboneElement"
        return ElementDef(f"{structure}.{name}", name, lo, maximum, (base,), spec)
    return ElementDef(f"{structure}.{name}", name, lo, maximum, (spec,))


@cache
def load() -> Model:
    raw = orjson.loads(MODEL_PATH.read_bytes())
    structures_raw: dict[str, dict[str, list[Any]]] = raw["structures"]
    datatypes = frozenset(raw["datatypes"])
    structures = {
        sname: {
            ename: _element(sname, ename, spec, structures_raw, sname.partition(".")[0] in datatypes)
            for ename, spec in elements.items()
        }
        for sname, elements in structures_raw.items()
    }
    return Model(
        version=raw["fhirVersion"],
        primitives=dict(raw["primitives"]),
        resources=frozenset(raw["resources"]),
        datatypes=datatypes,
        structures=structures,
    )


def fhir_version() -> str:
    return load().version


def resource_types() -> frozenset[str]:
    """Every concrete resource type of R4 (146 of them)."""
    return load().resources


def is_resource_type(name: str) -> bool:
    return name in load().resources


def datatypes() -> frozenset[str]:
    """Complex datatypes (Quantity, Reference, ...), including Element and BackboneElement."""
    return load().datatypes


def primitive_types() -> dict[str, str | None]:
    """Primitive type -> the value regex the specification gives for it."""
    return load().primitives


def is_primitive(type_code: str) -> bool:
    return type_code in load().primitives


def structure_names() -> list[str]:
    return sorted(load().structures)


def elements(structure: str) -> dict[str, ElementDef] | None:
    """The elements of a type or backbone structure (``"Observation"``, ``"Observation.component"``)."""
    return load().structures.get(structure)


def _child(structure: str, name: str) -> tuple[ElementDef, str | None] | None:
    """Element ``name`` (definition or JSON name) of a structure, with the type chosen by a JSON
    choice name (``valueQuantity`` -> ``Quantity``)."""
    defs = load().structures.get(structure)
    if defs is None:
        return None
    found = defs.get(name)
    if found is not None:
        return found, None
    for ename, el in defs.items():
        if el.is_choice:
            stem = ename[:-3]
            if name.startswith(stem) and len(name) > len(stem):
                suffix = name[len(stem) :]
                for t in el.types:
                    if t[0].upper() + t[1:] == suffix:
                        return el, t
    return None


def element(path: str) -> ElementDef | None:
    """Resolve a dotted element path that starts at a type, through backbone elements,
    contentReferences and complex datatypes: ``Observation.component.valueQuantity.value``."""
    head, _, rest = path.partition(".")
    if not rest:
        return None
    structure: str | None = head
    found: ElementDef | None = None
    for part in rest.split("."):
        if structure is None:
            return None
        hit = _child(structure, part)
        if hit is None:
            return None
        found, chosen = hit
        if found.structure is not None:
            structure = found.structure
        else:
            code = chosen or (found.types[0] if len(found.types) == 1 else None)
            structure = code if code is not None and code in load().structures else None
    return found
