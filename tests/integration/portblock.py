"""The block of ports a test process uses: ``CALLFLOW_TEST_PORT_BASE`` (default 20000),
plus 3000 per pytest-xdist worker, so parallel workers (``pytest -n``) each run their own
Asterisk, SIPp phones and service without colliding (``Ports.from_base`` keeps a whole
port set inside [base, base + 3000))."""

from __future__ import annotations

import os

import pytest

BLOCK = 3000


def port_base() -> int:
    raw = os.environ.get("CALLFLOW_TEST_PORT_BASE", "20000")
    try:
        base = int(raw)
    except ValueError:
        raise pytest.UsageError(
            f"CALLFLOW_TEST_PORT_BASE must be an integer, got {raw!r}") from None
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker.removeprefix("gw")) if worker.removeprefix("gw").isdigit() else 0
    return base + BLOCK * index
