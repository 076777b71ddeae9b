"""Phone numbers: what a typed number means (E.164) and how a trunk wants it dialled.

Pure functions, no I/O. People and systems write the same number many ways: ``+86 139
0000 0001``, ``0086 13900000001``, ``010 6552 1234`` (national trunk prefix ``0``) or just
the subscriber's digits. One canonical form is stored, so one customer is one customer
(a task is deduplicated by its number, C-11):

* a number written with ``+``, the country's international prefix (cn ``00``) or its
  national trunk prefix (cn ``0``) is stored in E.164: ``+`` and 7-15 digits;
* a number written with no prefix at all (a subscriber number, a short service number
  like ``110``, an extension behind the PBX) is kept as typed: it has no country code to
  find, and the PBX dials it as it is.

A carrier wants the number in its own format (``NumberFormat``): E.164 with ``+``, the
same digits without the ``+``, international (``00`` + country code + number) or
national (``0`` + number at home -- a cn mobile without it -- international abroad).
``dial_form`` turns the stored form into the trunk's; a number kept as typed is dialled
as typed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from callflow.errors import StateError

NumberFormat = Literal["e164", "e164_digits", "international", "national"]
DEFAULT_COUNTRY = "cn"
"""The country numbers are read in when none is configured (cn: +86, 00, national 0)."""
NUMBER_FORMATS: tuple[NumberFormat, ...] = ("e164", "e164_digits", "international", "national")


@dataclass(frozen=True)
class NumberingPlan:
    """What a country's callers write before a number (ITU-T E.164 national plans)."""

    calling_code: str  # the country code without '+': cn 86
    international_prefix: str  # dialled before a country code from inside the country
    national_prefix: str  # dialled before an area code from inside the country ('' = none)
    #: national numbers dialled without the national prefix (cn mobiles: 1[3-9]...)
    bare_national: str = ""


#: The countries a deployment can name (``country`` of a trunk, ``CALLFLOW_COUNTRY``).
PLANS: dict[str, NumberingPlan] = {
    "cn": NumberingPlan("86", "00", "0", bare_national=r"1[3-9][0-9]{9}"),
    "hk": NumberingPlan("852", "001", ""),
    "tw": NumberingPlan("886", "002", "0"),
    "sg": NumberingPlan("65", "000", ""),
    "gb": NumberingPlan("44", "00", "0"),
    "de": NumberingPlan("49", "00", "0"),
    "fr": NumberingPlan("33", "00", "0"),
    "us": NumberingPlan("1", "011", "1"),
}

_SEPARATORS = re.compile(r"[\s\-().]")
_PLAIN = re.compile(r"[0-9]{3,20}")
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")


def plan_of(country: str) -> NumberingPlan:
    """The numbering plan of ``country``; an unknown country is a ``ValueError``."""
    try:
        return PLANS[country]
    except KeyError:
        raise ValueError(f"no numbering plan for country {country!r} "
                         f"(known: {', '.join(sorted(PLANS))})") from None


def _invalid(raw: str, why: str) -> StateError:
    return StateError("invalid_number", f"{raw!r}: {why}")


def normalize(raw: str, country: str = DEFAULT_COUNTRY) -> str:
    """The stored form of ``raw`` (module docstring), or ``StateError('invalid_number')``.

    Spaces, dashes, dots and brackets are dropped (people type numbers that way). The
    result is either ``+`` and 7-15 digits (E.164) or 3-20 plain digits; anything else
    (a letter, a ``;``, a ``+`` in the middle) is refused with a reason.
    """
    if not isinstance(raw, str):
        raise StateError("invalid_number", f"a number must be a string, got {raw!r}")
    plan = plan_of(country)
    digits = _SEPARATORS.sub("", raw)
    if digits.startswith("+"):
        if not _E164.fullmatch(digits):
            raise _invalid(raw, "an international number is '+', a country code and "
                                "7-15 digits in all")
        return digits
    if not _PLAIN.fullmatch(digits):
        raise _invalid(raw, "is not a phone number (3-20 digits, or '+' and 7-15 digits)")
    intl, national = plan.international_prefix, plan.national_prefix
    if digits.startswith(intl) and len(digits) > len(intl):
        e164 = "+" + digits[len(intl):]
    elif national and digits.startswith(national) and len(digits) > len(national):
        e164 = "+" + plan.calling_code + digits[len(national):]
    else:
        return digits  # no prefix: kept as typed
    if not _E164.fullmatch(e164):
        raise _invalid(raw, f"as {e164} it is not a valid international number "
                            "(a country code and 7-15 digits in all)")
    return e164


def dial_form(number: str, country: str, fmt: NumberFormat) -> str:
    """The digits a trunk of ``country`` wanting ``fmt`` is sent for stored ``number``.

    A number kept as typed (no ``+``) is dialled as typed whatever the format."""
    if not number.startswith("+"):
        return number
    plan = plan_of(country)
    digits = number[1:]
    if fmt == "e164":
        return number
    if fmt == "e164_digits":
        return digits
    if fmt == "national" and digits.startswith(plan.calling_code):
        national = digits[len(plan.calling_code):]
        if plan.bare_national and re.fullmatch(plan.bare_national, national):
            return national
        return plan.national_prefix + national
    return plan.international_prefix + digits
