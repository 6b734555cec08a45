"""UCUM units: validation, spelling and conversion, on top of the `ucumvert` UCUM grammar and pint.

* `is_valid_ucum(unit)` tells whether a string is a valid UCUM expression (case-sensitive UCUM).
* `canonical(unit)` gives the one spelling the platform stores for a unit: a valid UCUM code is kept as it
  is except that the litre is written `L` (`mmol/l` -> `mmol/L`); a unit as Norwegian laboratories print it
  (`µmol/l`, `10E9/l`, `mIE/l`, `E/L`) is read with the Svarrapport unit table and rewritten to UCUM. The
  empty unit (and the KITH `0`) means "no unit" and becomes UCUM's unity `1`.
* `convert(value, from_unit, to_unit, molar_mass=...)` converts a number between two UCUM units of the same
  kind, and between mass and amount of substance when the molar mass is given (creatinine mg/dL <-> µmol/L).

Annotations (`{1.73_m2}`, `{FEU}`) do not change what a unit measures (UCUM), so they are ignored when units
are compared, with one guard: when both units carry annotations and these differ (`mg/L{FEU}` against
`mg/L{DDU}`), the values are on different scales and `convert` refuses them.

Conversion is used for every value of a cumulative table, so the linear map between two units is worked out
once per (from, to, molar mass) and kept; later calls are a dictionary look-up and one multiplication.
"""

from __future__ import annotations

import re
import threading
from functools import lru_cache
from typing import Any

__all__ = ["UnitError", "canonical", "convert", "convertible", "dimensionality", "is_valid_ucum"]


class UnitError(ValueError):
    """A unit cannot be read, or a value cannot be converted between two units."""


class _Ucum:
    """The UCUM grammar, a pint registry with the UCUM units, and the transformer from one to the other.

    The transformer is bound to this registry explicitly, so every quantity below comes from one registry.
    """

    def __init__(self) -> None:
        from ucumvert import PintUcumRegistry, UcumToPintTransformer, get_ucum_parser

        self.registry = PintUcumRegistry()
        self.parser = get_ucum_parser()
        self.transform = UcumToPintTransformer(ureg=self.registry).transform


_lock = threading.Lock()
_ucum: _Ucum | None = None  # built on first use (takes about a second)


def _get() -> _Ucum:
    global _ucum
    if _ucum is None:
        with _lock:
            if _ucum is None:
                _ucum = _Ucum()
    return _ucum


# --- syntax -----------------------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def is_valid_ucum(unit: str) -> bool:
    """True when `unit` is a valid UCUM expression (the case-sensitive UCUM grammar and its atoms)."""
    if not isinstance(unit, str) or not unit or unit != unit.strip():
        return False
    from ucumvert import InvalidUcumError, parse_ucum

    try:
        parse_ucum(unit, _get().parser)
    except InvalidUcumError:
        return False
    except Exception:  # the grammar raises lark errors of other kinds on some malformed input
        return False
    return True


_ANNOTATION = re.compile(r"\{[^{}]*\}")
# A litre written with a small l, alone or after a one-letter prefix, and not part of a longer atom
# (`mol`, `cal`, `lm`, `lx`, `[lb_av]`).
_SMALL_LITRE = re.compile(r"(?<![A-Za-z\[\]_'])([YZEPTGMkhdcmunpfazy]?)l(?![A-Za-z\]_'])")
_NO_UNIT = frozenset({"", "0", "1"})


def _litre_upper(unit: str) -> str:
    out: list[str] = []
    pos = 0
    for m in _ANNOTATION.finditer(unit):
        out.append(_SMALL_LITRE.sub(r"\1L", unit[pos : m.start()]))
        out.append(m.group(0))
        pos = m.end()
    out.append(_SMALL_LITRE.sub(r"\1L", unit[pos:]))
    return "".join(out)


@lru_cache(maxsize=4096)
def canonical(unit: str) -> str:
    """The UCUM code the platform uses for `unit`; raises `UnitError` when it cannot be read.

    Accepts UCUM codes and the spellings Norwegian laboratories print. Examples: `mmol/l` -> `mmol/L`,
    `µmol/L` -> `umol/L`, `10E9/L` -> `10*9/L`, `mIE/L` -> `m[IU]/L`, `IU/L` -> `[IU]/L`, `""` -> `1`.
    """
    if unit is None:
        raise UnitError("no unit given")
    text = str(unit).strip()
    if text in _NO_UNIT:
        return "1"
    if is_valid_ucum(text):
        spelled = _litre_upper(text)
        return spelled if is_valid_ucum(spelled) else text
    micro = text.replace("\u00b5", "u").replace("\u03bc", "u")
    if micro != text and is_valid_ucum(micro):
        return canonical(micro)
    # Not UCUM as written: read it as a laboratory spelling (E = enheter, IE = internasjonale enheter, ...).
    from kjerne.services.provesvar.units import UnitError as LabUnitError
    from kjerne.services.provesvar.units import to_ucum

    try:
        code = to_ucum(text).code
    except LabUnitError:
        code = None
    if code is None:
        raise UnitError(f"{unit!r} is not a UCUM unit and not a known laboratory spelling of one")
    if not is_valid_ucum(code):
        raise UnitError(f"{unit!r} was read as {code!r}, which is not valid UCUM")
    return _litre_upper(code) if is_valid_ucum(_litre_upper(code)) else code


