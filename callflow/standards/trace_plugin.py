"""Pytest plugin: a test marked ``std("STD-nnn")`` must run an enforcer of that rule.

Loaded with ``-p callflow.standards.trace_plugin`` (pyproject ``addopts``), so it is
imported before any conftest imports product code: it sets ``CALLFLOW_RULES_TRACE`` first,
which makes ``callflow.engine.rules.enforces`` wrap every enforcer to record the ids it
ran for. Each test starts with an empty record (the in-process set and the trace file that
engines started as child processes append to) and, when it passed, fails if a rule it is
marked with was never exercised, naming the rules and their enforcers.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# before callflow.engine.rules (and every module that decorates with it) is imported; each
# pytest process (xdist worker too) imports this module itself, so each has its own file
_TRACE_DIR = Path(tempfile.mkdtemp(prefix="callflow-rules-trace-"))
_TRACE_FILE = _TRACE_DIR / "rules.trace"
os.environ["CALLFLOW_RULES_TRACE"] = str(_TRACE_FILE)

from callflow.engine import rules  # noqa: E402  (must follow the variable above)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove this process's trace directory."""
    shutil.rmtree(_TRACE_DIR, ignore_errors=True)


def _reset() -> None:
    rules.TRACED.clear()
    _TRACE_FILE.write_text("")


def _exercised() -> set[str]:
    seen = set(rules.TRACED)
    with contextlib.suppress(FileNotFoundError):
        seen.update(line for line in _TRACE_FILE.read_text().split() if line)
    return seen


def marked_rules(item: pytest.Item) -> set[str]:
    """The STD ids a test is marked with (function, class and module marks)."""
    return {str(arg) for mark in item.iter_markers("std") for arg in mark.args}


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    """Start each test (its fixtures included) with an empty record."""
    _reset()
    return (yield)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """After a passing test marked std(...), fail it if a marked rule was not exercised."""
    result = yield
    wanted = marked_rules(item)
    if not wanted:
        return result
    missing = sorted(wanted - _exercised())
    if missing:
        by_rule = {std: [f"{e.module}.{e.qualname}" for e in rules.ENFORCERS
                         if std in e.std_ids] for std in missing}
        detail = "; ".join(f"{std}: {', '.join(names) or 'no enforcer registered'}"
                           for std, names in by_rule.items())
        pytest.fail(f"marked std({', '.join(missing)}) but ran no enforcer of it ({detail})",
                    pytrace=False)
    return result
