"""The identity gate (STD-077, STD-078): when a caller counts as verified, and what an
agent may see before and after.

Pure rules, no I/O: the inbound flow (dialplan/inbound.py) feeds PIN entries into
``pin_entered``, the desktop's "verified by questions" into ``questions_verified``, and
the reveal of personal fields asks ``reveal``. The status of a call is one of
``UNVERIFIED``, ``VERIFIED_PIN``, ``VERIFIED_QUESTIONS``, ``FAILED``; every feature that
shows a call (the case frame of a transfer, the desktop panel) reads it from here.

PINs are kept only as salted scrypt hashes (``hash_pin``, ``pin_matches``): the same
construction and cost as login passwords (api/passwords.py), with a PIN's own length
rules; the digits themselves go nowhere but into the comparison.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, replace

from callflow.engine.policy import Policy
from callflow.engine.rules import enforces
from callflow.errors import CallflowError

UNVERIFIED = "unverified"
VERIFIED_PIN = "verified:pin"
VERIFIED_QUESTIONS = "verified:questions"
FAILED = "failed"
STATUSES = (UNVERIFIED, VERIFIED_PIN, VERIFIED_QUESTIONS, FAILED)

#: Customer record fields that are never personal: the header the agent addresses the
#: caller by (STD-020 address forms read ``surname`` and ``title``).
HEADER_FIELDS = ("surname", "title")
#: Every personal field a customer record can hold (Policy ``identity.personal_fields``
#: chooses which are hidden until verification).
PERSONAL_FIELDS = ("account", "address", "id_tail", "given_name", "numbers")

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
_DIGITS = re.compile(r"[0-9]+")


class IdentityError(CallflowError):
    """A request the identity gate refuses; ``code`` is the error body's code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class IdentityCheck:
    """One call's identity check so far. ``by`` is who verified (``ivr`` for the PIN,
    else the agent's login); ``at`` is epoch seconds of the last change."""

    call_id: str
    status: str = UNVERIFIED
    pin_attempts: int = 0
    by: str = ""
    at: float = 0.0

    @property
    def verified(self) -> bool:
        return self.status in (VERIFIED_PIN, VERIFIED_QUESTIONS)

    def as_record(self) -> dict[str, object]:
        """What the desktop and the event log are told (never a digit of a PIN)."""
        return {"call_id": self.call_id, "status": self.status,
                "pin_attempts": self.pin_attempts, "by": self.by, "at": self.at}


# --- PIN: shape and hash ------------------------------------------------------------------


def pin_wellformed(digits: str, policy: Policy) -> bool:
    """Only digits, within the Policy's lengths: ``*``, ``#``, silence and overlong entries
    are wrong entries (counted like a wrong PIN, never compared)."""
    rules = policy.identity
    return bool(_DIGITS.fullmatch(digits)) and \
        rules.pin_min_digits <= len(digits) <= rules.pin_max_digits


