"""Structural validation of FHIR R4 JSON resources, run on every write.

``validate(resource)`` walks a parsed JSON resource against the R4 structure model
(:mod:`kjerne.fhir.model`) and returns the problems as :class:`~kjerne.fhir.outcome.Issue`, each
located by a FHIRPath expression with indexes (``Observation.component[1].valueQuantity.value``).
An empty list means the resource is structurally valid.

What is checked, with the IssueType code reported:

* ``resourceType``: missing (``required``), not a string (``structure``), not a concrete R4
  resource type (``not-supported``); contained resources, ``Bundle.entry.resource``,
  ``Parameters.parameter.resource`` and every other Resource-typed element are validated as
  resources in their own right.
* Unknown elements, ``_x`` siblings of anything but a primitive element, JSON nulls outside
  primitive arrays, an array where the element repeats at most once or a single value where it
  repeats, more items than the maximum, two types of one choice element, a suffix that is not one
  of its types, empty objects and empty arrays, wrong JSON types (``structure``).
* Missing elements whose minimum cardinality is 1 or more (``required``). A primitive counts as
  present when only its ``_x`` sibling (extensions) is given.
* Primitive values: the regex the specification gives for each primitive type, calendar dates
  that exist (no 2023-02-30), the ranges of integer, positiveInt and unsignedInt, finite decimals,
  strings that are not empty or blank and hold no control characters, and a Narrative div
  (``value``).
* ``Reference.reference``: ``Type/id`` or ``Type/id/_history/vid`` with a known resource type, an
  absolute http(s) URL, ``urn:uuid:``, ``urn:oid:``, or ``#id`` / ``#`` for a contained resource;
  inside transaction and batch Bundles also conditional references (``Patient?identifier=...``).
  A Reference must carry a reference, identifier, display or extension (``value`` / ``required``).
* Norwegian identifiers in any ``Identifier``: check digits and formats of the national
  systems (:func:`kjerne.fhir.identifiers.identifier_problem`), at ``....identifier[n].value``.

Invariants (FHIRPath constraints), terminology bindings and profiles are not evaluated.
At most ``MAX_ISSUES`` issues are collected.

The model is compiled once into one lookup dict per structure, keyed by JSON property name
(choice elements expanded to ``valueQuantity``, ``_birthDate`` siblings included), so the walk is a
dict lookup and a type test per property.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from decimal import Decimal
from functools import cache
from typing import Any

import orjson

from kjerne.fhir import model
from kjerne.fhir.identifiers import identifier_problem
from kjerne.fhir.outcome import Issue

MAX_ISSUES = 100

# issue codes
STRUCTURE = "structure"
REQUIRED = "required"
VALUE = "value"
NOT_SUPPORTED = "not-supported"

# property kinds
_PRIMITIVE = 0
_COMPLEX = 1
_RESOURCE = 2
_PRIMITIVE_EXT = 3  # the "_name" sibling of a primitive element

# structures with extra checks after the walk
_SPECIAL_NONE = 0
_SPECIAL_REFERENCE = 1
_SPECIAL_IDENTIFIER = 2

_INT32_MIN = -(2**31)
_INT32_MAX = 2**31 - 1
_STRING_MAX = 1024 * 1024  # maxLength of string in the R4 definitions

Problem = tuple[str, str]  # (issue code, diagnostics)
Check = Callable[[Any], "Problem | None"]


class _Full(Exception):
    """Raised to stop the walk once MAX_ISSUES issues are collected."""


# --- primitive checks ----------------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_DAYS = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _not_a(kind: str, value: Any) -> Problem:
    return STRUCTURE, f"Expected {kind}, got JSON {_json_type(value)}"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float | Decimal):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _empty_or_blank(value: str) -> Problem:
    return VALUE, "Empty or blank string values are not allowed" if value else "Empty strings are not allowed"


def _text_problem(value: str) -> Problem | None:
    """Rules shared by all string-based primitives: not empty, not blank, no control characters."""
    if not value or value.isspace():
        return _empty_or_blank(value)
    if _CONTROL.search(value) is not None:
        return VALUE, "Control characters other than tab, CR and LF are not allowed in strings"
    return None


def _calendar_problem(value: str) -> Problem | None:
    """The regexes accept day 31 in any month; the date must also exist (2023-02-29 does not).
    ``value`` has matched a date regex and has a day part."""
    day = int(value[8:10])
    if day > 28:
        year, month = int(value[0:4]), int(value[5:7])
        leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
        if day > (_DAYS[month] if month != 2 else 28 + leap):
            return VALUE, f"'{value[:10]}' is not a calendar date"
    return None


# Types whose spec regex admits only printable ASCII without spaces: a match already rules out
# empty, blank and control characters, so the shared text rules need not run first.
_PRINTABLE_ONLY = frozenset({"id", "date", "dateTime", "instant", "time", "oid", "uuid"})


def _regex_check(type_code: str, regex: str) -> Check:
    # ASCII semantics for \s and \S, as in the regex dialects the specification was written for
    fullmatch = re.compile(regex, re.ASCII).fullmatch
    calendar = type_code in ("date", "dateTime", "instant")
    text_rules = type_code not in _PRINTABLE_ONLY

    def check(value: Any) -> Problem | None:
        if type(value) is not str:
            return _not_a(f"a JSON string ({type_code})", value)
        if text_rules:
            problem = _text_problem(value)
            if problem is not None:
                return problem
        if fullmatch(value) is None:
            return _text_problem(value) or (VALUE, f"'{_clip(value)}' is not a valid {type_code}")
        if calendar and len(value) >= 10:
            return _calendar_problem(value)
        return None

    return check


def _string_check(type_code: str) -> Check:
    def check(value: Any) -> Problem | None:
        if type(value) is not str:
            return _not_a(f"a JSON string ({type_code})", value)
        if len(value) > _STRING_MAX:
            return VALUE, f"{type_code} longer than {_STRING_MAX} characters"
        return _text_problem(value)

    return check


def _integer_check(type_code: str, lowest: int) -> Check:
    def check(value: Any) -> Problem | None:
        if type(value) is not int:
            return _not_a(f"a JSON number without fraction ({type_code})", value)
        if not lowest <= value <= _INT32_MAX:
            return VALUE, f"{value} is outside the range of {type_code} ({lowest}..{_INT32_MAX})"
        return None

    return check


def _check_decimal(value: Any) -> Problem | None:
    """JSON numbers arrive as int or float, or as Decimal from a parser that keeps precision."""
    kind = type(value)
    if kind is int:
        return None
    if kind is float:
        return None if math.isfinite(value) else (VALUE, "decimal must be a finite number")
    if kind is Decimal:
        return None if value.is_finite() else (VALUE, "decimal must be a finite number")
    return _not_a("a JSON number (decimal)", value)


def _check_boolean(value: Any) -> Problem | None:
    if type(value) is not bool:
        return _not_a("true or false (boolean)", value)
    return None


# base64Binary: the spec's (\s*([0-9a-zA-Z\+/=]){4}\s*)+ matches the same strings as the pattern
# below, which cannot backtrack exponentially over line-wrapped payloads.
_BASE64 = r"\s*(?:[0-9a-zA-Z+/=]{4}\s*)+"


def _check_xhtml(value: Any) -> Problem | None:
    if type(value) is not str:
        return _not_a("a JSON string (xhtml)", value)
    stripped = value.strip()
    if not stripped:
        return _empty_or_blank(value)
    if not stripped.startswith("<div") or not stripped.endswith(">"):
        return VALUE, "Narrative must be an XHTML <div> element"
    return None


def _primitive_checks(regexes: dict[str, str | None]) -> dict[str, Check]:
    checks: dict[str, Check] = {
        "boolean": _check_boolean,
        "integer": _integer_check("integer", _INT32_MIN),
        "positiveInt": _integer_check("positiveInt", 1),
        "unsignedInt": _integer_check("unsignedInt", 0),
        "decimal": _check_decimal,
        "string": _string_check("string"),
        "markdown": _string_check("markdown"),
        "xhtml": _check_xhtml,
        "base64Binary": _regex_check("base64Binary", _BASE64),
    }
    for type_code, regex in regexes.items():
        if type_code not in checks:
            if regex is None:
                raise ValueError(f"no regex for primitive {type_code}")
            checks[type_code] = _regex_check(type_code, regex)
    return checks


def _clip(value: str, limit: int = 80) -> str:
    return value if len(value) <= limit else value[: limit - 3] + "..."


# --- compiled model ------------------------------------------------------------------------------


class _Prop:
    __slots__ = ("array", "check", "choice", "kind", "label", "max", "name", "struct", "type_code")

    def __init__(self, name: str, kind: int, array: bool, maximum: int | None, type_code: str) -> None:
        self.name = name  # JSON property name, e.g. "valueQuantity", "_birthDate"
        self.label = name[1:] if kind == _PRIMITIVE_EXT else name  # name used in expressions
        self.kind = kind
        self.array = array
        self.max = maximum if array else None
        self.type_code = type_code
        self.check: Check | None = None
        self.struct: _Struct | None = None
        self.choice: str | None = None  # choice group ("value") for expanded value[x] names


class _Struct:
    __slots__ = ("is_resource", "memo", "name", "props", "required", "special")

    def __init__(self, name: str, is_resource: bool) -> None:
        self.name = name
        self.is_resource = is_resource
        self.memo = name in _MEMO_TYPES
        self.props: dict[str, _Prop] = {}
        # (element name, its name in expressions, JSON names any of which satisfies it, minimum)
        self.required: tuple[tuple[str, str, tuple[str, ...], int], ...] = ()
        self.special = _SPECIAL_NONE


class _Compiled:
    __slots__ = ("clean", "resources", "structs")

    def __init__(self, structs: dict[str, _Struct], resources: dict[str, _Struct]) -> None:
        self.structs = structs
        self.resources = resources
        self.clean: set[tuple[str, bool, bytes]] = set()  # see _walk_memo


# Small datatypes that recur verbatim from one resource to the next (the same codes, units, senders
# and subjects): a value of one of them found valid once is not walked again.
_MEMO_TYPES = frozenset({"Coding", "CodeableConcept", "Quantity", "Reference", "Identifier", "Period"})
_MEMO_MAX = 50_000


def _has_value_extensions(struct_name: str, element_name: str, type_code: str, is_resource: bool) -> bool:
    """Whether a primitive element may carry a ``_name`` sibling. Element.id and Extension.url are
    XML attributes in the specification and take no extensions; neither does xhtml."""
    if type_code == "xhtml":
        return False
    if element_name == "id" and not is_resource:
        return False
    return not (struct_name == "Extension" and element_name == "url")


@cache
def _compiled() -> _Compiled:
    m = model.load()
    checks = _primitive_checks(m.primitives)
    structs = {name: _Struct(name, name in m.resources) for name in m.structures}

    def add(
        struct: _Struct,
        name: str,
        type_code: str,
        array: bool,
        maximum: int | None,
        target: str | None,
        choice: str | None,
    ) -> list[str]:
        """Add JSON property ``name`` (and its ``_`` sibling); return the names that satisfy it."""
        if target is not None:
            prop = _Prop(name, _COMPLEX, array, maximum, type_code)
            prop.struct = structs[target]
        elif type_code in checks:
            prop = _Prop(name, _PRIMITIVE, array, maximum, type_code)
            prop.check = checks[type_code]
        elif type_code == model.RESOURCE:
            prop = _Prop(name, _RESOURCE, array, maximum, type_code)
        else:
            prop = _Prop(name, _COMPLEX, array, maximum, type_code)
            prop.struct = structs[type_code]
        prop.choice = choice
        struct.props[name] = prop
        names = [name]
        if prop.kind == _PRIMITIVE and _has_value_extensions(struct.name, name, type_code, struct.is_resource):
            ext = _Prop("_" + name, _PRIMITIVE_EXT, array, maximum, type_code)
            ext.struct = structs["Element"]
            ext.choice = choice
            struct.props[ext.name] = ext
            names.append(ext.name)
        return names

    for sname, defs in m.structures.items():
        struct = structs[sname]
        required = []
        for ename, el in defs.items():
            array = el.max is None or el.max > 1
            if el.is_choice:
                stem = ename[:-3]
                names = []
                for t in el.types:
                    names += add(struct, stem + t[0].upper() + t[1:], t, array, el.max, None, stem)
            else:
                stem = ename
                names = add(struct, ename, el.types[0], array, el.max, el.structure, None)
            if el.min > 0:
                required.append((ename, stem, tuple(names), el.min))
        struct.required = tuple(required)
        if sname == "Reference":
            struct.special = _SPECIAL_REFERENCE
        elif sname == "Identifier":
            struct.special = _SPECIAL_IDENTIFIER
    return _Compiled(structs, {name: structs[name] for name in m.resources})


# --- references ----------------------------------------------------------------------------------

_ID = r"[A-Za-z0-9\-.]{1,64}"
_RELATIVE = re.compile(rf"([A-Z][A-Za-z]+)/{_ID}(?:/_history/{_ID})?", re.ASCII)
_CONDITIONAL = re.compile(r"([A-Z][A-Za-z]+)\?\S+", re.ASCII)
_ABSOLUTE = re.compile(r"https?://[^\s/?#]+\S*", re.ASCII)
_LOCAL = re.compile(rf"#(?:{_ID})?", re.ASCII)
_UUID = re.compile(r"urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.ASCII)
_OID = re.compile(r"urn:oid:[0-2](?:\.(?:0|[1-9][0-9]*))+", re.ASCII)


def _reference_problem(ref: str, conditional_ok: bool, resources: dict[str, _Struct]) -> str | None:
    first = ref[:1]
    if first == "#":
        return None if _LOCAL.fullmatch(ref) else f"'{_clip(ref)}' is not a valid local reference (#id)"
    if ref.startswith("urn:"):
        if ref.startswith("urn:uuid:"):
            return None if _UUID.fullmatch(ref) else f"'{_clip(ref)}' is not a valid urn:uuid reference"
        if ref.startswith("urn:oid:"):
            return None if _OID.fullmatch(ref) else f"'{_clip(ref)}' is not a valid urn:oid reference"
        return f"'{_clip(ref)}': only urn:uuid: and urn:oid: URNs can be references"
    if ref.startswith(("http://", "https://")):
        return None if _ABSOLUTE.fullmatch(ref) else f"'{_clip(ref)}' is not a valid absolute reference"
    match = _RELATIVE.fullmatch(ref)
    if match is None and conditional_ok:
        match = _CONDITIONAL.fullmatch(ref)
    if match is None:
        return (
            f"'{_clip(ref)}' is not a valid reference (Type/id, Type/id/_history/vid, "
            "absolute http(s) URL, urn:uuid:, urn:oid: or #id)"
        )
    if match.group(1) not in resources:
        return f"'{match.group(1)}' in reference '{_clip(ref)}' is not a known resource type"
    return None


# --- the walk ------------------------------------------------------------------------------------


class _Run:
    __slots__ = ("compiled", "conditional_ok", "issues")

    def __init__(self, compiled: _Compiled) -> None:
        self.compiled = compiled
        self.issues: list[Issue] = []
        self.conditional_ok = False

    def add(self, code: str, diagnostics: str, expression: str) -> None:
        self.issues.append(Issue(code, diagnostics, expression))
        if len(self.issues) >= MAX_ISSUES:
            raise _Full


def _resource(run: _Run, obj: Any, path: str) -> None:
    """Validate a resource found at ``path`` ("" for the root)."""
    where = f"{path}.resourceType" if path else "resourceType"
    if type(obj) is not dict:
        run.add(STRUCTURE, f"A resource must be a JSON object, got {_json_type(obj)}", path or "Resource")
        return
    rtype = obj.get("resourceType")
    if rtype is None:
        run.add(REQUIRED, "Missing resourceType", where)
        return
    if type(rtype) is not str:
        run.add(STRUCTURE, f"resourceType must be a string, got {_json_type(rtype)}", where)
        return
    struct = run.compiled.resources.get(rtype)
    if struct is None:
        run.add(NOT_SUPPORTED, f"'{_clip(rtype)}' is not an R4 resource type", where)
        return
    if rtype == "Bundle":
        saved = run.conditional_ok
        run.conditional_ok = obj.get("type") in ("transaction", "batch")
        try:
            _walk(run, obj, struct, path or rtype)
        finally:
            run.conditional_ok = saved
    else:
        _walk(run, obj, struct, path or rtype)


def _walk_memo(run: _Run, obj: dict[str, Any], struct: _Struct, path: str) -> None:
    """`_walk` for a value that may have been found valid before. Whether a value of these types is valid
    depends on nothing but the value and whether conditional references are allowed."""
    try:
        key = (struct.name, run.conditional_ok, orjson.dumps(obj))
    except TypeError:  # a Decimal from a precision-keeping parser: not worth remembering
        _walk(run, obj, struct, path)
        return
    clean = run.compiled.clean
    if key in clean:
        return
    before = len(run.issues)
    _walk(run, obj, struct, path)
    if len(run.issues) == before:
        if len(clean) >= _MEMO_MAX:
            clean.clear()
        clean.add(key)


def _walk(run: _Run, obj: dict[str, Any], struct: _Struct, path: str) -> None:
    props = struct.props
    chosen: dict[str, str] | None = None
    for key, value in obj.items():
        prop = props.get(key)
        if prop is None:
            if key != "resourceType" or not struct.is_resource:
                run.add(STRUCTURE, _unknown(struct, key), f"{path}.{key}")
            continue
        if prop.choice is not None:
            if chosen is None:
                chosen = {}
            other = chosen.setdefault(prop.choice, prop.type_code)
            if other != prop.type_code:
                run.add(
                    STRUCTURE,
                    f"Only one type of {prop.choice}[x] may be given ({other} and {prop.type_code})",
                    f"{path}.{prop.label}",
                )
        if value is None:
            run.add(STRUCTURE, "null is not allowed here", f"{path}.{prop.label}")
            continue
        kind = prop.kind
        if prop.array:
            if type(value) is not list:
                run.add(STRUCTURE, f"'{prop.label}' repeats and must be a JSON array", f"{path}.{prop.label}")
                continue
            if not value:
                run.add(STRUCTURE, "Empty arrays are not allowed", f"{path}.{prop.label}")
                continue
            if prop.max is not None and len(value) > prop.max:
                run.add(
                    STRUCTURE, f"At most {prop.max} '{prop.label}' allowed, got {len(value)}", f"{path}.{prop.label}"
                )
            if kind == _PRIMITIVE:
                check = prop.check
                for i, item in enumerate(value):
                    if item is None:
                        _null_item(run, obj, "_" + key, i, f"{path}.{key}[{i}]")
                        continue
                    problem = check(item)  # type: ignore[misc]
                    if problem is not None:
                        run.add(problem[0], problem[1], f"{path}.{key}[{i}]")
            elif kind == _COMPLEX:
                sub = prop.struct
                walk = _walk_memo if sub.memo else _walk  # type: ignore[union-attr]
                for i, item in enumerate(value):
                    if type(item) is dict and item:
                        walk(run, item, sub, f"{path}.{key}[{i}]")  # type: ignore[arg-type]
                    else:
                        _not_object(run, item, f"{path}.{key}[{i}]")
            elif kind == _RESOURCE:
                for i, item in enumerate(value):
                    _resource(run, item, f"{path}.{key}[{i}]")
            else:
                _primitive_ext_array(run, obj, prop, value, path)
        else:
            if type(value) is list:
                run.add(
                    STRUCTURE, f"'{prop.label}' does not repeat and must not be a JSON array", f"{path}.{prop.label}"
                )
                continue
            if kind == _PRIMITIVE:
                problem = prop.check(value)  # type: ignore[misc]
                if problem is not None:
                    run.add(problem[0], problem[1], f"{path}.{key}")
            elif kind == _COMPLEX:
                if type(value) is dict and value:
                    sub = prop.struct
                    walk = _walk_memo if sub.memo else _walk  # type: ignore[union-attr]
                    walk(run, value, sub, f"{path}.{key}")  # type: ignore[arg-type]
                else:
                    _not_object(run, value, f"{path}.{key}")
            elif kind == _RESOURCE:
                _resource(run, value, f"{path}.{key}")
            elif type(value) is dict and value:
                _walk(run, value, prop.struct, f"{path}.{prop.label}")  # type: ignore[arg-type]
            else:
                _not_object(run, value, f"{path}.{prop.label}")
    if struct.required:
        for label, stem, names, minimum in struct.required:
            present = [obj[n] for n in names if n in obj]
            if not present:
                run.add(REQUIRED, f"Missing required element '{label}'", f"{path}.{stem}")
            elif minimum > 1 and max(len(v) if type(v) is list else 1 for v in present) < minimum:
                run.add(REQUIRED, f"At least {minimum} '{label}' required", f"{path}.{stem}")
    if struct.special:
        if struct.special == _SPECIAL_REFERENCE:
            _check_reference(run, obj, path)
        else:
            _check_identifier(run, obj, path)


def _unknown(struct: _Struct, key: str) -> str:
    if key.startswith("_") and key[1:] in struct.props:
        return f"'{key}' is not allowed: '{key[1:]}' is not a primitive element that takes extensions"
    return f"Unknown element '{key}' in {struct.name}"


def _not_object(run: _Run, value: Any, where: str) -> None:
    if type(value) is dict:
        run.add(STRUCTURE, "Empty objects are not allowed", where)
    else:
        run.add(STRUCTURE, f"Expected a JSON object, got {_json_type(value)}", where)


def _null_item(run: _Run, obj: dict[str, Any], sibling: str, i: int, where: str) -> None:
    """A null in a primitive array is only a placeholder for an item that has extensions."""
    other = obj.get(sibling)
    if type(other) is list and i < len(other) and other[i] is not None:
        return
    run.add(STRUCTURE, "null is only allowed in a primitive array whose _ sibling has this item", where)


def _primitive_ext_array(run: _Run, obj: dict[str, Any], prop: _Prop, value: list[Any], path: str) -> None:
    values = obj.get(prop.label)
    if type(values) is list and len(values) != len(value):
        run.add(STRUCTURE, f"'{prop.name}' must have as many items as '{prop.label}'", f"{path}.{prop.label}")
    sub = prop.struct
    for i, item in enumerate(value):
        where = f"{path}.{prop.label}[{i}]"
        if item is None:
            if type(values) is not list:  # otherwise reported with the value array
                _null_item(run, obj, prop.label, i, where)
        elif type(item) is dict and item:
            _walk(run, item, sub, where)  # type: ignore[arg-type]
        else:
            _not_object(run, item, where)


def _check_reference(run: _Run, obj: dict[str, Any], path: str) -> None:
    ref = obj.get("reference")
    if type(ref) is str and ref and not ref.isspace():
        problem = _reference_problem(ref, run.conditional_ok, run.compiled.resources)
        if problem is not None:
            run.add(VALUE, problem, f"{path}.reference")
    elif not any(k in obj for k in ("reference", "_reference", "identifier", "display", "_display", "extension")):
        run.add(REQUIRED, "A Reference needs a reference, identifier, display or extension", path)


def _check_identifier(run: _Run, obj: dict[str, Any], path: str) -> None:
    system, value = obj.get("system"), obj.get("value")
    if type(system) is str and type(value) is str:
        problem = identifier_problem(system, value)
        if problem is not None:
            run.add(VALUE, problem, f"{path}.value")


# --- entry point ---------------------------------------------------------------------------------


def validate(resource: dict[str, Any]) -> list[Issue]:
    """Structural problems of a FHIR R4 JSON resource (parsed), or [] when there are none."""
    run = _Run(_compiled())
    try:
        _resource(run, resource, "")
    except _Full:
        pass
    except RecursionError:
        run.issues.append(Issue(STRUCTURE, "Resource is nested too deeply", "Resource"))
    return run.issues


def warm_up() -> None:
    """Load and compile the model now rather than on the first validation."""
    _compiled()
