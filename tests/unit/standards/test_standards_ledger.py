"""The standards ledger: generated, fresh, honest (issue 17).

docs/standards.md and README.md's counts block must equal a fresh generation; every Policy
key must be read by some code; a test marked std(X) must run an enforcer of X (the trace
plugin, checked here by running pytest on small test files).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from callflow.engine import rules
from callflow.standards import ledger, policy_reads
from callflow.standards.__main__ import main

REPO = Path(__file__).resolve().parents[3]


def test_catalogue_holds_the_149_rules_in_15_groups() -> None:
    groups, catalogue = ledger.load_catalogue()
    assert [r.std for r in catalogue] == [f"STD-{n:03d}" for n in range(1, 150)]
    assert sorted(groups) == list(range(1, 16))
    assert {r.group for r in catalogue} == set(groups)
    # groups are contiguous runs, as in the standards
    assert [r.group for r in catalogue] == sorted(r.group for r in catalogue)
    assert all(r.title for r in catalogue)


def test_ledger_and_readme_counts_are_fresh() -> None:
    """Never edited by hand: regenerate with ``python -m callflow.standards ledger``."""
    built = ledger.build(REPO)
    assert (REPO / "docs/standards.md").read_text("utf-8") == ledger.render(REPO, built), (
        "docs/standards.md is stale: python -m callflow.standards ledger")
    readme = (REPO / "README.md").read_text("utf-8")
    assert ledger.replace_readme_block(readme, ledger.readme_block(REPO, built)) == readme, (
        "README.md's ledger counts are stale: python -m callflow.standards ledger")


def test_ledger_command_checks_and_refuses_a_wrong_root(tmp_path: Path) -> None:
    assert main(["ledger", "--check", "--root", str(tmp_path)]) == 2


def test_readme_without_the_counts_block_is_an_error() -> None:
    with pytest.raises(ValueError, match="ledger-counts"):
        ledger.replace_readme_block("# callflow\n", "block")


def test_status_never_claims_more_than_is_built() -> None:
    rule = ledger.Rule("STD-040", 4, "hold limit")
    enforcer = rules.Enforcer("hold_limit", "callflow.engine.hold", ("STD-040",), ())
    live = ledger.TaggedTest("tests/integration/test_hold_live.py::test_x", ("STD-040",), "live")
    unit = ledger.TaggedTest("tests/unit/engine/test_hold.py::test_x", ("STD-040",), "unit")
    assert ledger.Entry(rule).status == ledger.ABSENT
    assert ledger.Entry(rule, policy_keys=["hold.limit_s"]).status == ledger.POLICY_ONLY
    assert ledger.Entry(rule, [enforcer]).status == ledger.PARTIAL
    assert ledger.Entry(rule, [enforcer], tests=[unit]).status == ledger.UNIT
    assert ledger.Entry(rule, [enforcer], tests=[unit, live]).status == ledger.LIVE
    gap = ledger.Rule("STD-040", 4, "hold limit", gap="per call (C-5) not built")
    assert ledger.Entry(gap, [enforcer], tests=[live]).status == ledger.PARTIAL
    out = ledger.Rule("STD-010", 2, "attention", out_reason="QA")
    assert ledger.Entry(out).status == ledger.OUT


def test_marks_are_read_from_functions_classes_and_modules(tmp_path: Path) -> None:
    source = tmp_path / "test_sample.py"
    source.write_text(textwrap.dedent('''
        import pytest
        pytestmark = [pytest.mark.browser, pytest.mark.std("STD-001")]

        @pytest.mark.std("STD-008", "STD-009")
        def test_ring() -> None: ...

        def test_plain() -> None: ...

        @pytest.mark.std("STD-040")
        class TestHold:
            @pytest.mark.std("STD-041")
            async def test_reminder(self) -> None: ...

        def helper() -> None: ...
    '''))
    found = ledger.scan_test_file(source, "tests/integration/test_sample.py")
    assert [(t.nodeid, t.std_ids, t.kind) for t in found] == [
        ("tests/integration/test_sample.py::test_ring", ("STD-001", "STD-008", "STD-009"),
         "browser"),
        ("tests/integration/test_sample.py::test_plain", ("STD-001",), "browser"),
        ("tests/integration/test_sample.py::TestHold::test_reminder",
         ("STD-001", "STD-040", "STD-041"), "browser"),
    ]
    source.write_text("import pytest\n@pytest.mark.std('STD-008')\ndef test_x(): ...\n")
    assert ledger.scan_test_file(source, "tests/integration/t.py")[0].kind == "live"
    assert ledger.scan_test_file(source, "tests/unit/t.py")[0].kind == "unit"


# --- every Policy key is read by some code -------------------------------------------

def test_policy_reads_follow_aliases_helpers_and_generic_reads(tmp_path: Path) -> None:
    code = tmp_path / "engine"
    code.mkdir()
    (tmp_path / "engine/policy.py").write_text(textwrap.dedent('''
        class HoldPolicy(Section):
            def reminders(self):
                return self.reminder_s
            @field_validator("limit_s")
            def _check(cls, value):
                return cls.max_hold_s
    '''))
    (code / "hold.py").write_text(textwrap.dedent('''
        def a(policy): return policy.hold.limit_s
        def b(policy):
            hold = policy.hold
            return hold.warn_s
        class C:
            def __init__(self, rules: HoldPolicy) -> None:
                self.rules = rules
            def go(self): return self.rules.tick_s, getattr(self.rules, "tock_s")
        def d(policy): return [getattr(policy.labels, n) for n in NAMES]
        def e(policy): return policy.hold.reminders()
    '''))
    classes = {"HoldPolicy": {"hold"}, "Policy": {""}}
    found = policy_reads.scan(tmp_path, classes)
    assert {("hold", "limit_s"), ("hold", "warn_s"), ("hold", "tick_s"), ("hold", "tock_s"),
            ("hold", "reminder_s")} <= found.pairs
    assert ("hold", "max_hold_s") not in found.pairs  # a validator gives no behaviour
    assert "labels" in found.whole


# Keys only a page script or an Asterisk template reads (the Python scan cannot see
# them), each with the file that reads it; checked by text search below. Keep it short.
READ_OUTSIDE_PYTHON: dict[str, str] = {}


def test_allow_listed_keys_are_really_in_their_files() -> None:
    for key, path in READ_OUTSIDE_PYTHON.items():
        assert key.rsplit(".", 1)[-1] in (REPO / path).read_text("utf-8"), (key, path)


@pytest.fixture(scope="module")
def unread() -> list[str]:
    return policy_reads.unread_keys(REPO)


def test_every_policy_key_is_read_by_some_code(unread: list[str]) -> None:
    missing = [k for k in unread if k not in READ_OUTSIDE_PYTHON]
    assert not missing, f"{len(missing)} Policy keys no code reads (give each its " \
                        f"behaviour or remove it): {', '.join(missing)}"


def test_the_unread_key_check_finds_the_known_unread_keys(unread: list[str]) -> None:
    """The check above is not vacuous: it finds the keys the manual audit found."""
    assert "availability.closed_hours_enabled" in unread or \
        "availability.closed_hours_enabled" not in {k.dotted for k in policy_reads.leaf_keys()}
    assert "hold.limit_s" not in unread
    assert "answering.ring_limit_rings" not in unread


# --- a test marked std(X) runs an enforcer of X ---------------------------------------

def test_enforces_returns_the_function_itself_without_tracing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(rules.TRACE_ENV, raising=False)
    before = list(rules.ENFORCERS)

    def limit() -> int:
        return 3

    try:
        assert rules.enforces("STD-008")(limit) is limit
        with pytest.raises(ValueError, match="not a standard id"):
            rules.enforces("STD-8")
    finally:
        rules.ENFORCERS[:] = before


def test_traced_enforcer_records_sync_and_async_calls(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    trace = tmp_path / "trace"
    monkeypatch.setenv(rules.TRACE_ENV, str(trace))
    before = list(rules.ENFORCERS)
    try:
        @rules.enforces("STD-040", "STD-041")
        def hold(x: int) -> int:
            return x + 1

        @rules.enforces("STD-008")
        async def ring() -> str:
            return "rung"

        import asyncio
        import inspect
        assert inspect.iscoroutinefunction(ring)
        rules.TRACED.clear()
        assert hold(1) == 2
        assert asyncio.run(ring()) == "rung"
        assert {"STD-040", "STD-041", "STD-008"} <= rules.TRACED
        assert set(trace.read_text().split()) == {"STD-040", "STD-041", "STD-008"}
    finally:
        rules.ENFORCERS[:] = before


def test_a_marked_test_that_runs_no_enforcer_fails(tmp_path: Path) -> None:
    (tmp_path / "test_marked.py").write_text(textwrap.dedent('''
        import pytest
        from callflow.engine.rules import enforces

        @enforces("STD-040")
        def hold_limit() -> int:
            return 30

        @pytest.mark.std("STD-040")
        def test_proves_it() -> None:
            assert hold_limit() == 30

        @pytest.mark.std("STD-040", "STD-041")
        def test_claims_too_much() -> None:
            assert hold_limit() == 30

        @pytest.mark.std("STD-040")
        def test_runs_nothing() -> None:
            assert True

        def test_unmarked() -> None:
            assert True
    '''))
    env = {k: v for k, v in os.environ.items() if k != rules.TRACE_ENV}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "callflow.standards.trace_plugin",
         "-p", "no:cacheprovider", "-p", "no:xdist", "-p", "no:randomly",
         "-W", "ignore::pytest.PytestUnknownMarkWarning", str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "2 failed, 2 passed" in out, out
    assert "marked std(STD-041) but ran no enforcer of it (STD-041: no enforcer" in out, out
    assert "marked std(STD-040) but ran no enforcer of it (STD-040: test_marked.hold_limit)" \
        in out, out


def test_an_enforcer_naming_a_policy_key_that_does_not_exist_is_an_error() -> None:
    before = list(rules.ENFORCERS)
    try:
        rules.enforces("STD-040", policy=("hold.limit_seconds",))(lambda: None)
        with pytest.raises(ValueError, match=r"no such Policy key hold\.limit_seconds"):
            ledger.build(REPO)
    finally:
        rules.ENFORCERS[:] = before
    assert "hold.limit_s" in ledger.known_policy_keys()
    assert "hold" in ledger.known_policy_keys()
