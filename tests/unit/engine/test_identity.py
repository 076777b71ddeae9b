"""The identity gate's pure rules (engine/identity.py, STD-077/STD-078), on a fake clock."""

from __future__ import annotations

import pytest

from callflow.engine import identity
from callflow.engine.clock import FakeClock
from callflow.engine.identity import FAILED, UNVERIFIED, VERIFIED_PIN, VERIFIED_QUESTIONS
from callflow.engine.policy import Policy, parse_policy

POLICY = Policy.defaults()


def at(clock: FakeClock) -> float:
    return clock.wall().timestamp()


@pytest.mark.std("STD-077")
def test_a_right_pin_verifies_and_later_entries_change_nothing() -> None:
    clock = FakeClock()
    check = identity.IdentityCheck("c1")
    clock.advance(4)
    check = identity.pin_entered(check, True, POLICY, at(clock))
    assert (check.status, check.pin_attempts, check.by) == (VERIFIED_PIN, 1, "ivr")
    assert check.at == at(clock) and check.verified
    assert identity.pin_entered(check, False, POLICY, at(clock) + 1) is check
    assert not identity.pin_retry(check, POLICY)


@pytest.mark.std("STD-077")
def test_wrong_pins_count_and_the_limit_fails_the_check() -> None:
    policy = parse_policy({"identity": {"pin_attempts": 2}})
    clock = FakeClock()
    check = identity.pin_entered(identity.IdentityCheck("c1"), False, policy, at(clock))
    assert (check.status, check.pin_attempts) == (UNVERIFIED, 1)
    assert identity.pin_retry(check, policy)
    clock.advance(5)
    check = identity.pin_entered(check, False, policy, at(clock))
    assert (check.status, check.pin_attempts) == (FAILED, 2)
    assert not identity.pin_retry(check, policy) and not check.verified
    # a failed PIN leaves the questions open (method "either")
    vouched = identity.questions_verified(check, policy, "1001", at(clock))
    assert vouched.status == VERIFIED_QUESTIONS and vouched.by == "1001"


@pytest.mark.std("STD-077")
def test_the_method_decides_which_verification_counts() -> None:
    pin_only = parse_policy({"identity": {"method": "pin"}})
    with pytest.raises(identity.IdentityError) as refused:
        identity.questions_verified(identity.IdentityCheck("c1"), pin_only, "1001", 0.0)
    assert refused.value.code == "method_not_allowed"
    questions_only = parse_policy({"identity": {"method": "questions"}})
    assert not identity.pin_offered(questions_only, has_pin=True)
    assert identity.pin_offered(POLICY, has_pin=True)
    assert not identity.pin_offered(POLICY, has_pin=False)
    assert not identity.pin_offered(parse_policy({"identity": {"pin_in_ivr": False}}), True)
    with pytest.raises(identity.IdentityError):
        identity.pin_entered(identity.IdentityCheck("c1"), True, questions_only, 0.0)


@pytest.mark.std("STD-077", "STD-078")
def test_personal_fields_only_after_verification() -> None:
    check = identity.IdentityCheck("c1")
    with pytest.raises(identity.IdentityError) as refused:
        identity.reveal(check, [], POLICY)
    assert refused.value.code == "not_verified"
    check = identity.questions_verified(check, POLICY, "1001", 0.0)
    assert identity.reveal(check, [], POLICY) == ("account", "address", "id_tail")
    assert identity.reveal(check, ["address", "address"], POLICY) == ("address",)
    with pytest.raises(identity.IdentityError) as unknown:
        identity.reveal(check, ["surname"], POLICY)  # not hidden: never "revealed"
    assert unknown.value.code == "unknown_field"


def test_the_header_keeps_what_the_policy_does_not_hide() -> None:
    record = {"customer_id": 7, "surname": "王", "title": "先生", "given_name": "伟",
              "account": "62220001", "address": "1 Road", "id_tail": "1234",
              "numbers": ["13700000042"], "has_pin": True}
    assert identity.header(record, POLICY) == {
        "customer_id": 7, "surname": "王", "title": "先生", "given_name": "伟",
        "numbers": ["13700000042"], "has_pin": True}
    strict = parse_policy({"identity": {"personal_fields": ["account", "address", "id_tail",
                                                            "given_name", "numbers"]}})
    assert set(identity.header(record, strict)) == {"customer_id", "surname", "title",
                                                    "has_pin"}


@pytest.mark.parametrize("keyed", ["", "*#", "12*4", "123", "123456789", "１２３４", "12 34"])
def test_garbage_is_no_pin(keyed: str) -> None:
    assert not identity.pin_wellformed(keyed, POLICY)
    assert not identity.pin_matches(keyed, identity.hash_pin("1234", POLICY))


def test_pins_are_stored_salted_and_checked_in_constant_time() -> None:
    first, second = identity.hash_pin("582904", POLICY), identity.hash_pin("582904", POLICY)
    assert first != second and "582904" not in first
    assert identity.pin_matches("582904", first) and identity.pin_matches("582904", second)
    assert not identity.pin_matches("582905", first)
    assert not identity.pin_matches("582904", "garbage")
    with pytest.raises(identity.IdentityError):
        identity.hash_pin("12", POLICY)


def test_pin_lengths_must_make_sense() -> None:
    with pytest.raises(Exception, match="pin_min_digits"):
        parse_policy({"identity": {"pin_min_digits": 6, "pin_max_digits": 5}})
