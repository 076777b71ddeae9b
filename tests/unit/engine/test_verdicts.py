"""Verdicts (engine/verdicts.py): each rule judged from the facts its own machine recorded.

The machines are driven as the runtime drives them (fake times), then judged; nothing
here builds a call by hand that the machines could not produce.
"""

from __future__ import annotations

from datetime import UTC

import pytest
from edges import as_edges

from callflow.agents.changes import AcwFinished
from callflow.agents.events import CallAnswered, CallEnded, CallOffered, EndAcw, LogIn, TimerFired
from callflow.agents.state import new_agent, transition
from callflow.engine import calls, compliance, hold, special_calls, verdicts
from callflow.engine.calls import CallEntered, CallReleased, OfferEnded, OfferStarted
from callflow.engine.effects import StartTimer
from callflow.engine.policy import Policy, parse_policy
from callflow.engine.verdicts import Outcome, Verdict

T0 = 1_800_000_000.0
# the live test's short Policy: 3 rings of 5 s, hold limit 4 s, ACW limit 3 s
SHORT = parse_policy({"hold": {"limit_s": 4, "reminder_s": 2, "reminder_repeat_s": 0,
                               "max_wait_s": 60},
                      "agents": {"acw_limit_s": 3, "acw_auto_ready": False}})
TIMINGS = calls.CallRules(ring_cycle_s=5.0, apology_after_s=15.0, short_abandon_s=5.0)
RULES = verdicts.VerdictRules.from_policy(SHORT)


def run_call(*events: calls.CallEvent) -> calls.InboundCall:
    call, _ = calls.start(CallEntered("c1", "PJSIP/caller-1", "13800000000", "100", "main", T0),
                          TIMINGS)
    for event in events:
        call, _ = calls.step(call, event, TIMINGS)
    return call


def by_rule(found: list[Verdict]) -> dict[tuple[str, str], Verdict]:
    return {(v.rule, v.key): v for v in found}


@pytest.mark.std("STD-008")
def test_answered_on_ring_two_of_three_passes() -> None:
    call = run_call(OfferStarted("c1", "1001", "PJSIP/a-1", T0 + 1),
                    OfferEnded("c1", "1001", "ANSWER", T0 + 8.2),
                    CallReleased("c1", T0 + 20, by="caller"))
    found = by_rule(verdicts.judge_call(call, TIMINGS, RULES))
    ring = found[("STD-008", "answer")]
    assert ring.outcome is Outcome.PASS and ring.measured == pytest.approx(7.2)
    assert ring.limit == 15.0 and ring.detail == "answered on ring 2 of 3"
    assert ring.agent == "1001" and ring.queue == "main" and ring.at == T0 + 20
    assert found[("STD-009", "")].outcome is Outcome.NOT_APPLICABLE


@pytest.mark.std("STD-008", "STD-009")
def test_ring_no_answer_moves_on_and_the_late_answer_gets_the_apology() -> None:
    call = run_call(OfferStarted("c1", "1001", "PJSIP/a-1", T0 + 1),
                    OfferEnded("c1", "1001", "NOANSWER", T0 + 16),
                    OfferStarted("c1", "1002", "PJSIP/b-1", T0 + 16.5),
                    OfferEnded("c1", "1002", "ANSWER", T0 + 19),
                    CallReleased("c1", T0 + 30, by="caller"))
    found = by_rule(verdicts.judge_call(call, TIMINGS, RULES))
    rona = found[("STD-008", "offer:1")]
    assert rona.outcome is Outcome.PASS and rona.agent == "1001"
    assert rona.measured == pytest.approx(15.0)
    assert "moved on to agent 1002" in rona.detail
    assert found[("STD-008", "answer")].agent == "1002"
    apology = found[("STD-009", "")]
    assert apology.outcome is Outcome.PASS and apology.measured == pytest.approx(19.0)
    assert call.greeting == "apology"  # the call machine's own decision, judged as it is


@pytest.mark.std("STD-008")
def test_a_call_never_offered_is_not_applicable_and_a_live_call_is_not_judged() -> None:
    gone = run_call(CallReleased("c1", T0 + 3, by="caller"))
    [ring] = verdicts.judge_call(gone, TIMINGS, RULES)
    assert ring.outcome is Outcome.NOT_APPLICABLE
    live = run_call(OfferStarted("c1", "1001", "PJSIP/a-1", T0 + 1))
    assert verdicts.judge_call(live, TIMINGS, RULES) == []


