"""The ``callflow`` command's ``user`` and ``db``: every error one line that names the
problem (exit 2), never a traceback or a raw constraint error; a password reset ends the
login's sessions."""

from __future__ import annotations

from pathlib import Path

import pytest
from logins import session_token

from callflow.api.accounts import Logins
from callflow.cli import main
from callflow.engine.clock import RealClock
from callflow.engine.policy import Policy
from callflow.store.db import open_store

TOKEN = "deployment-token-0123456789"


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CALLFLOW_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("CALLFLOW_DATABASE_URL", raising=False)
    monkeypatch.setenv("CALLFLOW_API_TOKEN", TOKEN)
    return tmp_path


def refused(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(list(argv)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("callflow: ") and "\n" not in err and "Traceback" not in err, err
    return err


def test_an_agent_login_for_an_agent_not_in_the_roster_says_so(
        state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = refused(capsys, "user", "9999", "--role", "agent", "--agent", "9999")
    assert err == (f"callflow: agent 9999 is not in the roster {state / 'agents.toml'} "
                   "(work numbers: 1001, 1002, 1003, 1004); add them there first")


@pytest.mark.parametrize(("argv", "words"), [
    (["user", "ana", "--role", "boss"],
     "role 'boss': use one of agent, supervisor, qa, admin, shift_lead, department_manager"),
    (["user", "1001", "--role", "agent"], "an agent login needs --agent WORK_NUMBER"),
    (["user", "ana", "--agent", "1001"], "--agent is for agent logins only, not supervisor"),
    (["user", "an a"], "username 'an a': 1-64 characters, no spaces or control characters"),
    (["user", "x" * 65], "1-64 characters"),
    (["user", "ana", "--password", "short"], "a password needs at least 8 characters"),
    (["user", "ana", "--team", "red"], "--team (1-64 characters) is for shift_lead logins"),
    (["user", "ana", "--role", "shift_lead", "--team", ""], "--team (1-64 characters)"),
])
def test_bad_user_arguments_are_named(state: Path, capsys: pytest.CaptureFixture[str],
                                      argv: list[str], words: str) -> None:
    assert words in refused(capsys, *argv)


def test_a_login_is_made_and_a_reset_ends_its_sessions(
        state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["user", "1001", "--role", "agent", "--agent", "1001",
                 "--password", "first password"]) == 0
    assert capsys.readouterr().out.endswith("login 1001 (agent) password: first password\n")
    store = open_store(f"sqlite:///{state / 'callflow.db'}")
    try:
        logins = Logins(store, Policy.defaults().security, RealClock(), TOKEN)
        token = session_token(store, logins, "1001", "agent", "1001")
        assert logins.auth.authenticate(token) is not None
        assert main(["user", "1001", "--role", "agent", "--agent", "1001"]) == 0
        out = capsys.readouterr().out
        assert out.startswith("login 1001 (agent) password: ")
        assert out.endswith("ended 1 session(s) of 1001\n")
        assert logins.auth.authenticate(token) is None
    finally:
        store.close()


@pytest.mark.std("STD-148")
def test_shift_lead_and_department_manager_logins_with_generated_passwords(
        state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["user", "lead", "--role", "shift_lead", "--team", "red"]) == 0
    assert main(["user", "boss", "--role", "department_manager"]) == 0
    out = [line for line in capsys.readouterr().out.splitlines() if line.startswith("login ")]
    assert [line.split(" password: ")[0] for line in out] == [
        "login lead (shift_lead)", "login boss (department_manager)"]
    assert all(len(line.split(" password: ")[1]) >= 12 for line in out)  # generated
    store = open_store(f"sqlite:///{state / 'callflow.db'}")
    try:
        logins = Logins(store, Policy.defaults().security, RealClock(), TOKEN)
        lead = logins.auth.authenticate(session_token(store, logins, "lead", "shift_lead"))
        assert lead is not None and (lead.role, lead.team) == ("shift_lead", "red")
        assert lead.may_see("board") and lead.may_see("user:lead")
        assert not lead.may_see("agent:1001")
    finally:
        store.close()


@pytest.mark.parametrize(("url", "words"), [
    ("mysql://db/callflow", "unsupported database 'mysql'"),
    ("not a url", "invalid database URL 'not a url'"),
    ("postgresql://callflow:hunter2@127.0.0.1:1/callflow",
     "database postgresql://***@127.0.0.1:1/callflow: migrating the database to head failed"),
    ("sqlite:////proc/no-such-dir/callflow.db",
     "cannot create the SQLite database /proc/no-such-dir/callflow.db (No such file"),
])
def test_database_errors_are_one_line_without_the_password(
        state: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        url: str, words: str) -> None:
    monkeypatch.setenv("CALLFLOW_DATABASE_URL", url)
    err = refused(capsys, "db")
    assert words in err and "hunter2" not in err


def test_db_migrates_and_says_where(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db"]) == 0
    assert capsys.readouterr().out == f"database at head: sqlite:///{state / 'callflow.db'}\n"
