"""``callflow simulate`` from a queue_log file: the day read back (app_queue's format, as
board/queue_log.py writes it), simulated, printed beside the recorded figures; bad
input is one clear line (exit 2)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from callflow.cli import main
from callflow.engine.kpi import Period
from callflow.simulate import day_from_queue_log

T0 = int(datetime(2026, 12, 7, 9, 0, tzinfo=UTC).timestamp())
DAY = "2026-12-07"


def queue_log() -> str:
    """Two agents; three calls: answered at once, answered after a ring-no-answer, and
    an abandon."""
    lines = [
        f"{T0 - 60}|NONE|main|Agent/1001|ADDMEMBER|",
        f"{T0 - 60}|NONE|main|Agent/1002|ADDMEMBER|",
        f"{T0}|c1|main|NONE|ENTERQUEUE||13800000001|1",
        f"{T0 + 2}|c1|main|Agent/1001|CONNECT|2||2",
        f"{T0 + 5}|c2|main|NONE|ENTERQUEUE||13800000002|1",
        f"{T0 + 20}|c2|main|Agent/1002|RINGNOANSWER|15000",
        f"{T0 + 20}|NONE|main|Agent/1002|PAUSE|ring_no_answer",
        f"{T0 + 60}|c1|main|Agent/1001|COMPLETECALLER|2|58|1",
        f"{T0 + 63}|c2|main|Agent/1001|CONNECT|58||1",
        f"{T0 + 70}|c3|main|NONE|ENTERQUEUE||13800000003|1",
        f"{T0 + 80}|c3|main|NONE|ABANDON|1|1|10",
        f"{T0 + 90}|NONE|main|Agent/1002|UNPAUSE|",
        f"{T0 + 120}|c2|main|Agent/1001|COMPLETEAGENT|58|57|1",
        f"{T0 + 3600}|NONE|main|Agent/1001|REMOVEMEMBER|",
        f"{T0 + 3600}|NONE|main|Agent/1002|REMOVEMEMBER|",
        f"{T0 + 3600}|NONE|NONE|NONE|QUEUESTART|",  # other events are skipped
    ]
    return "\n".join(lines) + "\n"


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CALLFLOW_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("CALLFLOW_DATABASE_URL", raising=False)
    monkeypatch.delenv("CALLFLOW_POLICY_FILE", raising=False)
    monkeypatch.setenv("CALLFLOW_API_TOKEN", "deployment-token-0123456789")
    return tmp_path


def test_a_queue_log_becomes_the_days_calls_and_agent_states() -> None:
    start = datetime(2026, 12, 7, tzinfo=UTC)
    day = day_from_queue_log(queue_log(), Period(start, start.replace(day=8)))
    calls = {c.uniqueid: c for c in day.calls}
    assert [calls[c].outcome for c in ("c1", "c2", "c3")] == ["answered", "answered",
                                                             "abandoned"]
    assert [(o.agent_id, o.result) for o in calls["c2"].offers] == [("1002", "no_answer"),
                                                                   ("1001", "answered")]
    assert (calls["c2"].offers[0].ended_at - calls["c2"].offers[0].started_at).seconds == 15
    states = sorted((s.agent_id, s.state, s.reason) for s in day.spans)
    assert ("1002", "not_ready", "ring_no_answer") in states
    assert day.queues_of == {"1001": ("main",), "1002": ("main",)}


def test_simulate_prints_predicted_beside_recorded(state: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    log = state / "queue_log"
    log.write_text(queue_log())
    assert main(["simulate", "--queue-log", str(log), "--date", DAY, "--runs", "2"]) == 0
    out = capsys.readouterr().out
    assert "service level" in out and "predicted" in out and "recorded" in out
    assert main(["simulate", "--queue-log", str(log), "--date", DAY, "--agents", "1",
                 "--json", "--seed", "3", "--runs", "1"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["recorded"]["offered"] == 3 and report["predicted"]["offered"] == 3
    assert report["agents"] == 1 and report["seed"] == 3 and report["runs"] == 1


def test_bad_input_is_one_line_naming_it(state: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    log = state / "queue_log"
    log.write_text(queue_log() + "not a line\n")
    staffing = state / "staffing.toml"
    staffing.write_text("[agents]\n25 = 3\n")
    cases = [
        (["--queue-log", str(log), "--date", DAY], "line 17"),
        (["--queue-log", str(state / "missing"), "--date", DAY], "cannot read"),
        (["--date", "07/12/2026"], "YYYY-MM-DD"),
        (["--queue-log", str(log), "--staffing", str(staffing)], "hour must be 0-23"),
    ]
    for argv, says in cases:
        assert main(["simulate", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("callflow: ") and "\n" not in err and says in err, err


def test_a_day_from_the_store_with_no_calls_says_so(state: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """The default source is the deployment's database (migrated on first use)."""
    assert main(["simulate", "--date", DAY, "--agents", "3", "--runs", "1"]) == 0
    out = capsys.readouterr().out
    assert "(store): 0 calls, 3 agents" in out
    assert "service level" in out
