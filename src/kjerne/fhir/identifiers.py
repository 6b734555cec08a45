"""Norwegian identifiers: systems, check digits and synthetic test numbers."""

from __future__ import annotations

import datetime as dt
from functools import lru_cache

OID_FNR = "urn:oid:2.16.578.1.12.4.1.4.1"
OID_DNR = "urn:oid:2.16.578.1.12.4.1.4.2"
OID_FHN = "urn:oid:2.16.578.1.12.4.1.4.3"
OID_HPR = "urn:oid:2.16.578.1.12.4.1.4.4"
OID_ORGNR = "urn:oid:2.16.578.1.12.4.1.4.101"
OID_RESH = "urn:oid:2.16.578.1.12.4.1.4.102"
OID_HERID = "urn:oid:2.16.578.1.12.4.1.2"
URI_FNR = "http://hl7.no/fhir/NamingSystem/FNR"

PERSON_SYSTEMS = frozenset({OID_FNR, OID_DNR, OID_FHN, URI_FNR})

_K1 = (3, 7, 6, 1, 8, 9, 4, 5, 2)
_K2 = (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)
_ORG = (3, 2, 7, 6, 5, 4, 3, 2)


def _mod11(digits: str, weights: tuple[int, ...]) -> int | None:
    rest = sum(int(d) * w for d, w in zip(digits, weights, strict=True)) % 11
    check = 0 if rest == 0 else 11 - rest
    return None if check == 10 else check


def person_checksum_ok(value: str) -> bool:
    return type(value) is str and _person_checksum_ok(value)


@lru_cache(maxsize=1 << 16)  # a batch names the same person in every entry
def _person_checksum_ok(value: str) -> bool:
    if len(value) != 11 or not value.isdigit():
        return False
    return _mod11(value[:9], _K1) == int(value[9]) and _mod11(value[:10], _K2) == int(value[10])


def birth_date(value: str) -> dt.date | None:
    """Birth date encoded in a fødselsnummer or D-nummer, honouring the D (+40 day) and
    synthetic/H-number (+40, +65 or +80 month) conventions. None when the date is impossible."""
    day, month, yy, individ = int(value[0:2]), int(value[2:4]), int(value[4:6]), int(value[6:9])
    if day > 40:
        day -= 40
    if month > 80:
        month -= 80
    elif month > 64:
        month -= 65  # test persons in the national health network's test environments
    elif month > 40:
        month -= 40
    if individ <= 499:
        century = 1900
    elif individ <= 749 and yy >= 54:
        century = 1800
    elif individ >= 900 and yy >= 40:
        century = 1900
    else:
        century = 2000
    try:
        return dt.date(century + yy, month, day)
    except ValueError:
        return None


def is_valid_fnr(value: str) -> bool:
    """Fødselsnummer, D-nummer or synthetic number with valid check digits and a real date."""
    return type(value) is str and _valid_fnr(value)


@lru_cache(maxsize=1 << 16)
def _valid_fnr(value: str) -> bool:
    return _person_checksum_ok(value) and birth_date(value) is not None


def is_synthetic(value: str) -> bool:
    return len(value) == 11 and value.isdigit() and int(value[2:4]) > 80


def is_dnr(value: str) -> bool:
    return is_valid_fnr(value) and int(value[0]) >= 4


def make_synthetic_fnr(born: dt.date, individ: int) -> str | None:
    """A synthetic fødselsnummer (month + 80), or None when the individual number gives check digit 10."""
    if born.year >= 2000:
        if not 500 <= individ <= 999:
            raise ValueError("individual number 500-999 for births from 2000")
    elif not 0 <= individ <= 499:
        raise ValueError("individual number 000-499 for births 1900-1999")
    base = f"{born.day:02d}{born.month + 80:02d}{born.year % 100:02d}{individ:03d}"
    k1 = _mod11(base, _K1)
    if k1 is None:
        return None
    k2 = _mod11(base + str(k1), _K2)
    if k2 is None:
        return None
    return f"{base}{k1}{k2}"


def is_valid_orgnr(value: str) -> bool:
    if len(value) != 9 or not value.isdigit() or value[0] not in "89":
        return False
    return _mod11(value[:8], _ORG) == int(value[8])


def make_orgnr(prefix: int) -> str | None:
    base = f"{prefix:08d}"
    check = _mod11(base, _ORG)
    return None if check is None else base + str(check)


def is_valid_hpr(value: str) -> bool:
    """HPR numbers are issued as 6 to 9 digits; no public check-digit rule exists."""
    return value.isdigit() and 6 <= len(value) <= 9 and value[0] != "0"


def is_valid_herid(value: str) -> bool:
    return value.isdigit() and 1 <= len(value) <= 9


def identifier_problem(system: str | None, value: str | None) -> str | None:
    """A human-readable fault for a Norwegian identifier, or None when it is valid or not Norwegian."""
    if value is None or system is None:
        return None
    if system in (OID_FNR, URI_FNR, OID_DNR):
        if not is_valid_fnr(value):
            return f"'{value}' is not a valid national identity number (check digits or date)"
        if system == OID_DNR and not is_dnr(value):
            return f"'{value}' is not a D-number"
    elif system == OID_HPR and not is_valid_hpr(value):
        return f"'{value}' is not a valid HPR number"
    elif system == OID_ORGNR and not is_valid_orgnr(value):
        return f"'{value}' is not a valid organisation number"
    elif system == OID_HERID and not is_valid_herid(value):
        return f"'{value}' is not a valid HER-id"
    return None