# --- semantics --------------------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _quantity(unit: str) -> Any:
    """The pint quantity one `unit` stands for (`10*9/L` -> 1 * _10**9 / liter)."""
    if not is_valid_ucum(unit):
        raise UnitError(f"{unit!r} is not a valid UCUM unit")
    from ucumvert import parse_ucum

    ucum = _get()
    ureg = ucum.registry
    try:
        q = ucum.transform(parse_ucum(unit, ucum.parser))
    except Exception as exc:  # pint: undefined unit; lark: transformer error
        raise UnitError(f"{unit!r} is valid UCUM but cannot be converted: {exc}") from None
    if isinstance(q, ureg.Quantity):
        return q
    if isinstance(q, int | float):  # only factors and annotations, e.g. {a}/{b}
        return ureg.Quantity(q)
    if getattr(q, "type", None) == "ANNOTATION":  # a bare annotation such as {INR} is the unity
        return ureg.Quantity(1)
    raise UnitError(f"{unit!r} cannot be converted")


def dimensionality(unit: str) -> dict[str, float]:
    """The base dimensions of a UCUM unit, e.g. `mg/dL` -> {'[mass]': 1, '[length]': -3}."""
    return dict(_quantity(unit).dimensionality)


def _annotations(unit: str) -> frozenset[str]:
    return frozenset(_ANNOTATION.findall(unit))


_MASS_PER_SUBSTANCE = {"[mass]": 1, "[substance]": -1}
_SUBSTANCE_PER_MASS = {"[mass]": -1, "[substance]": 1}

# (from, to, molar mass) -> (scale, offset), or the UnitError message when the pair cannot be converted.
_maps: dict[tuple[str, str, float | None], tuple[float, float] | str] = {}


def _linear_map(from_unit: str, to_unit: str, molar_mass: float | None) -> tuple[float, float]:
    if from_unit == to_unit:
        if not is_valid_ucum(from_unit):
            raise UnitError(f"{from_unit!r} is not a valid UCUM unit")
        return 1.0, 0.0
    a, b = _annotations(from_unit), _annotations(to_unit)
    if a and b and a != b:
        raise UnitError(f"{from_unit!r} and {to_unit!r} carry different annotations; not the same scale")
    qa, qb = _quantity(from_unit), _quantity(to_unit)
    ureg = _get().registry
    units_a, mag_a = qa.units, float(qa.magnitude)
    da, db = qa.dimensionality, qb.dimensionality
    if da != db:
        ratio = dict((da / db).items())
        if molar_mass is None:
            raise UnitError(f"{from_unit!r} and {to_unit!r} measure different quantities")
        if not molar_mass > 0:
            raise UnitError(f"molar mass must be positive, got {molar_mass!r}")
        per_mol = ureg.Quantity(molar_mass, "gram / mole")
        if ratio == _MASS_PER_SUBSTANCE:  # mass -> amount: divide by the molar mass
            q = ureg.Quantity(mag_a, units_a) / per_mol
        elif ratio == _SUBSTANCE_PER_MASS:  # amount -> mass: multiply by the molar mass
            q = ureg.Quantity(mag_a, units_a) * per_mol
        else:
            raise UnitError(f"{from_unit!r} and {to_unit!r} measure different quantities")
        units_a, mag_a = q.units, float(q.magnitude)

    def apply(x: float) -> float:
        return float(ureg.Quantity(x * mag_a, units_a).to(qb.units).magnitude) / float(qb.magnitude)

    try:
        offset = apply(0.0)
        scale = apply(1.0) - offset
        check = apply(1000.0)
    except Exception as exc:  # pint: dimensionality or offset-unit errors
        raise UnitError(f"cannot convert {from_unit!r} to {to_unit!r}: {exc}") from None
    if abs(check - (1000.0 * scale + offset)) > 1e-9 * max(1.0, abs(check)):
        raise UnitError(f"{from_unit!r} to {to_unit!r} is not a linear conversion")
    return scale, offset


def convert(value: float, from_unit: str, to_unit: str, *, molar_mass: float | None = None) -> float:
    """`value` in `from_unit` expressed in `to_unit` (both UCUM codes).

    Raises `UnitError` when either unit is not valid UCUM or the units measure different quantities. Mass and
    amount of substance convert into each other when `molar_mass` (g/mol) is given. Enzyme activity converts
    between U and kat (1 µkat = 60 U).
    """
    key = (from_unit, to_unit, molar_mass)
    found = _maps.get(key)
    if found is None:
        try:
            found = _linear_map(from_unit, to_unit, molar_mass)
        except UnitError as exc:
            found = str(exc)
        if len(_maps) > 100_000:  # unbounded input (units from messages): never grow without limit
            _maps.clear()
        _maps[key] = found
    if isinstance(found, str):
        raise UnitError(found)
    scale, offset = found
    return value * scale + offset


def convertible(from_unit: str, to_unit: str, *, molar_mass: float | None = None) -> bool:
    """Whether `convert` would succeed for these units."""
    try:
        convert(1.0, from_unit, to_unit, molar_mass=molar_mass)
    except UnitError:
        return False
    return True
