"""The collector's set-up after start-up (callflow/gc_tuning.py) and its settings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from callflow.errors import SettingsError
from callflow.gc_tuning import GcSetup
from callflow.settings import load_settings

PROBE = """
import gc, json
from callflow.gc_tuning import GcSetup, tune_after_startup
before = gc.get_freeze_count()
did = tune_after_startup(GcSetup(freeze={freeze}, gen0={gen0}))
garbage = [[] for _ in range(1000)]   # allocated after start-up: still collectable
print(json.dumps({{"before": before, "did": did, "frozen": gc.get_freeze_count(),
                  "gen0": gc.get_threshold()[0], "young": gc.get_count()[0] > 0}}))
"""


def probe(freeze: bool, gen0: int) -> dict[str, object]:
    # A fresh interpreter: freezing this test process would change every later test.
    out = subprocess.run([sys.executable, "-c", PROBE.format(freeze=freeze, gen0=gen0)],
                         capture_output=True, text=True, check=True).stdout
    result: dict[str, object] = json.loads(out)
    return result


def test_freezing_moves_start_ups_objects_out_of_the_collectors_walk() -> None:
    got = probe(True, 0)
    assert got["before"] == 0
    assert isinstance(got["frozen"], int) and got["frozen"] > 1000
    did = got["did"]
    assert isinstance(did, dict) and did["frozen"] > 1000 and did["gen0_threshold"] == 700
    assert got["young"] is True  # new objects are tracked and collected as before


def test_the_young_threshold_and_no_freeze_are_deployment_choices() -> None:
    got = probe(False, 5000)
    assert got["frozen"] == 0
    assert got["gen0"] == 5000


def test_settings_read_the_gc_setup(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CALLFLOW_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("CALLFLOW_GC_FREEZE", raising=False)
    monkeypatch.delenv("CALLFLOW_GC_GEN0", raising=False)
    assert load_settings().gc == GcSetup(freeze=True, gen0=0)
    monkeypatch.setenv("CALLFLOW_GC_FREEZE", "0")
    monkeypatch.setenv("CALLFLOW_GC_GEN0", "10000")
    assert load_settings().gc == GcSetup(freeze=False, gen0=10000)


@pytest.mark.parametrize(("name", "value", "message"), [
    ("CALLFLOW_GC_FREEZE", "yes", "CALLFLOW_GC_FREEZE must be 1 or 0"),
    ("CALLFLOW_GC_GEN0", "-1", "CALLFLOW_GC_GEN0 must be 0"),
    ("CALLFLOW_GC_GEN0", "many", "CALLFLOW_GC_GEN0 must be an integer"),
])
def test_a_bad_gc_setting_is_one_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                             name: str, value: str, message: str) -> None:
    monkeypatch.setenv("CALLFLOW_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=message):
        load_settings()
