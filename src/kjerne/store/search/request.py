"""A search request, parsed from query-string or form pairs and checked against the registry."""

from __future__ import annotations

from dataclasses import dataclass, field

from kjerne.fhir.outcome import FhirError, Issue
from kjerne.fhir.searchparams import SearchParam, registry

# Result-control and framework parameters, handled by the builder rather than as filters.
CONTROL = {
    "_sort",
    "_count",
    "_total",
    "_summary",
    "_elements",
    "_include",
    "_revinclude",
    "_cursor",
    "_format",
    "_pretty",
    "_contained",
}
MODIFIERS = {
    "token": {"not", "text", "missing", "of-type"},
    "string": {"exact", "contains", "missing"},
    "date": {"missing"},
    "reference": {"identifier", "missing"},
    "quantity": {"missing"},
    "number": {"missing"},
    "uri": {"below", "above", "missing"},
}
DATE_PREFIXES = ("eq", "ne", "lt", "gt", "le", "ge", "sa", "eb", "ap")
MAX_COUNT = 1000
DEFAULT_COUNT = 50


@dataclass(frozen=True, slots=True)
class Chain:
    target_type: str
    param: SearchParam
    modifier: str | None


@dataclass(frozen=True, slots=True)
class Clause:
    param: SearchParam
    modifier: str | None
    values: tuple[str, ...]  # OR-ed
    chain: Chain | None = None


@dataclass(frozen=True, slots=True)
class IncludeSpec:
    source_type: str
    param: str  # search-param code, or * for all reference params
    target_type: str | None
    iterate: bool


@dataclass(slots=True)
class SearchRequest:
    res_type: str
    clauses: list[Clause] = field(default_factory=list)
    sort: list[tuple[SearchParam, bool]] = field(default_factory=list)  # (param, descending)
    count: int = DEFAULT_COUNT
    total: str = "estimate"  # estimate: counted on the first page only; accurate: on every page
    summary: str | None = None
    elements: tuple[str, ...] = ()
    includes: list[IncludeSpec] = field(default_factory=list)
    revincludes: list[IncludeSpec] = field(default_factory=list)
    cursor: str | None = None
    pairs: list[tuple[str, str]] = field(default_factory=list)  # the full search, scoping included
    link_pairs: list[tuple[str, str]] | None = None  # what the client sent, for page links
    ignored: list[str] = field(default_factory=list)  # unknown parameters dropped under lenient handling


def split_values(raw: str) -> tuple[str, ...]:
    """Split on unescaped commas; `\\,` stays a comma inside a value."""
    out: list[str] = []
    cur: list[str] = []
    i = 0
    while i < len(raw):
        ch = raw[i]
        if ch == "\\" and i + 1 < len(raw) and raw[i + 1] in ",$|\\":
            cur.append("\\" + raw[i + 1] if raw[i + 1] == "|" else raw[i + 1])
            i += 2
            continue
        if ch == ",":
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    out.append("".join(cur))
    return tuple(out)


def split_pipe(value: str) -> tuple[str | None, str]:
    """`system|code` → (system, code); `|code` → ('', code); `code` → (None, code). `\\|` is literal."""
    idx = -1
    i = 0
    while i < len(value):
        if value[i] == "\\" and i + 1 < len(value):
            i += 2
            continue
        if value[i] == "|":
            idx = i
            break
        i += 1
    unescape = lambda s: s.replace("\\|", "|")  # noqa: E731
    if idx < 0:
        return None, unescape(value)
    return unescape(value[:idx]), unescape(value[idx + 1 :])


def _bad(name: str, why: str) -> Issue:
    return Issue("invalid", f"search parameter '{name}': {why}", expression=name)


