"""Least privilege without Asterisk (issue 15): who may read callflow's files, and what
the AMI user rendered for the engine may do. tests/integration/test_least_privilege_live.py
holds the same to the real Asterisk (refused actions, its recordings' modes)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from callflow.pbx.render import (
    AMI_HOST,
    AMI_READ,
    AMI_WRITE,
    CONF_DIR,
    AgentEndpoint,
    AmiLogin,
    PbxConfig,
    render,
)
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


def _config(**overrides: object) -> PbxConfig:
    values: dict[str, object] = dict(
        ami_port=15038, ami_username="callflow", ami_secret="s3cret-generated", sip_port=15060,
        rtp_start=16000, rtp_end=16999, agi_host="10.0.0.5", agi_port=15573,
        bind_host="10.0.0.5", caller_match="10.0.0.5",
        agents=[AgentEndpoint("1002", password="generated-pw-1")])
    values.update(overrides)
    return PbxConfig(**values)  # type: ignore[arg-type]


def _sections(text: str) -> dict[str, dict[str, list[str]]]:
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.split(";", 1)[0].strip()
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
        elif "=" in line:
            key, _, value = line.partition("=")
            current.setdefault(key.strip(), []).append(value.strip())
    return sections


def _rendered_manager(tmp_path: Path, cfg: PbxConfig) -> dict[str, dict[str, list[str]]]:
    stock = tmp_path / "stock"
    stock.mkdir()
    (stock / "indications.conf").write_text("[general]\ncountry=us\n\n[cn]\n")
    render(CONF_DIR, tmp_path / "etc", cfg, stock)
    manager = tmp_path / "etc" / "manager.conf"
    assert mode(manager) == 0o600
    return _sections(manager.read_text())


def test_the_engines_ami_user_gets_only_its_classes_on_loopback(tmp_path: Path) -> None:
    """Even with SIP on a LAN address, AMI listens and admits on 127.0.0.1 only."""
    conf = _rendered_manager(tmp_path, _config())
    assert conf["general"]["bindaddr"] == [AMI_HOST]
    assert set(conf) == {"general", "callflow"}
    user = conf["callflow"]
    assert (user["read"], user["write"]) == ([AMI_READ], [AMI_WRITE])
    assert (user["deny"], user["permit"]) == (["0.0.0.0/0.0.0.0"], [f"{AMI_HOST}/255.255.255.255"])
    assert not {"all", "command", "config", "agent", "user", "agi", "dialplan"} & set(
        AMI_READ.split(",") + AMI_WRITE.split(","))


def test_the_observer_login_exists_only_when_a_harness_asks(tmp_path: Path) -> None:
    conf = _rendered_manager(tmp_path, _config(observer=AmiLogin("observer", "another-s3cret")))
    assert (conf["observer"]["read"], conf["observer"]["write"]) == (["all"], ["all"])
    assert conf["callflow"]["write"] == [AMI_WRITE]
