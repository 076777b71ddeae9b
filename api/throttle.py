"""Login throttling: backoff, then lockout, per username and per client address.

A guesser must not get more than a few tries an hour, and a person who mistypes once
must not notice anything. Each username (known or not: refusing only known ones would
tell which exist) and each client address keeps a count of failures in a row; past the
free ones every further try waits a doubling backoff, and enough of them lock the key
for a while. A try that comes too early is refused before the password is checked, so
it costs the server nothing and the guesser a try. The address count is not reset by
a success, else one valid account would reset it between guesses at others.

Pure and in memory, with the time handed in: the API is one process, a restart (only
an operator can cause one) forgets the counts, and a test drives it with numbers. The
number of keys is bounded: the oldest records go first, so a flood of made-up names
costs memory once, not forever.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

from callflow.engine.policy import SecurityPolicy
from callflow.engine.rules import enforces

#: Records kept at most (usernames and addresses together): a few MB.
MAX_TRACKED = 50_000

Why = Literal["throttled", "locked"]


@dataclass(frozen=True)
class Refusal:
    """A try refused before its password is checked; ``retry_after_s`` says when to retry."""

    why: Why
    retry_after_s: float


@dataclass(frozen=True)
class Lockout:
    """A key that became locked by this failure (``user:<name>`` or ``address:<ip>``)."""

    key: str
    failures: int
    until_s: float


@dataclass
class _Record:
    failures: int = 0
    last_failure: float = 0.0
    next_try: float = 0.0
    locked_until: float = 0.0


@dataclass(frozen=True)
class _Limits:
    free: int
    lockout: int


class LoginThrottle:
    """Counts failed logins; thread-safe (logins run in the server's worker threads)."""

    def __init__(self, rules: SecurityPolicy, max_tracked: int = MAX_TRACKED) -> None:
        self._rules = rules
        self._max = max_tracked
        self._records: OrderedDict[str, _Record] = OrderedDict()
        self._lock = threading.Lock()
        self._limits = {"user": _Limits(rules.user_free_failures, rules.user_lockout_failures),
                        "address": _Limits(rules.address_free_failures,
                                           rules.address_lockout_failures)}

    def check(self, username: str, address: str, now: float) -> Refusal | None:
        """Refuse a try for this username from this address now, or None to go ahead."""
        refusals: list[Refusal] = []
        with self._lock:
            for key in _keys(username, address):
                record = self._records.get(key)
                if record is None:
                    continue
                if record.locked_until > now:
                    refusals.append(Refusal("locked", record.locked_until - now))
                elif record.next_try > now:
                    refusals.append(Refusal("throttled", record.next_try - now))
        if not refusals:
            return None
        return max(refusals, key=lambda r: (r.why == "locked", r.retry_after_s))

    @enforces("STD-078", policy=(
        "security.user_free_failures", "security.address_free_failures", "security.backoff_s",
        "security.backoff_max_s", "security.user_lockout_failures",
        "security.address_lockout_failures", "security.lockout_min",
        "security.failure_window_min"))
    def failed(self, username: str, address: str, now: float) -> list[Lockout]:
        """Count a wrong password; the keys it locked (for the audit log)."""
        locked: list[Lockout] = []
        with self._lock:
            for key in _keys(username, address):
                lockout = self._fail(key, self._limits[key.split(":", 1)[0]], now)
                if lockout is not None:
                    locked.append(lockout)
        return locked

    def succeeded(self, username: str) -> None:
        """The right password: the username starts afresh (its address does not)."""
        with self._lock:
            self._records.pop(_user_key(username), None)

    def _fail(self, key: str, limits: _Limits, now: float) -> Lockout | None:
        rules = self._rules
        record = self._records.pop(key, None) or _Record()
        self._records[key] = record  # most recent last: eviction takes the oldest first
        while len(self._records) > self._max:
            self._records.popitem(last=False)
        if now - record.last_failure > rules.failure_window_min * 60:
            record.failures = 0
        record.failures += 1
        record.last_failure = now
        if record.failures >= limits.lockout:
            record.locked_until = now + rules.lockout_min * 60
            failures, record.failures, record.next_try = record.failures, 0, 0.0
            return Lockout(key, failures, record.locked_until)
        beyond = record.failures - limits.free
        if beyond > 0:
            # the exponent is capped so a Policy with a huge lockout count cannot overflow
            wait = rules.backoff_s * 2.0 ** min(beyond - 1, 64)
            record.next_try = now + min(wait, rules.backoff_max_s)
        return None


def _user_key(username: str) -> str:
    return f"user:{username}"


def _keys(username: str, address: str) -> tuple[str, str]:
    return _user_key(username), f"address:{address}"