def _hold_for(seconds: float, rules: hold.HoldRules) -> hold.HoldChanged:
    """One hold of ``seconds`` through the hold machine, its due timers fired in order."""
    holds = hold.new("c1", "1001")
    holds, effects = hold.step(holds, hold.HoldOn("c1", "1001", at=100.0, wall=T0 + 100), rules)
    pending = {e.key: e.at for e in effects if isinstance(e, StartTimer)}
    while pending:
        key, at = min(pending.items(), key=lambda kv: kv[1])
        if at >= 100.0 + seconds:
            break
        del pending[key]
        holds, more = hold.step(holds, hold.HoldTimer(key, at, T0 + at), rules)
        pending.update({e.key: e.at for e in more if isinstance(e, StartTimer)})
    holds, effects = hold.step(holds, hold.HoldOff("c1", "1001", at=100.0 + seconds,
                                                   wall=T0 + 100 + seconds), rules)
    [changed] = [e for e in effects if isinstance(e, hold.HoldChanged)]
    return changed


@pytest.mark.std("STD-040", "STD-041")
@pytest.mark.parametrize(("held", "limit_ok", "reminders"), [(3.0, True, "pass"),
                                                             (5.5, False, "pass"),
                                                             (1.0, True, "not_applicable")])
def test_each_hold_against_its_limit_and_reminders(held: float, limit_ok: bool,
                                                   reminders: str) -> None:
    found = by_rule(verdicts.judge_hold(_hold_for(held, RULES.hold), RULES.hold))
    limit = found[("STD-040", "hold:1")]
    assert limit.outcome is (Outcome.PASS if limit_ok else Outcome.FAIL)
    assert limit.measured == pytest.approx(held) and limit.limit == 4
    assert limit.detail == f"hold {held:g} s of 4"
    assert limit.at == T0 + 100 + held
    assert found[("STD-041", "hold:1")].outcome.value == reminders
    assert found[("STD-043", "hold:1")].outcome is Outcome.NOT_APPLICABLE


@pytest.mark.std("STD-041")
def test_reminders_due_follow_the_timers_offsets() -> None:
    rules = hold.HoldRules.from_policy(Policy())  # 15 s, then every 15 s
    assert [hold.reminders_due(s, rules) for s in (14.9, 15, 29.9, 30, 46)] == [0, 1, 1, 2, 3]
    assert [hold.reminder_offset(n, rules) for n in (1, 2, 3)] == [15, 30, 45]


@pytest.mark.std("STD-043")
def test_a_hold_reaching_the_max_wait_passes_when_the_choice_was_offered() -> None:
    rules = hold.HoldRules(reminder_s=2, reminder_repeat_s=0, limit_s=4, scope="episode",
                           max_wait_s=6, auto_retrieve_s=0)
    found = by_rule(verdicts.judge_hold(_hold_for(7.0, rules), rules))
    assert found[("STD-043", "hold:1")].outcome is Outcome.PASS
    assert found[("STD-040", "hold:1")].outcome is Outcome.FAIL


def _acw(work_s: float) -> AcwFinished:
    """An agent through one call and its ACW, ended by the agent after ``work_s``."""
    agent = new_agent("1001", "agent1001")
    now = 0.0
    log = []
    for event in (LogIn(), CallOffered("c1"), CallAnswered("c1"), CallEnded("c1")):
        agent, effects = transition(agent, event, now, SHORT)
        now += 1.0
        log += effects
    ended_at = now - 1.0 + work_s
    limit = [e for e in log if isinstance(e, StartTimer) and ":acw:" in e.key]
    if limit and limit[0].at <= ended_at:  # the limit fires first: an overrun, alarmed
        agent, effects = transition(agent, TimerFired(limit[0].key), limit[0].at, SHORT)
    agent, effects = transition(agent, EndAcw(), ended_at, SHORT)
    [done] = [e for e in as_edges(effects) if isinstance(e, AcwFinished)]
    return done


@pytest.mark.std("STD-100")
@pytest.mark.parametrize(("work", "outcome"), [(2.0, Outcome.PASS), (4.8, Outcome.FAIL)])
def test_acw_against_its_limit(work: float, outcome: Outcome) -> None:
    done = _acw(work)
    [v] = verdicts.judge_acw(done.call_id, done.agent_id, done.seconds, done.limit_s,
                             done.overrun, T0)
    assert v.outcome is outcome and v.measured == pytest.approx(work)
    assert v.limit == 3 and v.detail == f"ACW {work:g} s of 3"


def _released(by: str, closing_before: float | None = None,
              procedure: str | None = None) -> special_calls.ReleaseJudged:
    rules = special_calls.SpecialRules.from_policy(Policy())
    call = special_calls.new("c1", "1001")
    if closing_before is not None:
        call, _ = special_calls.step(call, special_calls.Closing("c1", "1001", 10.0,
                                                                 T0 + 10), rules)
    if procedure is not None:
        call = call.__class__(**{**call.__dict__, "procedure": procedure, "ending": procedure,
                                 "done": True})
    at = 10.0 + (closing_before or 0.0)
    _, effects = special_calls.step(call, special_calls.Released("c1", by, at, T0 + at), rules)
    [judged] = [e for e in effects if isinstance(e, special_calls.ReleaseJudged)]
    return judged


