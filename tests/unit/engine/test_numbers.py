"""E.164 normalisation and the trunk's dialled form (callflow.engine.numbers)."""

from __future__ import annotations

import pytest

from callflow.engine import numbers
from callflow.errors import StateError


@pytest.mark.parametrize("raw, stored", [
    ("+86 139 0000 0001", "+8613900000001"),
    ("0086 13900000001", "+8613900000001"),
    ("(010) 6552.1234", "+861065521234"),  # national trunk prefix 0
    ("13900000001", "13900000001"),  # no prefix: kept as typed
    ("110", "110"),
    ("001-212-555-1234", "+12125551234"),  # international prefix, abroad
    ("+8613900000001", "+8613900000001"),  # idempotent
])
def test_numbers_are_stored_in_e164_when_a_prefix_says_the_country(raw: str, stored: str
                                                                   ) -> None:
    assert numbers.normalize(raw, "cn") == stored
    assert numbers.normalize(stored, "cn") == stored


def test_the_country_decides_what_the_prefixes_mean() -> None:
    assert numbers.normalize("011 86 139 0000 0001", "us") == "+8613900000001"
    assert numbers.normalize("1 212 555 1234", "us") == "+12125551234"
    assert numbers.normalize("020 7946 0018", "gb") == "+442079460018"
    with pytest.raises(ValueError, match="no numbering plan"):
        numbers.normalize("123", "xx")


@pytest.mark.parametrize("raw, why", [
    ("+", "international number"), ("+0123456789", "international number"),
    ("+86 139 abc", "international number"), ("+1234", "international number"),
    ("1+2345", "not a phone number"), ("12", "not a phone number"),
    ("0012", "not a valid international number"), ("00", "not a phone number"[:3]),
    ("139;1", "not a phone number"), ("", "not a phone number"),
])
def test_bad_numbers_are_refused_with_one_reason(raw: str, why: str) -> None:
    with pytest.raises(StateError, match=why) as err:
        numbers.normalize(raw, "cn")
    assert err.value.reason == "invalid_number"


@pytest.mark.parametrize("stored, fmt, dialled", [
    ("+8613900000001", "e164", "+8613900000001"),
    ("+8613900000001", "e164_digits", "8613900000001"),
    ("+8613900000001", "international", "008613900000001"),
    ("+8613900000001", "national", "13900000001"),  # a cn mobile: no trunk prefix
    ("+861065521234", "national", "01065521234"),  # a Beijing line: 0 + area code
    ("+12125551234", "national", "0012125551234"),  # abroad: international
    ("110", "e164", "110"),  # kept as typed, dialled as typed
])
def test_the_trunk_format_decides_the_dialled_digits(stored: str, fmt: numbers.NumberFormat,
                                                     dialled: str) -> None:
    assert numbers.dial_form(stored, "cn", fmt) == dialled
