"""Login throttling: every number of the Policy's ``security`` section that the throttle
reads changes what it answers (times are plain seconds handed in)."""

from __future__ import annotations

from typing import Any

import pytest

from callflow.api.throttle import Lockout, LoginThrottle, Refusal
from callflow.engine.policy import SecurityPolicy, parse_policy

IP = "192.0.2.7"


def throttle(**rules: Any) -> LoginThrottle:
    return LoginThrottle(SecurityPolicy(**rules))


def fail(t: LoginThrottle, times: int, user: str = "ana", address: str = IP,
         at: float = 0.0) -> list[Lockout]:
    locked: list[Lockout] = []
    for _ in range(times):
        locked += t.failed(user, address, at)
    return locked


def test_the_security_section_is_in_the_policy_and_validated() -> None:
    policy = parse_policy({"security": {"user_free_failures": 5}})
    assert policy.security.user_free_failures == 5
    with pytest.raises(Exception, match="backoff_max_s"):
        parse_policy({"security": {"backoff_s": 10.0, "backoff_max_s": 5.0}})


def test_free_failures_for_a_username_are_answered_at_once() -> None:
    t = throttle(user_free_failures=3, backoff_s=2.0)
    fail(t, 3)
    assert t.check("ana", IP, 0.0) is None  # a person who mistypes notices nothing
    fail(t, 1)
    assert t.check("ana", IP, 0.0) == Refusal("throttled", 2.0)
    assert t.check("ana", IP, 2.0) is None
    assert throttle(user_free_failures=0, backoff_s=2.0).failed("bo", IP, 0.0) == []
    zero = throttle(user_free_failures=0, backoff_s=2.0)
    fail(zero, 1, "bo")
    assert zero.check("bo", IP, 1.0) == Refusal("throttled", 1.0)


def test_the_backoff_doubles_up_to_its_most() -> None:
    t = throttle(user_free_failures=0, backoff_s=1.0, backoff_max_s=5.0,
                 user_lockout_failures=100, address_lockout_failures=100,
                 address_free_failures=100)
    waits = []
    for _ in range(5):
        fail(t, 1)
        refusal = t.check("ana", IP, 0.0)
        assert refusal is not None
        waits.append(refusal.retry_after_s)
    assert waits == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_a_huge_lockout_count_cannot_overflow_the_backoff() -> None:
    t = throttle(user_free_failures=0, backoff_max_s=60.0, user_lockout_failures=5000,
                 address_free_failures=5000, address_lockout_failures=5000)
    fail(t, 2000)
    assert t.check("ana", IP, 0.0) == Refusal("throttled", 60.0)


def test_enough_failures_lock_the_username_for_the_lockout_time() -> None:
    t = throttle(user_lockout_failures=4, lockout_min=10)
    locked = fail(t, 4)
    assert locked == [Lockout("user:ana", 4, 600.0)]
    assert t.check("ana", IP, 599.0) == Refusal("locked", 1.0)
    assert t.check("ana", "198.51.100.1", 300.0) == Refusal("locked", 300.0)  # any address
    assert t.check("ana", IP, 600.0) is None
    assert t.check("bob", "198.51.100.1", 1.0) is None  # others are not touched


def test_an_unknown_username_is_throttled_and_locked_like_a_known_one() -> None:
    # the throttle never asks whether a name exists: refusals tell nobody which do
    t = throttle(user_lockout_failures=3)
    assert fail(t, 3, user="no-such-user") == [Lockout("user:no-such-user", 3, 900.0)]
    assert t.check("no-such-user", IP, 1.0) == Refusal("locked", 899.0)


def test_an_address_guessing_many_names_is_throttled_then_locked() -> None:
    t = throttle(address_free_failures=4, address_lockout_failures=6, backoff_s=3.0,
                 lockout_min=1)
    for i in range(4):
        fail(t, 1, user=f"name{i}")
    assert t.check("someone-else", IP, 0.0) is None
    fail(t, 1, user="name4")
    assert t.check("someone-else", IP, 0.0) == Refusal("throttled", 3.0)
    assert t.check("someone-else", "198.51.100.1", 0.0) is None  # another address is free
    assert fail(t, 1, user="name5") == [Lockout(f"address:{IP}", 6, 60.0)]
    assert t.check("anyone", IP, 59.0) == Refusal("locked", 1.0)


def test_a_quiet_window_forgives_earlier_failures() -> None:
    t = throttle(user_free_failures=2, failure_window_min=10)
    fail(t, 2, at=0.0)
    fail(t, 1, at=601.0)  # the first two are forgotten: this is the first of a new run
    assert t.check("ana", IP, 601.0) is None
    short = throttle(user_free_failures=2, failure_window_min=20)
    fail(short, 2, at=0.0)
    fail(short, 1, at=601.0)
    assert short.check("ana", IP, 601.0) == Refusal("throttled", 1.0)


def test_success_clears_the_username_not_the_address() -> None:
    t = throttle(user_free_failures=1, address_free_failures=2, backoff_s=5.0)
    fail(t, 2, user="ana")
    t.succeeded("ana")
    assert t.check("ana", "198.51.100.1", 0.0) is None
    # one valid account must not reset the address between guesses at others
    assert t.check("bob", IP, 0.0) is None
    fail(t, 1, user="bob")
    assert t.check("carl", IP, 0.0) == Refusal("throttled", 5.0)


def test_a_lock_wins_over_a_backoff_and_the_longer_wait_is_told() -> None:
    t = throttle(user_lockout_failures=2, address_free_failures=0, backoff_s=1.0,
                 lockout_min=1)
    fail(t, 2)
    refusal = t.check("ana", IP, 0.0)
    assert refusal is not None and refusal.why == "locked" and refusal.retry_after_s == 60.0


def test_the_records_are_bounded() -> None:
    t = LoginThrottle(SecurityPolicy(user_free_failures=0), max_tracked=10)
    for i in range(100):
        t.failed(f"name{i}", f"10.0.0.{i}", 0.0)
    assert t.check("name0", "10.0.0.0", 0.5) is None  # the oldest were let go
    assert t.check("name99", "10.0.0.99", 0.5) is not None
