"""A small FHIRPath compiler for the subset used by search-parameter expressions.

Expressions are parsed once and turned into nested Python closures that walk the resource as
plain JSON (dicts, lists, strings, numbers, booleans). Every closure has the signature
``fn(items, root) -> list``: it maps an input collection to an output collection, ``root`` being
the resource the evaluation started from (``%resource``).

Supported:

* navigation (``Patient.name.given``), indexers (``entry[0]``), ``$this``, ``%resource``
  (``%rootResource``, ``%context``), string/number/boolean literals and ``{}``;
* ``|`` (union), ``=``, ``!=``, ``~``, ``!~``, ``<``, ``<=``, ``>``, ``>=``, ``and``, ``or``,
  ``xor``, ``implies``;
* ``is``/``as`` (operators and functions) and ``ofType()``;
* ``where()``, ``exists()``, ``empty()``, ``not()``, ``first()``, ``last()``, ``tail()``,
  ``count()``, ``hasValue()``, ``extension(url)``;
* ``resolve()`` only as ``resolve() is Type``: a reference is of ``Type`` when its relative,
  absolute or contained target is, or, with no literal reference, when ``Reference.type`` says
  so. A reference carrying no type information at all is kept.

Choice elements (``value[x]``) appear in JSON under type-suffixed names (``valueQuantity``).
``Observation.value as Quantity`` therefore reads ``valueQuantity``. Plain navigation to a choice
element (``Observation.effective``) reads every variant; the compiler learns which elements are
choices from a ``choices`` mapping (``"Observation.effective" -> ("DateTime", "Period", ...)``),
keyed by the element path from the resource type. Without one it falls back to looking for keys
named after the element plus a FHIR data-type name.

Anything outside this subset raises :class:`UnsupportedExpression` when compiled, never when
evaluated.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any

__all__ = [
    "FhirPathError",
    "Getter",
    "UnsupportedExpression",
    "compile_expression",
    "evaluate",
    "parse",
    "reference_is",
]

Fn = Callable[[list[Any], Any], list[Any]]
Getter = Callable[[Any], list[Any]]


class FhirPathError(ValueError):
    """The expression is not valid FHIRPath."""


class UnsupportedExpression(FhirPathError):
    """Valid FHIRPath using something this compiler does not implement."""


# --------------------------------------------------------------------------- tokens

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+|//[^\n]*|/\*.*?\*/)
  | (?P<string>'(?:[^'\\]|\\.)*')
  | (?P<date>@[0-9T:.+\-Z]+)
  | (?P<number>\d+(?:\.\d+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*|`(?:[^`\\]|\\.)*`)
  | (?P<var>%(?:[A-Za-z_][A-Za-z0-9_]*|`(?:[^`\\]|\\.)*`|'(?:[^'\\]|\\.)*'))
  | (?P<special>\$(?:this|index|total))
  | (?P<op>!=|!~|<=|>=|[=~<>|.()\[\],+\-*/&{}])
    """,
    re.VERBOSE | re.DOTALL,
)
_ESCAPES = {"'": "'", '"': '"', "`": "`", "\\": "\\", "/": "/", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_WORD_OPS = {"and", "or", "xor", "implies", "is", "as", "in", "contains", "div", "mod"}


def _unescape(body: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            if nxt == "u" and i + 6 <= len(body):
                try:
                    out.append(chr(int(body[i + 2 : i + 6], 16)))
                except ValueError as exc:
                    raise FhirPathError(f"bad escape in {body!r}") from exc
                i += 6
                continue
            out.append(_ESCAPES.get(nxt, nxt))
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _tokens(text: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise FhirPathError(f"unexpected character {text[pos]!r} at {pos} in {text!r}")
        pos = m.end()
        kind = m.lastgroup
        val = m.group()
        if kind == "ws":
            continue
        if kind == "string":
            out.append(("string", _unescape(val[1:-1])))
        elif kind == "date":
            out.append(("string", val[1:]))
        elif kind == "number":
            out.append(("number", float(val) if "." in val else int(val)))
        elif kind == "ident":
            if val.startswith("`"):
                out.append(("ident", _unescape(val[1:-1])))
            elif val in _WORD_OPS:
                out.append(("op", val))
            else:
                out.append(("ident", val))
        elif kind == "var":
            name = val[1:]
            if name[:1] in "`'":
                name = _unescape(name[1:-1])
            out.append(("var", name))
        elif kind == "special":
            out.append(("special", val))
        else:
            out.append(("op", val))
    out.append(("end", None))
    return out


# --------------------------------------------------------------------------- parser

# Binary operators from loosest to tightest binding (FHIRPath operator precedence).
_LEVELS: tuple[tuple[str, ...], ...] = (
    ("implies",),
    ("or", "xor"),
    ("and",),
    ("in", "contains"),
    ("=", "~", "!=", "!~"),
    ("<", ">", "<=", ">="),
    ("|",),
    ("is", "as"),
    ("+", "-", "&"),
    ("*", "/", "div", "mod"),
)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> tuple[str, Any]:
        return self.toks[self.i]

    def take(self) -> tuple[str, Any]:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def expect(self, value: str) -> None:
        kind, val = self.take()
        if kind != "op" or val != value:
            raise FhirPathError(f"expected {value!r}, found {val!r} in {self.text!r}")

    def parse(self) -> tuple:
        node = self.expr(0)
        if self.peek()[0] != "end":
            raise FhirPathError(f"unexpected {self.peek()[1]!r} in {self.text!r}")
        return node

    def expr(self, level: int) -> tuple:
        if level == len(_LEVELS):
            return self.unary()
        ops = _LEVELS[level]
        left = self.expr(level + 1)
        while True:
            kind, val = self.peek()
            if kind != "op" or val not in ops:
                return left
            self.take()
            if val in ("is", "as"):
                left = ("type", val, left, self.type_name())
            else:
                left = ("binop", val, left, self.expr(level + 1))

    def type_name(self) -> str:
        kind, val = self.take()
        if kind != "ident":
            raise FhirPathError(f"expected a type name, found {val!r} in {self.text!r}")
        while self.peek() == ("op", "."):
            self.take()
            kind, more = self.take()
            if kind != "ident":
                raise FhirPathError(f"expected a type name in {self.text!r}")
            val = f"{val}.{more}"
        return val

    def unary(self) -> tuple:
        kind, val = self.peek()
        if kind == "op" and val in ("+", "-"):
            self.take()
            operand = self.unary()
            return operand if val == "+" else ("neg", operand)
        return self.invocation(self.term())

    def invocation(self, node: tuple) -> tuple:
        while True:
            kind, val = self.peek()
            if kind == "op" and val == ".":
                self.take()
                kind, name = self.take()
                if kind == "op" and name in _WORD_OPS:
                    kind = "ident"  # `.as(T)`, `.is(T)`, `.contains(x)` are function calls
                if kind != "ident":
                    raise FhirPathError(f"expected a name after '.', found {name!r} in {self.text!r}")
                is_call = self.peek() == ("op", "(")
                node = ("call", node, name, self.arguments()) if is_call else ("member", node, name)
            elif kind == "op" and val == "[":
                self.take()
                index = self.expr(0)
                self.expect("]")
                node = ("index", node, index)
            else:
                return node

    def arguments(self) -> list[tuple]:
        self.expect("(")
        args: list[tuple] = []
        if self.peek() == ("op", ")"):
            self.take()
            return args
        while True:
            args.append(self.expr(0))
            kind, val = self.take()
            if (kind, val) == ("op", ")"):
                return args
            if (kind, val) != ("op", ","):
                raise FhirPathError(f"expected ',' or ')', found {val!r} in {self.text!r}")

    def term(self) -> tuple:
        kind, val = self.take()
        if kind == "string" or kind == "number":
            return ("lit", val)
        if kind == "ident":
            if val in ("true", "false") and self.peek() != ("op", "("):
                return ("lit", val == "true")
            if self.peek() == ("op", "("):
                return ("call", None, val, self.arguments())
            return ("ident", val)
        if kind == "var":
            return ("var", val)
        if kind == "special":
            if val == "$this":
                return ("this",)
            raise UnsupportedExpression(f"{val} is not supported ({self.text!r})")
        if kind == "op" and val == "(":
            node = self.expr(0)
            self.expect(")")
            return node
        if kind == "op" and val == "{":
            self.expect("}")
            return ("empty",)
        raise FhirPathError(f"unexpected {val!r} in {self.text!r}")


def parse(text: str) -> tuple:
    """Parse an expression into a small tuple-based syntax tree."""
    return _Parser(text).parse()


# --------------------------------------------------------------------------- types

# FHIR R4 data types, as they appear capitalised at the end of a choice element's JSON name.
_DATA_TYPES = frozenset(
    [
        "Base64Binary",
        "Boolean",
        "Canonical",
        "Code",
        "Date",
        "DateTime",
        "Decimal",
        "Id",
        "Instant",
        "Integer",
        "Markdown",
        "Oid",
        "PositiveInt",
        "String",
        "Time",
        "UnsignedInt",
        "Uri",
        "Url",
        "Uuid",
        "Address",
        "Age",
        "Annotation",
        "Attachment",
        "CodeableConcept",
        "Coding",
        "ContactPoint",
        "Count",
        "Distance",
        "Duration",
        "HumanName",
        "Identifier",
        "Money",
        "Period",
        "Quantity",
        "Range",
        "Ratio",
        "Reference",
        "SampledData",
        "Signature",
        "Timing",
        "ContactDetail",
        "Contributor",
        "DataRequirement",
        "Expression",
        "ParameterDefinition",
        "RelatedArtifact",
        "TriggerDefinition",
        "UsageContext",
        "Dosage",
        "Meta",
    ]
)
_STRINGISH = frozenset(
    [
        "string",
        "code",
        "id",
        "uri",
        "url",
        "canonical",
        "markdown",
        "oid",
        "uuid",
        "base64Binary",
        "xhtml",
        "date",
        "dateTime",
        "instant",
        "time",
    ]
)
_INTEGERS = frozenset(("integer", "positiveInt", "unsignedInt", "Integer"))
_DATEISH = re.compile(r"^\d{4}(-\d{2}(-\d{2}(T[\d:.]+(Z|[+-]\d{2}:\d{2})?)?)?)?$")
_TIMEISH = re.compile(r"^\d{2}:\d{2}(:\d{2}(\.\d+)?)?$")
# Keys that identify a complex type's JSON object well enough for `is` tests.
_SHAPES: dict[str, tuple[str, ...]] = {
    "Quantity": ("value", "unit", "code", "system", "comparator"),
    "Age": ("value", "unit", "code", "system"),
    "Duration": ("value", "unit", "code", "system"),
    "Distance": ("value", "unit", "code", "system"),
    "Count": ("value", "unit", "code", "system"),
    "SimpleQuantity": ("value", "unit", "code", "system"),
    "Money": ("value", "currency"),
    "Range": ("low", "high"),
    "Ratio": ("numerator", "denominator"),
    "Period": ("start", "end"),
    "CodeableConcept": ("coding", "text"),
    "Coding": ("system", "code", "display", "version"),
    "Identifier": ("value", "system", "type", "assigner"),
    "Reference": ("reference", "identifier", "display", "type"),
    "HumanName": ("family", "given", "prefix", "suffix"),
    "Address": ("line", "city", "district", "state", "postalCode", "country"),
    "ContactPoint": ("system", "value", "rank"),
    "Timing": ("event", "repeat", "code"),
    "Attachment": ("contentType", "data", "url", "title"),
    "SampledData": ("origin", "data", "dimensions"),
}
_ABSTRACT_RESOURCES = ("Resource", "DomainResource")


def _bare_type(name: str) -> str:
    for prefix in ("FHIR.", "System."):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def _conforms(value: Any, type_name: str) -> bool:
    """Best-effort `is` over untyped JSON; exact for resources and primitives."""
    t = _bare_type(type_name)
    if isinstance(value, bool):
        return t in ("boolean", "Boolean")
    if isinstance(value, int):
        return t in _INTEGERS or t in ("decimal", "Decimal")
    if isinstance(value, float):
        return t in ("decimal", "Decimal")
    if isinstance(value, str):
        if t in ("date", "dateTime", "instant", "Date", "DateTime"):
            return bool(_DATEISH.match(value))
        if t in ("time", "Time"):
            return bool(_TIMEISH.match(value))
        return t in _STRINGISH or t == "String"
    if isinstance(value, dict):
        rt = value.get("resourceType")
        if rt is not None:
            return rt == t or t in _ABSTRACT_RESOURCES
        shape = _SHAPES.get(t)
        if shape is None:
            return t[:1].isupper() and t not in ("Boolean", "Integer", "Decimal", "String", "Date")
        return any(k in value for k in shape)
    return False


_REF_RELATIVE = re.compile(r"^([A-Z][A-Za-z]+)/[A-Za-z0-9\-.]{1,64}(?:/_history/[A-Za-z0-9\-.]{1,64})?$")
_REF_ABSOLUTE = re.compile(
    r"^(?:https?|ftp)://.+?/([A-Z][A-Za-z]+)/[A-Za-z0-9\-.]{1,64}(?:/_history/[A-Za-z0-9\-.]{1,64})?$"
)


def reference_is(value: Any, type_name: str, root: Any = None) -> bool:
    """`resolve() is type_name`, decided from the reference itself.

    A relative (``Patient/1``) or absolute (``https://x/fhir/Patient/1``) reference answers from
    its type segment, a contained reference (``#p1``) from the contained resource, an
    identifier-only reference from ``Reference.type``. A reference carrying no type information at
    all (``urn:uuid:...`` without ``type``) is kept: it may well point at a ``type_name``."""
    t = _bare_type(type_name)
    if isinstance(value, dict):
        rt = value.get("resourceType")
        if rt is not None:  # already a resource
            return rt == t or t in _ABSTRACT_RESOURCES
        ref = value.get("reference")
        declared = value.get("type")
    elif isinstance(value, str):
        ref, declared = value, None
    else:
        return False
    if t in _ABSTRACT_RESOURCES:
        return True
    if isinstance(ref, str):
        m = _REF_RELATIVE.match(ref) or _REF_ABSOLUTE.match(ref)
        if m:
            return m.group(1) == t
        if ref.startswith("#") and isinstance(root, dict):
            for c in root.get("contained") or ():
                if isinstance(c, dict) and c.get("id") == ref[1:]:
                    return c.get("resourceType") == t
    if isinstance(declared, str) and declared:
        # Reference.type is a full URL for non-core types; core types are bare names.
        return declared == t or declared.rsplit("/", 1)[-1] == t
    return True


# --------------------------------------------------------------------------- evaluation helpers


def _identity(items: list[Any], root: Any) -> list[Any]:
    return items


def _empty(items: list[Any], root: Any) -> list[Any]:
    return []


def _truthy(result: list[Any]) -> bool | None:
    """Singleton evaluation of a collection in a boolean context (None = empty)."""
    if not result:
        return None
    if len(result) > 1:
        return None  # an error in FHIRPath; treated as "no answer" so evaluation never raises
    v = result[0]
    return v if isinstance(v, bool) else True


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    return a == b


def _equivalent(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return " ".join(a.casefold().split()) == " ".join(b.casefold().split())
    return _equal(a, b)


def _dedupe(items: list[Any]) -> list[Any]:
    """Union semantics: drop repeats, keeping first occurrences in order."""
    if len(items) < 2:
        return items
    out: list[Any] = []
    seen: set[tuple[type, Any]] = set()
    complex_seen: list[Any] = []
    for it in items:
        if isinstance(it, dict | list):
            if any(it is o or it == o for o in complex_seen):
                continue
            complex_seen.append(it)
        else:
            key = (type(it), it)
            if key in seen:
                continue
            seen.add(key)
        out.append(it)
    return out


def _plain_step(name: str) -> Callable[[list[Any]], list[Any]]:
    def step(items: list[Any]) -> list[Any]:
        out: list[Any] = []
        for it in items:
            if isinstance(it, dict):
                v = it.get(name)
                if v is not None:
                    if isinstance(v, list):
                        out.extend(v)
                    else:
                        out.append(v)
        return out

    return step


def _keys_step(keys: Sequence[str]) -> Callable[[list[Any]], list[Any]]:
    keys = tuple(keys)

    def step(items: list[Any]) -> list[Any]:
        out: list[Any] = []
        for it in items:
            if isinstance(it, dict):
                for k in keys:
                    v = it.get(k)
                    if v is not None:
                        if isinstance(v, list):
                            out.extend(v)
                        else:
                            out.append(v)
        return out

    return step


def _guess_choice_step(name: str) -> Callable[[list[Any]], list[Any]]:
    """Without schema knowledge: the element itself, or name+DataType variants."""
    n = len(name)

    def step(items: list[Any]) -> list[Any]:
        out: list[Any] = []
        for it in items:
            if not isinstance(it, dict):
                continue
            v = it.get(name)
            found = (
                [v] if v is not None else [val for k, val in it.items() if k.startswith(name) and k[n:] in _DATA_TYPES]
            )
            for val in found:
                if val is None:
                    continue
                if isinstance(val, list):
                    out.extend(val)
                else:
                    out.append(val)
        return out

    return step


def _chain(base: Fn | None, step: Callable[[list[Any]], list[Any]]) -> Fn:
    """Apply `step` to the output of `base` (None: to the input collection itself)."""
    if base is None:
        return lambda items, root: step(items)
    return lambda items, root: step(base(items, root))


# --------------------------------------------------------------------------- compiler


class _Compiled:
    """A compiled sub-expression: `fn` (None when it is the input collection unchanged),
    whether it is statically empty, and the element path it lands on when known."""

    __slots__ = ("empty", "fn", "path")

    def __init__(self, fn: Fn | None, path: str | None, empty: bool = False) -> None:
        self.fn = fn
        self.path = path
        self.empty = empty

    def run(self) -> Fn:
        if self.empty:
            return _empty
        return self.fn or _identity


_EMPTY = _Compiled(_empty, None, empty=True)


class _Compiler:
    def __init__(self, text: str, resource_type: str | None, choices: Mapping[str, Sequence[str]] | None):
        self.text = text
        self.resource_type = resource_type
        self.choices = choices

    def unsupported(self, what: str) -> UnsupportedExpression:
        return UnsupportedExpression(f"{what} is not supported ({self.text!r})")

    # focus: the compiled input collection's static path; top: whether we are outside any where()
    def node(self, n: tuple, path: str | None, top: bool) -> _Compiled:
        kind = n[0]
        method = getattr(self, "c_" + kind, None)
        if method is None:
            raise self.unsupported(f"'{kind}'")
        result: _Compiled = method(n, path, top)
        return result

    def c_lit(self, n: tuple, path: str | None, top: bool) -> _Compiled:
        value = [n[1]]
        return _Compiled(lambda items, root: value, None)

    def c_empty(self, n: tuple, path: str | None, top: bool) -> _Compiled:
        return _EMPTY

    def c_this(self, n: tuple, path: str | None, top: bool) -> _Compiled:
        return _Compiled(None, path)

    def c_var(self, n: tuple, path: str | None, top: bool) -> _Compiled:
        name = n[1]
        if name in ("resource", "rootResource", "context"):
            return _Compiled(lambda items, root: [root], self.resource_type)
        constants = {
            "ucum": "http://unitsofmeasure.org",
            "sct": "http://snomed.info/sct",
            "loinc": "http://loinc.org",
        }
        if name in constants:
            value = [constants[name]]
            return _Compiled(lambda items, root: value, None)
        raise self.unsupported(f"%{name}")

    def c_ident(self, n: tuple, path: str | None, top: bool) -> _Compiled:
        name = n[1]
        if not name[:1].isupper():
            return self.member(_Compiled(None, path), name)
        # A type name at the start of a path filters the focus to resources of that type.
        if name in _ABSTRACT_RESOURCES:
            return _Compiled(None, name)
        if self.resource_type is not None and top:
            return _Compiled(None, name) if name == self.resource_type else _EMPTY

        def is_type(items: list[Any], root: Any) -> list[Any]:
            return [i for i in items if isinstance(i, dict) and i.get("resourceType") == name]

        return _Compiled(is_type, name)

    def c_member(self, n: tuple, path: str | None, top: bool) -> _Compiled:
        base = self.node(n[1], path, top)
        if base.empty:
            return _EMPTY
        return self.member(base, n[2])

    def member(self, base: _Compiled, name: str) -> _Compiled:
        full = f"{base.path}.{name}" if base.path else None
        if self.choices is not None:
            variants = self.choices.get(full) if full else None
            if variants:
                step = _keys_step([name + v for v in variants])
                return _Compiled(_chain(base.fn, step), None)
            return _Compiled(_chain(base.fn, _plain_step(name)), full)
        return _Compiled(_chain(base.fn, _guess_choice_step(name)), full)

    def cast(self, operand: tuple, type_name: str, path: str | None, top: bool) -> _Compiled:
        """`x as T` / `x.ofType(T)`: on an element, read its `xT` choice variant."""
        t = _bare_type(type_name)
        if operand[0] in ("member", "ident") and not operand[-1][:1].isupper():
            name = operand[-1]
            base = self.node(operand[1], path, top) if operand[0] == "member" else _Compiled(None, path)
            if base.empty:
                return _EMPTY
            # The choice variant `nameT`, plus the element itself should it not be a choice.
            direct = _plain_step(name + t[:1].upper() + t[1:])
            plain = _plain_step(name)

            def cast_member(items: list[Any]) -> list[Any]:
                out = direct(items)
                out.extend(v for v in plain(items) if _conforms(v, t))
                return out

            return _Compiled(_chain(base.fn, cast_member), None)
        inner = self.node(operand, path, top)
        if inner.empty:
            return _EMPTY
        run = inner.run()
        return _Compiled(lambda items, root: [v for v in run(items, root) if _conforms(v, t)], None)

    def c_type(self, n: tuple, path: str | None, top: bool) -> _Compiled:
        _, op, operand, type_name = n
        if op == "as":
            return self.cast(operand, type_name, path, top)
        return self.is_test(operand, type_name, path, top)

    def is_test(self, operand: tuple, type_name: str, path: str | None, top: bool) -> _Compiled:
        if operand[0] == "call" and operand[2] == "resolve":
            if operand[3]:
                raise self.unsupported("resolve() with arguments")
            inner = self.node(operand[1], path, top) if operand[1] is not None else _Compiled(None, path)
            if inner.empty:
                return _EMPTY
            run = inner.run()

            def ref_is(items: list[Any], root: Any) -> list[Any]:
                refs = run(items, root)
                if len(refs) != 1:
                    return []
                return [reference_is(refs[0], type_name, root)]

            return _Compiled(ref_is, None)
        inner = self.node(operand, path, top)
        if inner.empty:
            return _EMPTY
        run = inner.run()

        def is_(items: list[Any], root: Any) -> list[Any]:
            vals = run(items, root)
            if len(vals) != 1:
                return []
            return [_conforms(vals[0], type_name)]

        return _Compiled(is_, None)

    def c_index(self, n: tuple, path: str | None, top: bool) -> _Compiled:
        base = self.node(n[1], path, top)
        if n[2][0] != "lit" or not isinstance(n[2][1], int) or isinstance(n[2][1], bool):
            raise self.unsupported("a non-literal indexer")
        if base.empty:
            return _EMPTY
        idx = n[2][1]
        run = base.run()
        return _Compiled(lambda items, root: run(items, root)[idx : idx + 1], base.path)

    def c_neg(self, n: tuple, path: str | None, top: bool) -> _Compiled:
        if n[1][0] == "lit" and isinstance(n[1][1], int | float):
            value = [-n[1][1]]
            return _Compiled(lambda items, root: value, None)
        raise self.unsupported("unary minus on a non-literal")

    def c_binop(self, n: tuple, path: str | None, top: bool) -> _Compiled:
        _, op, left_n, right_n = n
        left = self.node(left_n, path, top)
        right = self.node(right_n, path, top)
        if op == "|":
            if left.empty:
                return right
            if right.empty:
                return left
            lf, rf = left.run(), right.run()
            return _Compiled(lambda items, root: _dedupe(lf(items, root) + rf(items, root)), None)
        lf, rf = left.run(), right.run()
        if op in ("=", "!=", "~", "!~"):
            same = _equivalent if op in ("~", "!~") else _equal
            negate = op.startswith("!")

            def compare(items: list[Any], root: Any) -> list[Any]:
                a, b = lf(items, root), rf(items, root)
                if not a or not b:
                    return [] if op in ("=", "!=") else [negate == (bool(a) != bool(b))]
                result = len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
                return [result != negate]

            return _Compiled(compare, None)
        if op in ("<", ">", "<=", ">="):
            fn_op = {"<": operator.lt, ">": operator.gt, "<=": operator.le, ">=": operator.ge}[op]

            def order(items: list[Any], root: Any) -> list[Any]:
                a, b = lf(items, root), rf(items, root)
                if len(a) != 1 or len(b) != 1:
                    return []
                x, y = a[0], b[0]
                if isinstance(x, bool) or isinstance(y, bool):
                    return []
                numbers = isinstance(x, int | float) and isinstance(y, int | float)
                if not numbers and not (isinstance(x, str) and isinstance(y, str)):
                    return []
                return [fn_op(x, y)]

            return _Compiled(order, None)
        if op in ("and", "or", "xor", "implies"):

            def logic(items: list[Any], root: Any) -> list[Any]:
                a = _truthy(lf(items, root))
                if op == "and" and a is False:
                    return [False]
                if op == "or" and a is True:
                    return [True]
                if op == "implies" and a is False:
                    return [True]
                b = _truthy(rf(items, root))
                if op == "and":
                    if b is False:
                        return [False]
                    return [True] if a is True and b is True else []
                if op == "or":
                    if b is True:
                        return [True]
                    return [False] if a is False and b is False else []
                if op == "xor":
                    return [] if a is None or b is None else [a != b]
                # implies, a is True or empty
                if b is True:
                    return [True]
                return [False] if a is True and b is False else []

            return _Compiled(logic, None)
        raise self.unsupported(f"operator '{op}'")

    def c_call(self, n: tuple, path: str | None, top: bool) -> _Compiled:
        _, base_n, name, args = n
        if name in ("as", "ofType", "is"):
            if len(args) != 1 or args[0][0] != "ident":
                raise self.unsupported(f"{name}() without a type name")
            operand = base_n if base_n is not None else ("this",)
            if name == "is":
                return self.is_test(operand, args[0][1], path, top)
            return self.cast(operand, args[0][1], path, top)
        if name == "resolve":
            raise self.unsupported("resolve() other than in 'resolve() is Type'")
        base = self.node(base_n, path, top) if base_n is not None else _Compiled(None, path)
        method = getattr(self, "f_" + name, None)
        if method is None:
            raise self.unsupported(f"function {name}()")
        if base.empty and name not in ("exists", "empty", "count", "not"):
            return _EMPTY
        result: _Compiled = method(base, args)
        return result

    def no_args(self, name: str, args: list[tuple]) -> None:
        if args:
            raise self.unsupported(f"{name}() with arguments")

    def f_where(self, base: _Compiled, args: list[tuple]) -> _Compiled:
        if len(args) != 1:
            raise self.unsupported("where() without exactly one criterion")
        crit = self.node(args[0], base.path, False)
        if crit.empty:
            return _EMPTY
        run, test = base.run(), crit.run()

        def where(items: list[Any], root: Any) -> list[Any]:
            return [it for it in run(items, root) if _truthy(test([it], root)) is True]

        return _Compiled(where, base.path)

    def f_exists(self, base: _Compiled, args: list[tuple]) -> _Compiled:
        if args:
            base = self.f_where(base, args)
        if base.empty:
            return _Compiled(lambda items, root: [False], None)
        run = base.run()
        return _Compiled(lambda items, root: [bool(run(items, root))], None)

    def f_empty(self, base: _Compiled, args: list[tuple]) -> _Compiled:
        self.no_args("empty", args)
        run = base.run()
        return _Compiled(lambda items, root: [not run(items, root)], None)

    def f_count(self, base: _Compiled, args: list[tuple]) -> _Compiled:
        self.no_args("count", args)
        run = base.run()
        return _Compiled(lambda items, root: [len(run(items, root))], None)

    def f_not(self, base: _Compiled, args: list[tuple]) -> _Compiled:
        self.no_args("not", args)
        run = base.run()

        def not_(items: list[Any], root: Any) -> list[Any]:
            v = _truthy(run(items, root))
            return [] if v is None else [not v]

        return _Compiled(not_, None)

    def f_first(self, base: _Compiled, args: list[tuple]) -> _Compiled:
        self.no_args("first", args)
        run = base.run()
        return _Compiled(lambda items, root: run(items, root)[:1], base.path)

    def f_last(self, base: _Compiled, args: list[tuple]) -> _Compiled:
        self.no_args("last", args)
        run = base.run()
        return _Compiled(lambda items, root: run(items, root)[-1:], base.path)

    def f_tail(self, base: _Compiled, args: list[tuple]) -> _Compiled:
        self.no_args("tail", args)
        run = base.run()
        return _Compiled(lambda items, root: run(items, root)[1:], base.path)

    def f_hasValue(self, base: _Compiled, args: list[tuple]) -> _Compiled:
        self.no_args("hasValue", args)
        run = base.run()

        def has_value(items: list[Any], root: Any) -> list[Any]:
            vals = run(items, root)
            return [len(vals) == 1 and not isinstance(vals[0], dict | list)]

        return _Compiled(has_value, None)

    def f_extension(self, base: _Compiled, args: list[tuple]) -> _Compiled:
        if len(args) != 1 or args[0][0] != "lit" or not isinstance(args[0][1], str):
            raise self.unsupported("extension() without a literal url")
        url = args[0][1]
        run = base.run()

        def extension(items: list[Any], root: Any) -> list[Any]:
            out: list[Any] = []
            for it in run(items, root):
                if isinstance(it, dict):
                    for ext in it.get("extension") or ():
                        if isinstance(ext, dict) and ext.get("url") == url:
                            out.append(ext)
            return out

        return _Compiled(extension, "Extension")


def compile_expression(
    expression: str,
    *,
    resource_type: str | None = None,
    choices: Mapping[str, Sequence[str]] | None = None,
) -> Getter:
    """Compile `expression` into ``getter(resource) -> list``.

    With `resource_type`, branches rooted at another resource type (``Condition.code`` in a
    multi-resource expression compiled for Observation) are dropped at compile time. `choices`
    maps choice-element paths to their type suffixes (see the module docstring). A getter
    compiled for a resource type trusts that it is only applied to resources of that type."""
    tree = parse(expression)
    compiled = _Compiler(expression, resource_type, choices).node(tree, None, True)
    if compiled.empty:
        return lambda resource: []
    fn = compiled.run()
    return lambda resource: fn([resource], resource)


@lru_cache(maxsize=512)
def _cached(expression: str) -> Getter:
    return compile_expression(expression)


def evaluate(expression: str, resource: Any) -> list[Any]:
    """Evaluate an expression against a resource (compiled once per distinct expression)."""
    return _cached(expression)(resource)
