"""Which function enforces which service standard (STD-nnn).

The standards ledger (docs/standards.md) is generated from this registry and from the
``std`` marks on tests, never written by hand: a rule is "enforced" only when a function
here names it and a test that exercises that function names it too.  The decorator returns
the function unchanged, so enforcing a rule costs nothing on the call path.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

F = TypeVar("F", bound=Callable[..., object])

STD_ID = re.compile(r"^STD-\d{3}$")


@dataclass(frozen=True, slots=True)
class Enforcer:
    """One function that enforces (or measures) one or more standards."""

    qualname: str
    module: str
    std_ids: tuple[str, ...]
    policy_keys: tuple[str, ...]


ENFORCERS: list[Enforcer] = []


def enforces(*std_ids: str, policy: tuple[str, ...] = ()) -> Callable[[F], F]:
    """Register the decorated function as enforcing ``std_ids`` with the Policy keys it reads.

    ``policy`` names dotted Policy keys (``"answering.ring_limit_rings"``) so the ledger can
    show, per rule, the numbers that change its behaviour.
    """
    for std_id in std_ids:
        if not STD_ID.match(std_id):
            raise ValueError(f"not a standard id: {std_id!r}")

    def register(func: F) -> F:
        ENFORCERS.append(
            Enforcer(
                qualname=getattr(func, "__qualname__", repr(func)),
                module=getattr(func, "__module__", ""),
                std_ids=tuple(std_ids),
                policy_keys=tuple(policy),
            )
        )
        return func

    return register