def hash_pin(digits: str, policy: Policy) -> str:
    """A salted scrypt hash of a PIN; ``IdentityError`` for a PIN the Policy refuses."""
    if not pin_wellformed(digits, policy):
        rules = policy.identity
        raise IdentityError("bad_pin", f"a PIN is {rules.pin_min_digits}-"
                                       f"{rules.pin_max_digits} digits")
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(digits.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def pin_matches(digits: str, stored: str) -> bool:
    """Constant-time comparison of a keyed PIN with its stored hash (False if malformed)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt" or not _DIGITS.fullmatch(digits):
            return False
        got = hashlib.scrypt(digits.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r),
                             p=int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got.hex(), digest)


# --- the rules ---------------------------------------------------------------------------


def pin_offered(policy: Policy, has_pin: bool) -> bool:
    """Whether the IVR asks this caller for a PIN before routing."""
    rules = policy.identity
    return has_pin and rules.pin_in_ivr and rules.method in ("pin", "either")


@enforces("STD-077", policy=("identity.method", "identity.pin_attempts"))
def pin_ask_refusal(check: IdentityCheck, policy: Policy, *, on_call: bool, has_pin: bool,
                    asking: bool) -> IdentityError | None:
    """Why the agent may not send the caller to the PIN step now (mid-call, on the
    desktop's request), or None. Only a caller in conversation with this agent, a known
    customer with a PIN on record, not verified yet, with PIN entries left on the call
    (the ones keyed before routing count), and one request at a time."""
    if not on_call:
        return IdentityError("not_on_call", "the PIN step needs a caller in conversation "
                                            "with you (after the opening)")
    if policy.identity.method == "questions":
        return IdentityError("method_not_allowed", "PIN checks are off (identity.method)")
    if not has_pin:
        return IdentityError("no_pin", "the caller's number is no known customer's with a "
                                       "PIN on record")
    if check.verified:
        return IdentityError("already_verified", f"the caller is already {check.status}")
    if not pin_retry(check, policy):
        return IdentityError("attempts_exhausted",
                             f"no PIN entries left on this call ({check.pin_attempts} of "
                             f"{policy.identity.pin_attempts} used)")
    if asking:
        return IdentityError("pin_pending", "the caller is already being asked for the PIN")
    return None


@enforces("STD-077", policy=("identity.pin_attempts", "identity.method"))
def pin_entered(check: IdentityCheck, matched: bool, policy: Policy,
                at: float) -> IdentityCheck:
    """One PIN entry heard: right -> verified by PIN; wrong -> one attempt more, and at
    the Policy's limit the call is ``FAILED`` (the agent may still verify by questions
    when the method allows it). Entries after the outcome change nothing."""
    if check.status != UNVERIFIED:
        return check
    if policy.identity.method == "questions":
        raise IdentityError("method_not_allowed", "PIN checks are off (identity.method)")
    if matched:
        return replace(check, status=VERIFIED_PIN, pin_attempts=check.pin_attempts + 1,
                       by="ivr", at=at)
    attempts = check.pin_attempts + 1
    status = FAILED if attempts >= policy.identity.pin_attempts else UNVERIFIED
    return replace(check, status=status, pin_attempts=attempts, at=at)


def pin_retry(check: IdentityCheck, policy: Policy) -> bool:
    """Whether the caller gets another PIN entry."""
    return check.status == UNVERIFIED and check.pin_attempts < policy.identity.pin_attempts


@enforces("STD-077", policy=("identity.method",))
def questions_verified(check: IdentityCheck, policy: Policy, by: str,
                       at: float) -> IdentityCheck:
    """The agent asked the business's questions and marks the caller verified. Refused when
    the Policy wants the PIN only; a call already verified keeps its first method."""
    if policy.identity.method == "pin":
        raise IdentityError("method_not_allowed",
                            "this centre verifies callers by PIN only (identity.method)")
    if check.verified:
        return check
    return replace(check, status=VERIFIED_QUESTIONS, by=by, at=at)


def hidden_fields(policy: Policy) -> tuple[str, ...]:
    return tuple(f for f in PERSONAL_FIELDS if f in policy.identity.personal_fields)


@enforces("STD-077", "STD-078", policy=("identity.personal_fields",))
def reveal(check: IdentityCheck, wanted: Iterable[str], policy: Policy) -> tuple[str, ...]:
    """The personal fields an agent may now see, of those ``wanted`` (all hidden ones if
    none named); ``IdentityError`` before verification or for an unknown field."""
    hidden = hidden_fields(policy)
    asked = tuple(dict.fromkeys(wanted)) or hidden
    unknown = [f for f in asked if f not in hidden]
    if unknown:
        raise IdentityError("unknown_field", f"not a hidden customer field: {unknown[0][:32]!r}")
    if not check.verified:
        raise IdentityError("not_verified",
                            f"the caller is {check.status}: personal data stays hidden "
                            "until the caller is verified")
    return asked


def header(record: dict[str, object], policy: Policy) -> dict[str, object]:
    """The part of a customer record every desktop gets at once: what is not hidden."""
    hidden = set(hidden_fields(policy))
    return {k: v for k, v in record.items() if k not in hidden and k != "pin_hash"}