def parse(res_type: str, pairs: list[tuple[str, str]], *, lenient: bool = False) -> SearchRequest:
    reg = registry()
    req = SearchRequest(res_type=res_type, pairs=list(pairs))
    problems: list[Issue] = []

    def unknown(name: str, why: str) -> None:
        if lenient:
            req.ignored.append(name)
        else:
            problems.append(_bad(name, why))

    for name, value in pairs:
        if "\x00" in name or "\x00" in value:
            problems.append(_bad(name.replace("\x00", ""), "contains a NUL character"))
            continue
        base = name.split(":", 1)[0].split(".", 1)[0]
        if base in CONTROL:
            _control(req, name, value, problems, lenient)
            continue
        if value == "":
            continue  # FHIR: an empty value is ignored
        modifier: str | None = None
        chain_part: str | None = None
        head = name
        if "." in head:
            head, chain_part = head.split(".", 1)
        if ":" in head:
            head, modifier = head.split(":", 1)
        param = reg.get(res_type, head)
        if param is None:
            unknown(name, f"not a search parameter of {res_type}")
            continue
        if chain_part is not None:
            if param.type != "reference":
                unknown(name, "only reference parameters can be chained")
                continue
            targets = [modifier] if modifier else list(param.target)
            if len(targets) != 1:
                unknown(name, "name the target type, e.g. subject:Patient.identifier")
                continue
            target = targets[0]
            chain_name, _, chain_mod = chain_part.partition(":")
            if "." in chain_name:
                unknown(name, "chaining is supported one level deep")
                continue
            tparam = reg.get(target, chain_name)
            if tparam is None:
                unknown(name, f"'{chain_name}' is not a search parameter of {target}")
                continue
            if chain_mod and chain_mod not in MODIFIERS.get(tparam.type, set()):
                unknown(name, f"modifier ':{chain_mod}' is not supported")
                continue
            req.clauses.append(Clause(param, None, split_values(value), Chain(target, tparam, chain_mod or None)))
            continue
        if param.type in ("composite", "special"):
            unknown(name, f"{param.type} parameters are not supported")
            continue
        type_modifier = param.type == "reference" and modifier in param.target
        if modifier is not None and modifier not in MODIFIERS.get(param.type, set()) and not type_modifier:
            unknown(name, f"modifier ':{modifier}' is not supported for {param.type} parameters")
            continue
        if modifier == "missing" and value not in ("true", "false"):
            problems.append(_bad(name, ":missing takes true or false"))
            continue
        req.clauses.append(Clause(param, modifier, split_values(value)))
    if problems:
        raise FhirError(400, problems)
    return req


def _control(req: SearchRequest, name: str, value: str, problems: list[Issue], lenient: bool) -> None:
    reg = registry()
    base, _, modifier = name.partition(":")
    if base == "_count":
        if not value.isdigit():
            problems.append(_bad(name, "must be a non-negative integer"))
        else:
            req.count = min(int(value), MAX_COUNT)
    elif base == "_total":
        if value not in ("none", "estimate", "accurate"):
            problems.append(_bad(name, "must be none, estimate or accurate"))
        else:
            req.total = value
    elif base == "_summary":
        if value not in ("count", "false", "data", "text", "true"):
            problems.append(_bad(name, "must be count, true, false, data or text"))
        else:
            req.summary = value
    elif base == "_elements":
        req.elements = tuple(v.strip() for v in value.split(",") if v.strip())
    elif base == "_sort":
        for key in value.split(","):
            key = key.strip()
            desc = key.startswith("-")
            code = key[1:] if desc else key
            param = reg.get(req.res_type, code)
            if param is None or param.type in ("composite", "special"):
                if lenient:
                    req.ignored.append(f"_sort={key}")
                else:
                    problems.append(_bad(name, f"cannot sort by '{code}'"))
                continue
            req.sort.append((param, desc))
    elif base in ("_include", "_revinclude"):
        parts = value.split(":")
        if value == "*" or len(parts) < 2 or len(parts) > 3:
            problems.append(_bad(name, "use Type:param or Type:param:TargetType"))
            return
        source, code = parts[0], parts[1]
        target = parts[2] if len(parts) == 3 else None
        p = reg.get(source, code)
        if p is None or p.type != "reference":
            problems.append(_bad(name, f"'{source}:{code}' is not a reference parameter"))
            return
        spec = IncludeSpec(source, code, target, modifier == "iterate")
        if base == "_include":
            if source != req.res_type and not spec.iterate:
                problems.append(_bad(name, f"_include must start from {req.res_type} (or use :iterate)"))
                return
            req.includes.append(spec)
        else:
            req.revincludes.append(spec)
    elif base == "_cursor":
        req.cursor = value
