"""Special-call procedures and who hangs up first (engine/special_calls.py), fake clock:
STD-056/057 (C-1), STD-059, STD-060, STD-064/065 (C-2), STD-067, STD-110..112 (C-6)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from edges import as_edges

from callflow.engine import special_calls as sc
from callflow.engine import verdicts
from callflow.engine.effects import Alarm, CancelTimer, Effect, Persist, Publish, StartTimer
from callflow.engine.policy import Policy
from callflow.errors import StateError

POLICY = Policy()
RULES = sc.SpecialRules.from_policy(POLICY)
WALL0 = 1_800_000_000.0
PROMPT_S = 3.0  # how long the fake "Asterisk" takes to play any prompt


class Line:
    """Drives the machine like the feature does: plays prompts, fires timers, in time order."""

    def __init__(self, rules: sc.SpecialRules = RULES, caller: str = "13800138000") -> None:
        self.rules = rules
        self.call = sc.new("c1", "1001", caller)
        self.t = 0.0
        self.pending: dict[str, tuple[float, object]] = {}  # key -> (at, event)
        self.log: list[tuple[float, Effect]] = []

    def feed(self, event: object) -> list[Effect]:
        self.call, effects = sc.step(self.call, event, self.rules)  # type: ignore[arg-type]
        effects = as_edges(effects)
        for e in effects:
            self.log.append((self.t, e))
            if isinstance(e, sc.Play):
                self.pending[f"play:{e.token}"] = (
                    self.t + PROMPT_S, sc.PromptPlayed("c1", e.token, 0.0, 0.0))
            elif isinstance(e, StartTimer):
                self.pending[e.key] = (e.at, sc.SpecialTimer(e.key, 0.0, 0.0))
            elif isinstance(e, CancelTimer):
                self.pending.pop(e.key, None)
        return effects

    def now(self, **kw: object) -> dict[str, float]:
        return {"at": self.t, "wall": WALL0 + self.t}

    def run(self, until: float) -> None:
        while self.pending:
            key, (at, event) = min(self.pending.items(), key=lambda kv: kv[1][0])
            if at > until:
                break
            del self.pending[key]
            self.t = at
            self.feed(replace(event, at=at, wall=WALL0 + at))  # type: ignore[type-var]
        self.t = until

    def commands(self) -> list[tuple[float, object]]:
        return [(t, e) for t, e in self.log if isinstance(e, sc.Play | sc.Release | sc.Transfer)]


@pytest.mark.std("STD-056")
def test_silent_procedure_exact_timing_std_056() -> None:
    line = Line()
    line.feed(sc.Start("c1", "1001", "silent", **line.now()))
    line.run(100)
    gap, delay = POLICY.special_calls.silent_gap_s, POLICY.special_calls.silent_release_delay_s
    p = PROMPT_S
    assert line.commands() == [
        (0.0, sc.Play("c1", "silent_1", "1:1")),
        (p + gap, sc.Play("c1", "silent_2", "1:2")),
        (2 * (p + gap), sc.Play("c1", "silent_3", "1:3")),
        (3 * p + 2 * gap + delay, sc.Release("c1", "silent"))]
    assert line.call.ending == "silent"
    effects = line.feed(sc.Released("c1", "caller", **line.now()))  # the system's hang-up
    record = next(e for e in effects if isinstance(e, Persist))
    assert record.data["outcome"] == "silent" and record.data["release_compliant"] is True
    assert record.data["release_procedure"] == "silent" and record.data["released_by"] == "system"
    assert not any(isinstance(e, Alarm) for e in effects)


def test_caller_speech_cancels_the_silent_procedure() -> None:
    line = Line()
    line.feed(sc.Start("c1", "1001", "silent", **line.now()))
    line.run(PROMPT_S + 6)  # second prompt is playing... caller speaks in the second gap
    line.run(2 * PROMPT_S + 7)
    line.feed(sc.CallerSpeech("c1", **line.now()))
    line.run(100)
    assert [e.prompt for _, e in line.commands() if isinstance(e, sc.Play)] == [
        "silent_1", "silent_2"]
    assert not any(isinstance(e, sc.Release) for _, e in line.commands())
    assert line.call.cancelled and not line.call.running
    effects = line.feed(sc.Released("c1", "caller", **line.now()))
    record = next(e for e in effects if isinstance(e, Persist))
    assert "outcome" not in record.data  # an ordinary call after all


@pytest.mark.std("STD-057")
def test_short_silent_form_c_1() -> None:
    rules = sc.SpecialRules.from_policy(Policy.model_validate(
        {"special_calls": {"silent_form": "short", "silent_short_repeats": 2}}))
    line = Line(rules)
    line.feed(sc.Start("c1", "1001", "silent", **line.now()))
    line.run(100)
    assert [(round(t, 3), getattr(e, "prompt", "release")) for t, e in line.commands()] == [
        (0.0, "silent_short"), (8.0, "silent_short"), (16.0, "release")]


def test_fewer_standard_prompts_keep_the_last_one() -> None:
    rules = sc.SpecialRules.from_policy(Policy.model_validate(
        {"special_calls": {"silent_prompts": 1}}))
    assert rules.silent_prompts == ("silent_3",)


@pytest.mark.parametrize(("procedure", "prompt", "delay"), [
    ("noisy_line", "noisy_line", POLICY.special_calls.noisy_line_release_delay_s),
    ("quiet_line", "quiet_line", POLICY.special_calls.quiet_line_release_delay_s),
    ("wrong_number", "wrong_number", POLICY.special_calls.wrong_number_release_delay_s),
])
@pytest.mark.std("STD-059", "STD-060", "STD-067")
def test_one_script_then_release(procedure: str, prompt: str, delay: float) -> None:
    line = Line()
    line.feed(sc.Start("c1", "1001", procedure, **line.now()))
    line.feed(sc.CallerSpeech("c1", **line.now()))  # speech does not stop these
    line.run(100)
    assert line.commands() == [(0.0, sc.Play("c1", prompt, "1:1")),
                               (PROMPT_S + delay, sc.Release("c1", procedure))]
    effects = line.feed(sc.Released("c1", "agent", **line.now()))
    record = next(e for e in effects if isinstance(e, Persist))
    assert (record.data["outcome"], record.data["release_compliant"]) == (procedure, True)


@pytest.mark.parametrize(("action", "command"), [
    ("transfer_attendant", sc.Transfer("c1", POLICY.special_calls.attendant_target)),
    ("hangup", sc.Release("c1", "nuisance")),
])
@pytest.mark.std("STD-064", "STD-065")
def test_nuisance_warnings_then_final_action_c_2(action: str, command: object) -> None:
    rules = replace(RULES, nuisance_final_action=action)  # type: ignore[arg-type]
    line = Line(rules)
    for _ in range(rules.nuisance_warnings):
        line.feed(sc.Warn("c1", "1001", **line.now()))
        line.run(line.t + PROMPT_S + 1)
    plays = [e for _, e in line.commands() if isinstance(e, sc.Play)]
    assert [p.prompt for p in plays] == ["nuisance_scope"] * POLICY.special_calls.nuisance_warnings
    assert line.commands()[-1][1] == command
    flags = [e for _, e in line.log if isinstance(e, Persist) and e.kind == "number_flag"]
    assert len(flags) == 1 and flags[0].data["number"] == "13800138000"
    assert any(isinstance(e, Publish) and e.topic == "board" and e.payload["type"] == "nuisance"
               for _, e in line.log)
    with pytest.raises(StateError) as err:
        line.feed(sc.Warn("c1", "1001", **line.now()))
    assert err.value.reason == "call_ending"
    effects = line.feed(sc.Released("c1", "agent", **line.now()))  # agent leg drops on transfer
    record = next(e for e in effects if isinstance(e, Persist))
    assert record.data["outcome"] == "nuisance" and record.data["release_compliant"] is True


def test_nuisance_escalate_keeps_the_call() -> None:
    rules = replace(RULES, nuisance_final_action="escalate", nuisance_warnings=2)
    line = Line(rules)
    for _ in range(2):
        line.feed(sc.Warn("c1", "1001", **line.now()))
        line.run(line.t + PROMPT_S + 1)
    assert any(isinstance(e, Alarm) and e.kind == "nuisance_escalated" for _, e in line.log)
    assert line.call.ending is None
    with pytest.raises(StateError) as err:
        line.feed(sc.Warn("c1", "1001", **line.now()))
    assert err.value.reason == "warnings_used"


def test_warn_while_playing_is_rejected() -> None:
    line = Line()
    line.feed(sc.Warn("c1", "1001", **line.now()))
    before = line.call
    with pytest.raises(StateError) as err:
        line.feed(sc.Warn("c1", "1001", **line.now()))
    assert err.value.reason == "prompt_playing" and line.call == before


# --- who hangs up first (STD-110, STD-111, C-6) -------------------------------------


def release_after_closing(closing_to_release: float | None, by: str,
                          rules: sc.SpecialRules = RULES) -> list[Effect]:
    line = Line(rules)
    if closing_to_release is not None:
        line.feed(sc.Closing("c1", "1001", **line.now()))
        line.t += closing_to_release
    return line.feed(sc.Released("c1", by, **line.now()))


@pytest.mark.parametrize(("closing", "by", "compliant", "why"), [
    (None, "agent", False, "no_closing"),
    (1.0, "agent", False, "within_grace"),
    (2.5, "agent", True, ""),
    (None, "caller", True, ""),
    (0.5, "caller", True, ""),
])
@pytest.mark.std("STD-110", "STD-111")
def test_agent_first_release_std_110_111(closing: float | None, by: str, compliant: bool,
                                         why: str) -> None:
    effects = release_after_closing(closing, by)
    record = next(e for e in effects if isinstance(e, Persist))
    assert record.data["release_compliant"] is compliant
    alarms = [e for e in effects if isinstance(e, Alarm)]
    if compliant:
        assert alarms == []
    else:
        assert [(a.kind, a.std, a.detail["why"]) for a in alarms] == [
            ("agent_hung_up_first", "STD-110", why)]


def test_a_dropped_agent_line_is_not_an_agent_first_release() -> None:
    """The agent's line dropped (BYE with Q.850 cause 38, the record's network_drop): the
    live matrix found it judged an STD-110 violation and alarmed."""
    line = Line()
    effects = line.feed(sc.Released("c1", "agent", **line.now(), dropped=True))
    assert next(e for e in effects if isinstance(e, Persist)).data["release_compliant"] is True
    assert not any(isinstance(e, Alarm) for e in effects)


def test_strict_mode_c_6_and_unknown_releaser() -> None:
    effects = release_after_closing(2.5, "agent", replace(RULES, strict=True))
    assert next(e for e in effects if isinstance(e, Persist)).data["release_compliant"] is False
    effects = release_after_closing(None, "unknown")
    assert next(e for e in effects if isinstance(e, Persist)).data["release_compliant"] is None
    assert not any(isinstance(e, Alarm) for e in effects)


def test_agent_release_mid_script_is_a_violation() -> None:
    line = Line()
    line.feed(sc.Start("c1", "1001", "silent", **line.now()))
    line.run(4.0)
    effects = line.feed(sc.Released("c1", "agent", **line.now()))
    assert any(isinstance(e, Alarm) and e.kind == "agent_hung_up_first" for e in effects)
    assert any(isinstance(e, CancelTimer) for e in effects)


# --- bad input ---------------------------------------------------------------------------


def test_bad_requests_are_rejected_with_reasons_state_unchanged() -> None:
    line = Line()
    start = line.call
    cases: list[tuple[object, str]] = [
        (sc.Start("c1", "1002", "silent", 0.0, WALL0), "not_your_call"),
        (sc.Warn("c1", "1002", 0.0, WALL0), "not_your_call"),
        (sc.Closing("c1", "1002", 0.0, WALL0), "not_your_call"),
        (sc.Start("c2", "1001", "silent", 0.0, WALL0), "wrong_call"),
        (sc.Start("c1", "1001", "dance", 0.0, WALL0), "unknown_procedure"),
        (sc.SpecialTimer("hold:c1:1:x", 0.0, WALL0), "bad_timer"),
    ]
    for event, reason in cases:
        with pytest.raises(StateError) as err:
            line.feed(event)
        assert err.value.reason == reason
        assert line.call == start
    line.feed(sc.Start("c1", "1001", "silent", **line.now()))
    with pytest.raises(StateError) as err:
        line.feed(sc.Start("c1", "1001", "noisy_line", **line.now()))
    assert err.value.reason == "procedure_running"
    line.feed(sc.Released("c1", "caller", **line.now()))
    ended = line.call
    for event in (sc.Start("c1", "1001", "silent", 0.0, WALL0),
                  sc.Closing("c1", "1001", 0.0, WALL0)):
        with pytest.raises(StateError) as err:
            line.feed(event)
        assert err.value.reason == "call_ended" and line.call == ended
    assert line.feed(sc.Released("c1", "agent", 0.0, WALL0)) == []  # duplicate Hangup
    stale = sc.SpecialTimer(sc.timer_key("c1", 1, "gap"), 9.0, WALL0)
    assert line.feed(stale) == [] and line.call == ended


def test_stale_playback_report_is_ignored() -> None:
    line = Line()
    line.feed(sc.Start("c1", "1001", "silent", **line.now()))
    before = line.call
    assert line.feed(sc.PromptPlayed("c1", "0:1", 1.0, WALL0)) == []
    assert line.call == before


# --- automatic start (STD-056 ASSUMPTION, special_calls.silent_auto_start) -------------


def test_auto_start_off_by_default() -> None:
    line = Line()
    assert line.feed(sc.Connected("c1", **line.now())) == []


def test_auto_start_after_one_silent_gap() -> None:
    line = Line(replace(RULES, silent_auto_start=True))
    line.feed(sc.Connected("c1", **line.now()))
    line.run(100)
    commands = line.commands()
    assert commands[0] == (RULES.silent_gap_s, sc.Play("c1", "silent_1", "1:1"))
    assert commands[-1][1] == sc.Release("c1", "silent")


def test_caller_speech_before_the_auto_start_prevents_it() -> None:
    line = Line(replace(RULES, silent_auto_start=True))
    line.feed(sc.Connected("c1", **line.now()))
    line.t = 1.0
    line.feed(sc.CallerSpeech("c1", **line.now()))
    line.run(100)
    assert line.commands() == [] and line.call.spoke
    # a stale auto timer (already queued by the loop) does nothing either
    stale = sc.SpecialTimer(sc.timer_key("c1", 0, "auto"), 6.0, WALL0)
    assert line.feed(stale) == []


@pytest.mark.std("STD-056")
def test_the_silent_scripts_verdict_measures_it_against_its_pauses() -> None:
    """The script's time from its start to the release (engine/verdicts.py reads it off
    ReleaseJudged) is at least the pauses the Policy gives it; the prompts come on top."""
    line = Line()
    line.feed(sc.Start("c1", "1001", "silent", **line.now()))
    line.run(100)
    line.t, _ = line.commands()[-1]  # Asterisk hangs up as the script's Release asks
    effects = line.feed(sc.Released("c1", "caller", **line.now()))
    judged = next(e for e in effects if isinstance(e, sc.ReleaseJudged))
    gap, delay = POLICY.special_calls.silent_gap_s, POLICY.special_calls.silent_release_delay_s
    assert judged.script_pauses_s == 2 * gap + delay == sc.script_pauses_s("silent", RULES)
    assert judged.script_s == 3 * PROMPT_S + 2 * gap + delay
    _, script = verdicts.judge_release(judged, "1001", "main", WALL0 + line.t)
    assert (script.rule, script.outcome, script.measured, script.limit) == (
        "STD-056", verdicts.Outcome.PASS, judged.script_s, judged.script_pauses_s)
    cut_short = replace(judged, script_s=judged.script_pauses_s - 1)
    assert verdicts.judge_release(cut_short, "1001", "main", 0.0)[1].outcome \
        is verdicts.Outcome.FAIL
