"""Least privilege without Asterisk (issue 15): who may read callflow's files.
tests/integration/test_least_privilege_live.py holds the real Asterisk to the same (the
modes of what it writes)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from callflow.settings import load_settings, private_dir
from callflow.store import repo
from callflow.store.db import open_store


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The usual umask (022): what callflow makes must not depend on a careful one."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_the_state_dir_and_its_secrets_are_the_owners_alone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, open_umask: None) -> None:
    state = tmp_path / "run"
    state.mkdir(mode=0o755)                      # left open by an earlier version
    monkeypatch.setenv("CALLFLOW_STATE_DIR", str(state))
    for name in ("AMI_SECRET", "API_TOKEN"):
        monkeypatch.delenv(f"CALLFLOW_{name}", raising=False)
    settings = load_settings()
    assert mode(settings.state_dir) == 0o700
    assert mode(state / "secrets") == 0o700
    assert {mode(p) for p in (state / "secrets").iterdir()} == {0o600}


def test_private_dir_makes_every_missing_parent_0700(tmp_path: Path, open_umask: None) -> None:
    leaf = private_dir(tmp_path / "recordings" / "2026" / "12" / "07")
    assert [mode(p) for p in (leaf, leaf.parent, leaf.parent.parent, tmp_path / "recordings")
            ] == [0o700] * 4


def test_the_sqlite_database_and_its_wal_are_0600(tmp_path: Path, open_umask: None) -> None:
    old = tmp_path / "old.db"
    old.write_bytes(b"")
    old.chmod(0o644)                              # an earlier run's file
    for path in (tmp_path / "callflow.db", old):
        store = open_store(f"sqlite:///{path}")
        store.run(repo.upsert_call, "1700000000.1", direction="inbound",
                  caller_number="13800000000")
        files = [p for p in tmp_path.iterdir() if p.name.startswith(path.name)]
        assert {p.name.removeprefix(path.name) for p in files} >= {"", "-wal", "-shm"}
        assert {mode(p) for p in files} == {0o600}, [(p.name, oct(mode(p))) for p in files]
        store.engine.dispose()
