"""Laboratory units as written by Norwegian producers -> UCUM (`http://unitsofmeasure.org`).

`to_ucum` first tries a table of known spellings, then rewrites the common Norwegian conventions
(`E` for enheter, `IE` for internasjonale enheter, `10E9` for 10^9, `Gant` for giga-antall, `t` and
`døgn` for hour and day) and finally checks the result against the UCUM grammar with the atoms a clinical
laboratory uses. A unit that still does not parse is refused by the caller: a number whose unit cannot be
read is not a result.

A unit of `"0"` (or an empty unit) is the KITH convention for "this quantity has no unit" (P-INR, titres).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

UCUM = "http://unitsofmeasure.org"

# Spelling (after whitespace and micro-sign normalisation) -> UCUM code.
UNIT_TABLE: dict[str, str] = {
    "mmol/l": "mmol/L",
    "mmol/L": "mmol/L",
    "umol/l": "umol/L",
    "umol/L": "umol/L",
    "nmol/l": "nmol/L",
    "pmol/l": "pmol/L",
    "mol/l": "mol/L",
    "g/l": "g/L",
    "g/dl": "g/dL",
    "g/dL": "g/dL",
    "mg/l": "mg/L",
    "mg/dl": "mg/dL",
    "ug/l": "ug/L",
    "ng/l": "ng/L",
    "ng/ml": "ng/mL",
    "pg/ml": "pg/mL",
    "E/l": "U/L",
    "E/L": "U/L",
    "U/l": "U/L",
    "kE/l": "kU/L",
    "mE/l": "mU/L",
    "mU/l": "mU/L",
    "E/ml": "U/mL",
    "U/ml": "U/mL",
    "IE/l": "[IU]/L",
    "IE/L": "[IU]/L",
    "IU/l": "[IU]/L",
    "IU/L": "[IU]/L",
    "IE/ml": "[IU]/mL",
    "IU/ml": "[IU]/mL",
    "IU/mL": "[IU]/mL",
    "mIE/l": "m[IU]/L",
    "mIU/l": "m[IU]/L",
    "mIU/L": "m[IU]/L",
    "kIE/l": "k[IU]/L",
    "kIU/l": "k[IU]/L",
    "10E9/l": "10*9/L",
    "10^9/l": "10*9/L",
    "x10^9/l": "10*9/L",
    "x10^9/L": "10*9/L",
    "Gant/l": "10*9/L",
    "Gant/L": "10*9/L",
    "10E12/l": "10*12/L",
    "Tant/l": "10*12/L",
    "Tant/L": "10*12/L",
    "10E6/l": "10*6/L",
    "Mant/l": "10*6/L",
    "Mant/L": "10*6/L",
    "%": "%",
    "fl": "fL",
    "fL": "fL",
    "pg": "pg",
    "mm/t": "mm/h",
    "mm/h": "mm/h",
    "mmHg": "mm[Hg]",
    "kPa": "kPa",
    "mosmol/kg": "mosm/kg",
    "mOsm/kg": "mosm/kg",
    "ml/min/1,73m2": "mL/min/{1.73_m2}",
    "ml/min/1.73m2": "mL/min/{1.73_m2}",
    "mL/min/1,73m2": "mL/min/{1.73_m2}",
    "mL/min/1.73m2": "mL/min/{1.73_m2}",
    "ratio": "{ratio}",
    "indeks": "{index}",
    "index": "{index}",
    "titer": "{titer}",
}

# Component rewrites applied between '/' and '.' operators when the whole spelling is not in the table.
_TOKEN_TABLE = {
    "E": "U",
    "kE": "kU",
    "mE": "mU",
    "uE": "uU",
    "IE": "[IU]",
    "mIE": "m[IU]",
    "kIE": "k[IU]",
    "uIE": "u[IU]",
    "IU": "[IU]",
    "mIU": "m[IU]",
    "kIU": "k[IU]",
    "uIU": "u[IU]",
    "Gant": "10*9",
    "Tant": "10*12",
    "Mant": "10*6",
    "t": "h",
    "time": "h",
    "timer": "h",
    "døgn": "d",
    "dogn": "d",
    "d": "d",
    "sek": "s",
    "uke": "wk",
    "mnd": "mo",
    "år": "a",
    "mmHg": "mm[Hg]",
    "Osm": "osm",
    "mOsm": "mosm",
    "mosmol": "mosm",
}

_PREFIXES = ("da", "Y", "Z", "E", "P", "T", "G", "M", "k", "h", "d", "c", "m", "u", "n", "p", "f", "a", "z", "y")
_METRIC_ATOMS = frozenset(
    {
        "m", "g", "s", "l", "L", "mol", "kat", "U", "[IU]", "[iU]", "eq", "osm", "Pa", "bar", "Hz", "N", "J",
        "W", "V", "A", "K", "Cel", "cal", "Ohm", "m[Hg]", "m[H2O]", "B", "Gy", "Sv", "Bq", "cd", "lm", "lx",
    }
)  # fmt: skip
_ATOMS = _METRIC_ATOMS | frozenset(
    {
        "min", "h", "d", "wk", "mo", "a", "%", "[ppm]", "[ppb]", "[ppth]", "[pH]", "[arb'U]", "[CFU]",
        "[HPF]", "[LPF]", "[drp]", "[in_i]", "[lb_av]", "deg", "10*", "10^", "[pi]", "[iU]",
    }
)  # fmt: skip

_TEN_POWER = re.compile(r"(?:^|(?<=[/.]))(?:x|×)?10(?:E|e|\^|\*\*|\*)([+-]?\d+)")
_EGFR = re.compile(r"^m[lL]/min/1[.,]73m2$")
_SIMPLE = re.compile(r"^(?P<sym>.*?)(?P<exp>[+-]?\d+)?$")


class UnitError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Unit:
    code: str | None  # UCUM code; None = no unit (the KITH "0" convention)
    original: str


NO_UNIT_SPELLINGS = frozenset({"", "0"})


def _normalise(raw: str) -> str:
    s = raw.strip().replace("\u00b5", "u").replace("\u03bc", "u").replace("²", "2").replace("³", "3")
    return re.sub(r"\s+", "", s)


def _simple_unit_ok(sym: str) -> bool:
    if sym in _ATOMS:
        return True
    if sym.startswith("da") and sym[2:] in _METRIC_ATOMS:
        return True
    return len(sym) > 1 and sym[0] in _PREFIXES and sym[1:] in _METRIC_ATOMS


def _component(comp: str) -> str:
    """One UCUM component (no operators) -> canonical text, or raise UnitError."""
    if not comp:
        raise UnitError("empty component")
    if comp.isdigit():
        return comp
    annotation = ""
    if comp.endswith("}") and "{" in comp:
        i = comp.index("{")
        annotation = comp[i:]
        if "}" in annotation[:-1] or "{" in annotation[1:]:
            raise UnitError(f"bad annotation in {comp!r}")
        comp = comp[:i]
        if not comp:
            return annotation
    m = _SIMPLE.match(comp)
    assert m
    sym, exp = m.group("sym"), m.group("exp") or ""
    if not sym and exp:
        # a bare number such as "1" with an annotation
        return exp + annotation
    if sym in ("10*", "10^") and not exp:
        raise UnitError("10* needs an exponent")
    if not _simple_unit_ok(sym):
        raise UnitError(f"{sym!r} is not a UCUM unit")
    if sym.endswith("l") and not sym.endswith("[") and sym[:-1] in ("", *_PREFIXES):
        sym = sym[:-1] + "L"  # UCUM accepts both; L is the conventional spelling
    if sym == "10^":
        sym = "10*"
    return sym + exp + annotation


def _parse_term(s: str) -> str:
    if not s:
        raise UnitError("empty unit")
    out: list[str] = []
    i = 0
    if s[0] == "/":
        out.append("/")
        i = 1
    current = ""
    depth = 0
    while i < len(s):
        ch = s[i]
        if ch == "{":
            j = s.find("}", i)
            if j < 0:
                raise UnitError("unclosed annotation")
            current += s[i : j + 1]
            i = j + 1
            continue
        if ch == "[":
            j = s.find("]", i)
            if j < 0:
                raise UnitError("unclosed bracket")
            current += s[i : j + 1]
            i = j + 1
            continue
        if ch == "(":
            j, depth = i + 1, 1
            while j < len(s) and depth:
                depth += {"(": 1, ")": -1}.get(s[j], 0)
                j += 1
            if depth:
                raise UnitError("unbalanced parenthesis")
            if current:
                raise UnitError("parenthesis after unit")
            current = "(" + _parse_term(s[i + 1 : j - 1]) + ")"
            i = j
            continue
        if ch in "./":
            if current.startswith("("):
                out.append(current)
            else:
                out.append(_component(current))
            out.append(ch)
            current = ""
            i += 1
            continue
        current += ch
        i += 1
    out.append(current if current.startswith("(") else _component(current))
    return "".join(out)


def parse_ucum(code: str) -> str:
    """Validate a UCUM expression and return it in canonical spelling (liter as `L`)."""
    return _parse_term(code)


def _rewrite_tokens(s: str) -> str:
    parts = re.split(r"([./])", s)
    return "".join(_TOKEN_TABLE.get(p, p) for p in parts)


def to_ucum(raw: str | None) -> Unit:
    """Map a unit as written in a message to UCUM. Raises UnitError when it cannot be read."""
    original = raw or ""
    s = _normalise(original)
    if s in NO_UNIT_SPELLINGS:
        return Unit(None, original)
    if s in UNIT_TABLE:
        return Unit(UNIT_TABLE[s], original)
    if _EGFR.match(s):
        return Unit("mL/min/{1.73_m2}", original)
    candidate = _TEN_POWER.sub(lambda m: f"10*{m.group(1)}", s)
    candidate = _rewrite_tokens(candidate)
    try:
        return Unit(parse_ucum(candidate), original)
    except UnitError as exc:
        raise UnitError(f"unit '{original}' is not UCUM and has no known mapping ({exc})") from None
