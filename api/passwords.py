"""Password hashes: scrypt with a per-password salt, and one fixed cost per check.

A login for a username that does not exist is checked against ``dummy_hash()``, a
hash of the same scrypt cost made once per process, so a wrong password costs the
same time whether the name exists or not (before, an unknown name cost a hash *and*
a check: twice the time, which told which usernames exist).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets

from callflow.errors import CallflowError

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
MIN_PASSWORD_LENGTH = 8


class PasswordError(CallflowError):
    """A password the deployment does not accept (too short)."""


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PasswordError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(_bytes(password), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(_bytes(password), salt=bytes.fromhex(salt), n=int(n), r=int(r),
                             p=int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got.hex(), digest)


def _bytes(password: str) -> bytes:
    # JSON may carry lone surrogates ("\ud800"): they hash like any other character
    return password.encode("utf-8", "surrogatepass")


@functools.cache
def dummy_hash() -> str:
    """A hash nobody knows the password of, at the cost every real hash has."""
    return hash_password(secrets.token_urlsafe(16))