@pytest.mark.std("STD-110", "STD-056")
def test_who_hung_up_first() -> None:
    [agent_first] = verdicts.judge_release(_released("agent"), "1001", "main", T0)
    assert agent_first.outcome is Outcome.FAIL and agent_first.rule == "STD-110"
    [caller_first] = verdicts.judge_release(_released("caller"), "1001", "main", T0)
    assert caller_first.outcome is Outcome.PASS
    [after_goodbye] = verdicts.judge_release(_released("agent", closing_before=3.0),
                                             "1001", "main", T0)
    assert after_goodbye.outcome is Outcome.PASS
    release, script = verdicts.judge_release(_released("system", procedure="silent"),
                                             "1001", "main", T0)
    assert release.outcome is Outcome.PASS and script.rule == "STD-056"


def _v(rule: str, outcome: str, at: float, agent: str = "1001", queue: str = "main") -> Verdict:
    return Verdict("c", rule, Outcome(outcome), None, None, "s", agent, queue, at, "")


def test_compliance_per_rule_agent_hour_and_not_applicable_counts_nowhere() -> None:
    found = [_v("STD-008", "pass", T0), _v("STD-008", "fail", T0 + 10, agent="1002"),
             _v("STD-008", "pass", T0 + 3600), _v("STD-040", "not_applicable", T0)]
    rows = compliance.compliance_rows(found)
    assert rows == [{"rule": "STD-008", "by": "rule", "group": "", "passed": 2, "failed": 1,
                     "pct": 66.7},
                    {"rule": "STD-040", "by": "rule", "group": "", "passed": 0, "failed": 0,
                     "pct": None}]
    per_agent = compliance.compliance(found, "agent")
    assert per_agent[("STD-008", "1001")].pct == 100.0
    assert per_agent[("STD-008", "1002")].pct == 0.0
    per_hour = compliance.compliance(found, "hour", UTC)
    assert len([k for k in per_hour if k[0] == "STD-008"]) == 2


@pytest.mark.std("STD-147", "STD-008")
def test_the_trend_alarm_is_raised_once_while_under_target_and_rearmed_after() -> None:
    rules = compliance.TrendRules(window_s=3600, ring_target_pct=100, target_pct=90)
    found = [_v("STD-008", "pass", T0), _v("STD-008", "fail", T0 + 60)]
    alarms, low = compliance.check_trend(found, T0 + 120, rules, frozenset())
    assert [a.kind for a in alarms] == ["compliance_below_target"]
    assert alarms[0].detail["rule"] == "STD-008" and alarms[0].detail["compliance_pct"] == 50.0
    again, low = compliance.check_trend(found, T0 + 180, rules, low)
    assert again == [] and low == {"STD-008"}
    # the failure leaves the window: back on target, re-armed
    later = [*found, _v("STD-008", "pass", T0 + 3700)]
    alarms, low = compliance.check_trend(later, T0 + 3700, rules, low)
    assert alarms == [] and low == frozenset()


def test_verdicts_are_stored_and_shown() -> None:
    """CallJudged has its records (one per verdict) and its board frame."""
    judged = verdicts.CallJudged((_v("STD-008", "fail", T0),))
    edges = as_edges([judged])
    assert len(edges) == 3  # the event, its store record, its board frame


@pytest.mark.std("STD-008")
def test_a_ring_no_answer_fails_when_the_agent_was_not_set_not_ready() -> None:
    call = run_call(OfferStarted("c1", "1001", "PJSIP/a-1", T0 + 1),
                    OfferEnded("c1", "1001", "NOANSWER", T0 + 16),
                    OfferStarted("c1", "1002", "PJSIP/b-1", T0 + 16.5),
                    OfferEnded("c1", "1002", "ANSWER", T0 + 19),
                    CallReleased("c1", T0 + 30, by="caller"))
    kept = by_rule(verdicts.judge_call(call, TIMINGS, RULES, {"1001": "not_ready"}))
    assert kept[("STD-008", "offer:1")].outcome is Outcome.PASS
    assert kept[("STD-008", "offer:1")].detail.endswith("agent not_ready")
    broken = by_rule(verdicts.judge_call(call, TIMINGS, RULES, {"1001": "ready"}))
    assert broken[("STD-008", "offer:1")].outcome is Outcome.FAIL
