"""Which function enforces which service standard (STD-nnn).

The standards ledger (docs/standards.md) is generated from this registry and from the
``std`` marks on tests, never written by hand: a rule is "enforced" only when a function
here names it and a test that exercises that function names it too.  The decorator returns
the function unchanged, so enforcing a rule costs nothing on the call path.

Tracing (tests only): when the environment variable ``CALLFLOW_RULES_TRACE`` is set at
import time, ``enforces`` wraps each function so that a call records the rule ids it
enforces, in ``TRACED`` (this process) and as lines appended to the file the variable
names (engines the tests start as child processes inherit the variable). The test plugin
(callflow.standards.trace_plugin) fails a test marked ``std(X)`` that ran no enforcer of
X. Without the variable nothing is wrapped.
"""

from __future__ import annotations

import functools
import inspect
import os
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

F = TypeVar("F", bound=Callable[..., object])

STD_ID = re.compile(r"^STD-\d{3}$")
TRACE_ENV = "CALLFLOW_RULES_TRACE"


@dataclass(frozen=True, slots=True)
class Enforcer:
    """One function that enforces (or measures) one or more standards."""

    qualname: str
    module: str
    std_ids: tuple[str, ...]
    policy_keys: tuple[str, ...]


ENFORCERS: list[Enforcer] = []

# rule ids whose enforcers ran in this process since the last reset (tracing only)
TRACED: set[str] = set()


def _record(std_ids: tuple[str, ...]) -> None:
    """Note that an enforcer of ``std_ids`` ran: in-process, and in the trace file if named.

    The file is opened per call in append mode: the test plugin truncates it between
    tests, and a child engine that lives across tests must keep writing at its new end.
    """
    TRACED.update(std_ids)
    path = os.environ.get(TRACE_ENV)
    if path:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError:
            return
        try:
            os.write(fd, ("\n".join(std_ids) + "\n").encode())
        finally:
            os.close(fd)


def _traced(func: F, std_ids: tuple[str, ...]) -> F:
    if inspect.iscoroutinefunction(func):
        # an async wrapper, so frameworks that look (FastAPI) still see a coroutine function
        @functools.wraps(func)
        async def async_wrapper(*args: Any, **kwargs: Any) -> object:
            _record(std_ids)
            return await cast(Callable[..., Awaitable[object]], func)(*args, **kwargs)

        return cast(F, async_wrapper)

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> object:
        _record(std_ids)
        return func(*args, **kwargs)

    return cast(F, wrapper)


def enforces(*std_ids: str, policy: tuple[str, ...] = ()) -> Callable[[F], F]:
    """Register the decorated function as enforcing ``std_ids`` with the Policy keys it reads.

    ``policy`` names dotted Policy keys (``"answering.ring_limit_rings"``) so the ledger can
    show, per rule, the numbers that change its behaviour. Decorate plain functions and
    methods (a ``staticmethod``/``classmethod`` goes outside this decorator).
    """
    for std_id in std_ids:
        if not STD_ID.match(std_id):
            raise ValueError(f"not a standard id: {std_id!r}")
    ids = tuple(std_ids)
    trace = bool(os.environ.get(TRACE_ENV))

    def register(func: F) -> F:
        ENFORCERS.append(
            Enforcer(
                qualname=getattr(func, "__qualname__", repr(func)),
                module=getattr(func, "__module__", ""),
                std_ids=ids,
                policy_keys=tuple(policy),
            )
        )
        return _traced(func, ids) if trace else func

    return register
