"""Search-index extraction: the rows every stored resource version contributes to the index tables.

For each resource type the registry's search parameters are compiled once into a plan of
``(code, getter, converter)``; :func:`extract` runs the plan over a resource and returns
:class:`IndexRows`, deduplicated per resource.

Row shapes (the search SQL relies on them exactly):

* token ``(param, system, code, text)`` - one row per Coding (text: normalised display plus the
  CodeableConcept's text), ``(param, None, None, text)`` for a text-only CodeableConcept;
  Identifier ``(system, value, normalised type.text)`` plus, per ``type.coding``,
  ``(param + ':of-type', type system, type code + '|' + value, None)``; code, string, id, uri
  and ContactPoint values ``(None, value, None)``; booleans ``(None, 'true'|'false', None)``.
* string ``(param, normalised, exact)`` - plain strings, and every part of a HumanName (text,
  family, given, prefix, suffix) or an Address (line, city, district, state, postalCode,
  country, text).
* date ``(param, low_us, high_us)`` - an inclusive range in microseconds since the Unix epoch
  (UTC); see :func:`date_range`. A Period runs from its start to the upper bound of its end, open
  ends being :data:`DATE_MIN` / :data:`DATE_MAX`. A Timing contributes each ``event`` and its
  ``repeat.boundsPeriod``.
* reference ``(param, target_type, target_id, identifier_system, identifier_value, url)`` -
  ``Type/id`` (a version suffix dropped) fills type and id; any other literal reference
  (absolute URL, ``urn:uuid:``) and canonical values fill url only; ``Reference.identifier``
  fills the identifier columns, with ``Reference.type`` as target type when there is no literal
  reference. Contained references (``#id``) are not indexed as targets. An inline resource (as
  in ``Bundle.entry[0].resource``) indexes as its own ``Type/id``.
* quantity ``(param, value, system, code, unit)`` - Quantity and its profiles (Age, Duration,
  ...); Money as ``(value, 'urn:iso:std:iso:4217', currency, None)``; a Range contributes its
  low and high bounds as two rows. SampledData is skipped.
* number ``(param, value)`` and uri ``(param, value)``.

Not indexed: ``_id`` and ``_lastUpdated`` (the resource table has columns for them), the
parameters without a FHIRPath expression (``_text``, ``_content``, ``_query``), every
``composite`` parameter (``code-value-quantity``, ``combo-code-value-concept``,
``component-code-value-quantity``, ``context-type-value``, ``characteristic-value``,
``relationship``, ``*-coordinate``, ...) and the ``special`` parameter ``Location.near``.
Malformed values (a date that is not a date, a Quantity without a numeric value) are skipped
rather than failing the write; validation is a separate concern.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from typing import Any, TypeGuard
from zoneinfo import ZoneInfo

import orjson

from kjerne.fhir.fhirpath import UnsupportedExpression, compile_expression
from kjerne.fhir.searchparams import registry

__all__ = [
    "DATE_MAX",
    "DATE_MIN",
    "LOCAL_TZ",
    "NOT_EXTRACTED",
    "IndexRows",
    "date_range",
    "extract",
    "normalise",
    "plan_for",
]

DATE_MIN = -(2**62)
DATE_MAX = 2**62
LOCAL_TZ = ZoneInfo("Europe/Oslo")
NOT_EXTRACTED = frozenset({"_id", "_lastUpdated"})
MONEY_SYSTEM = "urn:iso:std:iso:4217"

_UTC = dt.UTC
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=_UTC)
_US = dt.timedelta(microseconds=1)


@dataclass(slots=True)
class IndexRows:
    tokens: list[tuple[str, str | None, str | None, str | None]] = field(default_factory=list)
    strings: list[tuple[str, str, str]] = field(default_factory=list)
    dates: list[tuple[str, int, int]] = field(default_factory=list)
    references: list[tuple[str, str | None, str | None, str | None, str | None, str | None]] = field(
        default_factory=list
    )
    quantities: list[tuple[str, float, str | None, str | None, str | None]] = field(default_factory=list)
    numbers: list[tuple[str, float]] = field(default_factory=list)
    uris: list[tuple[str, str]] = field(default_factory=list)


# --------------------------------------------------------------------------- text


def _strip_marks(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def normalise(text: str) -> str:
    """The form string search compares: accents stripped, case folded, whitespace collapsed.

    Compatibility decomposition (NFKD) splits letters from their diacritics, which are dropped,
    so 'å' becomes 'a' and 'é' becomes 'e'. 'ø' and 'æ' are letters of their own with no
    decomposition and stay as they are, lower-cased: 'Øvre Ærø' -> 'øvre ærø'."""
    if text.isascii():
        return " ".join(text.lower().split())
    folded = _strip_marks(_strip_marks(text).casefold())
    return " ".join(folded.split())


# --------------------------------------------------------------------------- dates

_DATE = re.compile(
    r"(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?(Z|[+-]\d{2}:\d{2})?)?)?)?"
)
_ZONES: dict[str, dt.tzinfo] = {"Z": _UTC, "+00:00": _UTC, "-00:00": _UTC}


def _zone(text: str | None) -> dt.tzinfo:
    if text is None:
        return LOCAL_TZ
    tz = _ZONES.get(text)
    if tz is None:
        hours, minutes = int(text[1:3]), int(text[4:6])
        if hours > 14 or minutes > 59 or (hours == 14 and minutes):
            raise ValueError(f"impossible time-zone offset {text!r}")
        delta = dt.timedelta(hours=hours, minutes=minutes)
        tz = dt.timezone(-delta if text[0] == "-" else delta)
        _ZONES[text] = tz
    return tz


def _us(moment: dt.datetime) -> int:
    return (moment - _EPOCH) // _US


def date_range(value: str) -> tuple[int, int]:
    """The inclusive range ``(low_us, high_us)`` of microseconds since the epoch (UTC) that a FHIR
    date, dateTime or instant covers.

    Partial values cover their whole precision: ``2024`` is the year, ``2024-03`` the month,
    ``2024-03-05`` the day, ``2024-03-05T10:15`` the minute and ``2024-03-05T10:15:30`` the
    second (``[s, s + 999999 µs]``). A fractional second is an exact instant (truncated to
    microseconds).

    Values without a time-zone offset (all dates, and dateTimes without one) are read as local
    time in Europe/Oslo, the zone of the Norwegian services this store implements, daylight
    saving included: ``2024-07-01`` is ``[2024-06-30T22:00Z, 2024-07-01T21:59:59.999999Z]``.
    An ambiguous local time (the autumn repeat hour) takes its first occurrence; a non-existent
    one (the spring gap) is read with the offset before the change.

    Raises ValueError for anything malformed or impossible (month 13, 30 February, hour 24,
    leap second 60, offset beyond ±14:00).
    """
    if type(value) is not str:
        raise ValueError(f"not a FHIR date/dateTime: {value!r}")
    return _date_range(value)


# One resource's date is read by the index, the observation index and the rules: parsed once.
@lru_cache(maxsize=4096)
def _date_range(value: str) -> tuple[int, int]:
    m = _DATE.fullmatch(value)
    if m is None:
        raise ValueError(f"not a FHIR date/dateTime: {value!r}")
    year_s, month_s, day_s, hour_s, minute_s, second_s, fraction_s, zone_s = m.groups()
    year = int(year_s)
    if year < 1:
        raise ValueError(f"year out of range: {value!r}")
    if hour_s is None:  # year, month or day precision: always local time
        if month_s is None:
            start = dt.datetime(year, 1, 1, tzinfo=LOCAL_TZ)
            nxt = dt.datetime(year + 1, 1, 1, tzinfo=LOCAL_TZ) if year < 9999 else None
        elif day_s is None:
            month = int(month_s)
            start = dt.datetime(year, month, 1, tzinfo=LOCAL_TZ)
            if month == 12:
                nxt = dt.datetime(year + 1, 1, 1, tzinfo=LOCAL_TZ) if year < 9999 else None
            else:
                nxt = dt.datetime(year, month + 1, 1, tzinfo=LOCAL_TZ)
        else:
            day = dt.date(year, int(month_s), int(day_s))
            start = dt.datetime(day.year, day.month, day.day, tzinfo=LOCAL_TZ)
            if day == dt.date.max:
                nxt = None
            else:
                following = day + dt.timedelta(days=1)
                nxt = dt.datetime(following.year, following.month, following.day, tzinfo=LOCAL_TZ)
        low = _us(start)
        high = _us(nxt) - 1 if nxt is not None else _us(dt.datetime(9999, 12, 31, 23, 59, 59, 999999, LOCAL_TZ))
        return low, high
    tz = _zone(zone_s)
    second = int(second_s) if second_s is not None else 0
    micro = int(fraction_s[:6].ljust(6, "0")) if fraction_s is not None else 0
    moment = dt.datetime(year, int(month_s), int(day_s), int(hour_s), int(minute_s), second, micro, tz)
    low = _us(moment)
    if fraction_s is not None:
        return low, low
    if second_s is None:
        return low, low + 59_999_999
    return low, low + 999_999


# --------------------------------------------------------------------------- converters

Rows = IndexRows
Converter = Callable[[str, list[Any], IndexRows], None]

_CONTACT_SYSTEMS = frozenset({"phone", "fax", "email", "pager", "url", "sms", "other"})
_STRING_PARTS = (
    "text",
    "family",
    "given",
    "prefix",
    "suffix",
    "line",
    "city",
    "district",
    "state",
    "postalCode",
    "country",
)
_RELATIVE_REF = re.compile(r"([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]{1,64})?")


def _norm_or_none(first: Any, second: Any = None) -> str | None:
    """The normalised text of one or two parts (a coding's display and its concept's text)."""
    a = first if isinstance(first, str) and first else None
    b = second if isinstance(second, str) and second else None
    if a is None and b is None:
        return None
    text = f"{a} {b}" if a is not None and b is not None else (a or b or "")
    if len(text) <= 200:  # displays and code texts: the same few thousand over and over
        return _norm_short(text)
    return normalise(text) or None


@lru_cache(maxsize=8192)
def _norm_short(text: str) -> str | None:
    return normalise(text) or None


def _is_number(v: Any) -> TypeGuard[int | float | Decimal]:
    return isinstance(v, int | float | Decimal) and not isinstance(v, bool)


def _token(code: str, values: list[Any], rows: IndexRows) -> None:
    out = rows.tokens
    for v in values:
        if isinstance(v, str):
            out.append((code, None, v, None))
        elif isinstance(v, bool):
            out.append((code, None, "true" if v else "false", None))
        elif isinstance(v, int):
            out.append((code, None, str(v), None))
        elif isinstance(v, dict):
            if "coding" in v or ("text" in v and "value" not in v and "code" not in v):
                _codeable_concept(code, v, out)
            elif "value" in v:
                value = v.get("value")
                if not isinstance(value, str):
                    continue
                system = v.get("system")
                if system in _CONTACT_SYSTEMS or "rank" in v:  # ContactPoint
                    out.append((code, None, value, None))
                else:
                    _identifier(code, v, value, out)
            elif "code" in v or "system" in v:  # Coding
                c, s = v.get("code"), v.get("system")
                out.append(
                    (
                        code,
                        s if isinstance(s, str) else None,
                        c if isinstance(c, str) else None,
                        _norm_or_none(v.get("display")),
                    )
                )


def _codeable_concept(code: str, cc: dict[str, Any], out: list[Any]) -> None:
    cc_text = cc.get("text")
    emitted = False
    for coding in cc.get("coding") or ():
        if not isinstance(coding, dict):
            continue
        s, c = coding.get("system"), coding.get("code")
        s = s if isinstance(s, str) else None
        c = c if isinstance(c, str) else None
        text = _norm_or_none(coding.get("display"), cc_text)
        if s is None and c is None and text is None:
            continue
        out.append((code, s, c, text))
        emitted = True
    if not emitted:
        text = _norm_or_none(cc_text)
        if text is not None:
            out.append((code, None, None, text))


def _identifier(code: str, ident: dict[str, Any], value: str | None, out: list[Any]) -> None:
    system = ident.get("system")
    system = system if isinstance(system, str) else None
    id_type = ident.get("type")
    type_text = _norm_or_none(id_type.get("text")) if isinstance(id_type, dict) else None
    out.append((code, system, value, type_text))
    if value is not None and isinstance(id_type, dict):
        of_type = code + ":of-type"
        for coding in id_type.get("coding") or ():
            if isinstance(coding, dict) and isinstance(coding.get("code"), str):
                ts = coding.get("system")
                out.append((of_type, ts if isinstance(ts, str) else None, f"{coding['code']}|{value}", None))


def _string(code: str, values: list[Any], rows: IndexRows) -> None:
    out = rows.strings
    for v in values:
        if isinstance(v, str):
            parts: Any = (v,)
        elif isinstance(v, dict):
            parts = []
            for key in _STRING_PARTS:
                x = v.get(key)
                if isinstance(x, str):
                    parts.append(x)
                elif isinstance(x, list):
                    parts.extend(p for p in x if isinstance(p, str))
        else:
            continue
        for p in parts:
            n = normalise(p)
            if n:
                out.append((code, n, p))


def _period(period: dict[str, Any]) -> tuple[int, int] | None:
    start, end = period.get("start"), period.get("end")
    if start is None and end is None:
        return None
    low = date_range(start)[0] if start is not None else DATE_MIN
    high = date_range(end)[1] if end is not None else DATE_MAX
    return low, high


def _date(code: str, values: list[Any], rows: IndexRows) -> None:
    out = rows.dates
    for v in values:
        try:
            if isinstance(v, str):
                low, high = date_range(v)
                out.append((code, low, high))
            elif isinstance(v, dict):
                if "start" in v or "end" in v:
                    rng = _period(v)
                    if rng is not None:
                        out.append((code, *rng))
                    continue
                for event in v.get("event") or ():  # Timing
                    try:
                        out.append((code, *date_range(event)))
                    except ValueError:
                        continue
                repeat = v.get("repeat")
                bounds = repeat.get("boundsPeriod") if isinstance(repeat, dict) else None
                if isinstance(bounds, dict):
                    rng = _period(bounds)
                    if rng is not None:
                        out.append((code, *rng))
        except (ValueError, TypeError):
            continue


def _reference(code: str, values: list[Any], rows: IndexRows) -> None:
    out = rows.references
    for v in values:
        if isinstance(v, str):  # canonical / uri
            if v:
                out.append((code, None, None, None, None, v))
            continue
        if not isinstance(v, dict):
            continue
        rt = v.get("resourceType")
        if rt is not None:  # an inline resource
            if isinstance(rt, str) and isinstance(v.get("id"), str):
                out.append((code, rt, v["id"], None, None, None))
            continue
        ref = v.get("reference")
        target_type = target_id = url = None
        if isinstance(ref, str) and ref:
            m = _RELATIVE_REF.fullmatch(ref)
            if m:
                target_type, target_id = m.group(1), m.group(2)
            elif not ref.startswith("#"):
                url = ref
        isys = ival = None
        ident = v.get("identifier")
        if isinstance(ident, dict):
            s, val = ident.get("system"), ident.get("value")
            isys = s if isinstance(s, str) else None
            ival = val if isinstance(val, str) else None
        if ref is None and (isys is not None or ival is not None):
            declared = v.get("type")
            if isinstance(declared, str) and declared:
                target_type = declared.rsplit("/", 1)[-1]
        if target_id is None and url is None and isys is None and ival is None:
            continue
        out.append((code, target_type, target_id, isys, ival, url))


def _quantity_row(code: str, q: dict[str, Any], out: list[Any]) -> None:
    raw = q.get("value")
    if not _is_number(raw):
        return
    value = float(raw)
    if "currency" in q:  # Money
        cur = q.get("currency")
        out.append((code, value, MONEY_SYSTEM, cur if isinstance(cur, str) else None, None))
        return
    s, c, u = q.get("system"), q.get("code"), q.get("unit")
    out.append(
        (
            code,
            value,
            s if isinstance(s, str) else None,
            c if isinstance(c, str) else None,
            u if isinstance(u, str) else None,
        )
    )


def _quantity(code: str, values: list[Any], rows: IndexRows) -> None:
    out = rows.quantities
    for v in values:
        if isinstance(v, dict):
            if "origin" in v:  # SampledData
                continue
            if "low" in v or "high" in v:  # Range
                for bound in (v.get("low"), v.get("high")):
                    if isinstance(bound, dict):
                        _quantity_row(code, bound, out)
            else:
                _quantity_row(code, v, out)
        elif _is_number(v):
            out.append((code, float(v), None, None, None))


def _number(code: str, values: list[Any], rows: IndexRows) -> None:
    out = rows.numbers
    for v in values:
        if _is_number(v):
            out.append((code, float(v)))
        elif isinstance(v, dict):
            inner = [v.get("low"), v.get("high")] if ("low" in v or "high" in v) else [v]
            for q in inner:
                if isinstance(q, dict) and _is_number(q.get("value")):
                    out.append((code, float(q["value"])))


def _uri(code: str, values: list[Any], rows: IndexRows) -> None:
    out = rows.uris
    for v in values:
        if isinstance(v, str) and v:
            out.append((code, v))


_CONVERTERS: dict[str, Converter] = {
    "token": _token,
    "string": _string,
    "date": _date,
    "reference": _reference,
    "quantity": _quantity,
    "number": _number,
    "uri": _uri,
}


# --------------------------------------------------------------------------- plans

PlanStep = tuple[str, Callable[[Any], list[Any]], Converter, frozenset[str] | None, "_Memo | None"]
Plan = tuple[PlanStep, ...]
_PLANS: dict[str, Plan] = {}
_ROW_KINDS = ("tokens", "strings", "dates", "references", "quantities", "numbers", "uris")


class _Memo:
    """The rows the parameters reading the same elements gave for one value of those elements. Most of
    what arrives repeats the codes, categories, senders and subjects of what came before; parameters
    whose values seldom repeat (times, identifiers) stop being remembered once that shows."""

    __slots__ = ("hits", "keys", "lookups", "on", "rows", "steps")
    MAX = 4096
    TRIAL = 2000

    def __init__(self, keys: frozenset[str]) -> None:
        self.keys = tuple(sorted(keys))
        self.rows: dict[bytes, tuple[tuple[str, tuple[Any, ...]], ...]] = {}
        self.steps: list[tuple[str, Callable[[Any], list[Any]], Converter]] = []  # the parameters it covers
        self.lookups = self.hits = 0
        self.on = True

    def compute(self, resource: dict[str, Any], rows: IndexRows) -> None:
        for code, getter, converter in self.steps:
            values = getter(resource)
            if values:
                converter(code, values, rows)

    def key(self, resource: dict[str, Any]) -> bytes | None:
        try:
            return orjson.dumps([resource.get(k) for k in self.keys])
        except TypeError:  # a Decimal or an oversized integer: computed afresh
            return None

    def seen(self, hit: bool) -> None:
        self.lookups += 1
        self.hits += hit
        if self.lookups == self.TRIAL and self.hits * 4 < self.lookups:
            self.on = False
            self.rows.clear()

    def store(self, key: bytes, part: IndexRows) -> tuple[tuple[str, tuple[Any, ...]], ...]:
        rows = tuple((kind, tuple(items)) for kind in _ROW_KINDS if (items := getattr(part, kind)))
        if self.on:
            if len(self.rows) >= self.MAX:
                self.rows.clear()
            self.rows[key] = rows
        return rows


class _Probe(dict[str, Any]):
    """A resource with nothing but its type that notes which of its elements a getter asks for.
    Anything other than asking for an element by name (listing, comparing, counting) spoils it."""

    def __init__(self, resource_type: str) -> None:
        super().__init__(resourceType=resource_type)
        self.asked: set[str] = set()
        self.spoilt = False

    def get(self, key: str, default: Any = None) -> Any:
        self.asked.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> Any:
        self.asked.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.asked.add(key)
        return super().__contains__(key)

    def _spoil(self, *_: Any) -> Any:
        self.spoilt = True
        return iter(())

    items = keys = values = __iter__ = _spoil  # type: ignore[assignment]

    def __len__(self) -> int:
        self.spoilt = True
        return 1

    def __eq__(self, other: object) -> bool:
        self.spoilt = True
        return self is other

    __hash__ = None  # type: ignore[assignment]


def _needs(resource_type: str, getter: Callable[[Any], list[Any]]) -> frozenset[str] | None:
    """The elements a getter reads from the resource, when it yields nothing without them: a resource
    that has none of them gives the getter the same answers as the bare probe, so it yields nothing
    too and need not run. None: run it always."""
    probe = _Probe(resource_type)
    try:
        out = getter(probe)
    except Exception:
        return None
    if out or probe.spoilt:
        return None
    return frozenset(probe.asked - {"resourceType"}) or None


def plan_for(resource_type: str) -> Plan:
    """The compiled extraction plan for a resource type: ``(code, getter, converter)`` triples.

    Parameters the FHIRPath compiler cannot handle are left out (the test suite pins that set
    to an explicit, currently empty, allow-list)."""
    plan = _PLANS.get(resource_type)
    if plan is not None:
        return plan
    from kjerne.store.derived_params import unions

    reg = registry()
    derived = unions(resource_type)  # read from their parts' rows (derived_params)
    groups: dict[tuple[Any, ...], list[PlanStep]] = {}
    memos: dict[tuple[Any, ...], _Memo] = {}
    for code, sp in sorted(reg.for_type(resource_type).items()):
        converter = _CONVERTERS.get(sp.type)
        if converter is None or sp.expression is None or code in NOT_EXTRACTED or code in derived:
            continue
        try:
            getter = compile_expression(sp.expression, resource_type=resource_type, choices=reg.choices)
        except UnsupportedExpression:
            continue
        needs = _needs(resource_type, getter)
        # Only the elements in `needs` decide the rows, unless the expression reaches the root again.
        # Parameters reading the same elements share one memo and stand next to each other in the plan.
        group: tuple[Any, ...] = (code,)
        memo = None
        if needs is not None and "%resource" not in sp.expression:
            group = tuple(sorted(needs))
            memo = memos.get(group) or memos.setdefault(group, _Memo(needs))
            memo.steps.append((code, getter, converter))
        groups.setdefault(group, []).append((code, getter, converter, needs, memo))
    plan = tuple(step for members in groups.values() for step in members)
    _PLANS[resource_type] = plan
    return plan


_SHAPES: dict[tuple[str, frozenset[str]], tuple[Plan, Plan]] = {}
_SHAPES_MAX = 2048


def _steps(resource_type: str, present: frozenset[str]) -> Plan:
    """The plan's steps that can yield rows for a resource with these top-level elements. Resources of a
    kind mostly share a few shapes, so this is worked out once per shape."""
    plan = plan_for(resource_type)
    known = _SHAPES.get((resource_type, present))
    if known is not None and known[0] is plan:
        return known[1]
    steps = tuple(step for step in plan if step[3] is None or not present.isdisjoint(step[3]))
    if len(_SHAPES) >= _SHAPES_MAX:
        _SHAPES.clear()
    _SHAPES[(resource_type, present)] = (plan, steps)
    return steps


def extract(resource: dict[str, Any]) -> IndexRows:
    """Index rows for one resource version, deduplicated. Unknown resource types yield no rows."""
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str):
        raise ValueError("resource without a resourceType")
    rows = IndexRows()
    present = frozenset(resource)
    # resolve() of a contained reference ("#id") reads Resource.contained: such rows are not remembered.
    remember = "contained" not in present
    done: _Memo | None = None  # the memo just used: it answered for its whole group of parameters
    for code, getter, converter, _, memo in _steps(resource_type, present):
        if memo is not None and memo.on and remember:
            if memo is done:
                continue
            done = memo
            key = memo.key(resource)
            if key is None:
                memo.compute(resource, rows)
                continue
            known = memo.rows.get(key)
            memo.seen(known is not None)
            if known is None:
                part = IndexRows()
                memo.compute(resource, part)
                known = memo.store(key, part)
            for kind, items in known:
                getattr(rows, kind).extend(items)
            continue
        values = getter(resource)
        if values:
            converter(code, values, rows)
    for name in _ROW_KINDS:
        items = getattr(rows, name)
        if len(items) > 1:
            setattr(rows, name, list(dict.fromkeys(items)))
    return rows
