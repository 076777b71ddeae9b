"""``make bench``'s runner (bench/run_all.py): every script's rows in one table, and a
script that does not deliver is a failed row, never a shorter table."""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]


def runner() -> ModuleType:
    spec = importlib.util.spec_from_file_location("run_all", REPO / "bench" / "run_all.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["run_all"] = module
    spec.loader.exec_module(module)
    return module


ROW = {"figure": "x p99", "ours": 1.5, "peer": "bare", "peer_value": 1.0, "ratio": 1.5,
       "unit": "ms", "goal": "<= 1.2x", "pass": False}


def test_every_script_it_runs_is_a_bench_script() -> None:
    names = [p.name for p in runner().scripts(None)]
    assert names and all(n.startswith("bench_") and n.endswith(".py") for n in names)
    assert "run_all.py" not in names


def test_rows_are_checked_and_a_missed_goal_shows_as_fail() -> None:
    run_all = runner()
    script = Path("bench_x.py")
    rows = run_all.checked_rows(script, [ROW, {"figure": "half a row"}])
    assert rows[0]["pass"] is False and "error" not in rows[0]
    assert "error" in rows[1]
    assert run_all.checked_rows(script, [])[0]["error"] == "wrote no rows"
    text = run_all.table(rows)
    assert "| x p99 | 1.5 ms | bare | 1 ms | 1.5 | <= 1.2x | **FAIL** |" in text
    assert "n/a" in text


def test_a_script_that_fails_or_writes_nothing_is_a_failed_row(tmp_path: Path) -> None:
    run_all = runner()
    crash = tmp_path / "bench_crash.py"
    crash.write_text("raise SystemExit(3)\n")
    silent = tmp_path / "bench_silent.py"
    silent.write_text("pass\n")
    good = tmp_path / "bench_good.py"
    rows_text = json.dumps([ROW])
    good.write_text("import sys\n"
                    f"open(sys.argv[sys.argv.index('--json') + 1], 'w').write({rows_text!r})\n")
    assert run_all.run_one(crash, 30)[0][0]["error"] == "exit status 3"
    assert run_all.run_one(silent, 30)[0][0]["error"].startswith("no --json rows")
    rows, _ = run_all.run_one(good, 30)
    assert rows == [{**ROW, "script": "bench_good.py"}]


def test_a_script_past_its_time_is_stopped_with_its_children(tmp_path: Path) -> None:
    run_all = runner()
    marker = tmp_path / "child-still-running"
    slow = tmp_path / "bench_slow.py"
    child = f"import time; time.sleep(3); open({str(marker)!r}, 'w').close()"
    slow.write_text("import subprocess, sys, time\n"
                    f"subprocess.Popen([sys.executable, '-c', {child!r}])\n"
                    "time.sleep(60)\n")
    rows, took = run_all.run_one(slow, 1.0)
    assert rows[0]["error"] == "ran past 1 s"
    assert took < 30
    time.sleep(3.5)
    assert not marker.exists(), "the bench's child outlived it"
