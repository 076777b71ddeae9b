"""Hold machine (engine/hold.py): STD-040, STD-041, STD-043, C-5, with a fake clock."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from edges import as_edges

from callflow.engine import hold
from callflow.engine.effects import Alarm, CancelTimer, Effect, Persist, Publish, StartTimer
from callflow.engine.policy import Policy
from callflow.errors import StateError

POLICY = Policy()
RULES = hold.HoldRules.from_policy(POLICY)
WALL0 = 1_800_000_000.0


class Clock:
    """Fake clock: the machine's two times move together."""

    def __init__(self) -> None:
        self.t = 100.0

    def at(self) -> dict[str, float]:
        return {"at": self.t, "wall": WALL0 + self.t}



def step(holds: hold.CallHolds, event: hold.HoldEvent, rules: hold.HoldRules
         ) -> tuple[hold.CallHolds, list[Effect]]:
    """The machine's step, its effects followed by the rows and frames made of them."""
    holds, effects = hold.step(holds, event, rules)
    return holds, as_edges(effects)

def timers(effects: list[Effect]) -> dict[str, float]:
    return {e.key: e.at for e in effects if isinstance(e, StartTimer)}


def run_timers(holds: hold.CallHolds, pending: dict[str, float], until: float,
               rules: hold.HoldRules = RULES) -> tuple[hold.CallHolds, list[tuple[float, Effect]]]:
    """Fire due timers in time order up to ``until``, as the runtime's loop would."""
    out: list[tuple[float, Effect]] = []
    while pending:
        key, at = min(pending.items(), key=lambda kv: kv[1])
        if at > until:
            break
        del pending[key]
        holds, effects = step(holds, hold.HoldTimer(key, at, WALL0 + at), rules)
        for e in effects:
            out.append((at, e))
            if isinstance(e, StartTimer):
                pending[e.key] = e.at
            elif isinstance(e, CancelTimer):
                pending.pop(e.key, None)
    return holds, out


def kinds(fired: list[tuple[float, Effect]]) -> list[tuple[float, str]]:
    out = []
    for at, e in fired:
        if isinstance(e, Publish) and e.topic.startswith("agent:"):
            out.append((at, str(e.payload["type"])))
    return out


@pytest.mark.std("STD-040", "STD-041")
def test_reminders_every_15_s_and_breach_at_30_s_std_040_041() -> None:
    clock = Clock()
    h = hold.new("c1", "1001")
    h, effects = step(h, hold.HoldOn("c1", "1001", **clock.at()), RULES)
    pending = timers(effects)
    assert pending[hold.timer_key("c1", 1, hold.REMINDER)] == 100 + POLICY.hold.reminder_s
    assert pending[hold.timer_key("c1", 1, hold.LIMIT)] == 100 + POLICY.hold.limit_s
    h, fired = run_timers(h, pending, 100 + 35)
    assert sorted(kinds(fired)) == [(115.0, "hold_reminder"), (130.0, "hold_limit"),
                                    (130.0, "hold_reminder")]
    alarms = [e for _, e in fired if isinstance(e, Alarm)]
    assert [(a.kind, a.std) for a in alarms] == [("hold_limit", "STD-040")]
    assert any(isinstance(e, hold.Reassure) for _, e in fired)
    assert sum(isinstance(e, hold.Beep) for _, e in fired) == 2  # agent only
    breach = [e for _, e in fired if isinstance(e, Persist) and e.kind == "hold_breach"]
    assert breach and breach[0].data["held_s"] == POLICY.hold.limit_s
    clock.t = 135.0
    h, effects = step(h, hold.HoldOff("c1", "1001", **clock.at()), RULES)
    row = next(e for e in effects if isinstance(e, Persist) and e.kind == "hold")
    assert row.data["hold_s"] == 35.0 and row.data["breached"] is True
    assert row.data["hold_count"] == 1 and row.data["hold_total_s"] == 35.0
    assert {e.key for e in effects if isinstance(e, CancelTimer)} >= {
        hold.timer_key("c1", 1, hold.LIMIT), hold.timer_key("c1", 1, hold.REMINDER, 3)}


def test_short_hold_no_breach_and_late_timer_is_harmless() -> None:
    clock = Clock()
    h = hold.new("c1", "1001")
    h, effects = step(h, hold.HoldOn("c1", "1001", **clock.at()), RULES)
    clock.t += 10
    h, _ = step(h, hold.HoldOff("c1", "1001", **clock.at()), RULES)
    late = hold.HoldTimer(hold.timer_key("c1", 1, hold.LIMIT), 130.0, WALL0 + 130)
    h2, effects = step(h, late, RULES)
    assert effects == [] and h2 == h
    assert h.count == 1 and h.total_s() == 10.0 and h.breaches == 0


@pytest.mark.std("STD-040")
def test_call_scope_breaches_once_on_the_total_c_5() -> None:
    rules = replace(RULES, scope="call")
    clock = Clock()
    h = hold.new("c1", "1001")
    h, _ = step(h, hold.HoldOn("c1", "1001", **clock.at()), rules)
    clock.t += 20
    h, _ = step(h, hold.HoldOff("c1", "1001", **clock.at()), rules)
    clock.t += 5
    h, effects = step(h, hold.HoldOn("c1", "1001", **clock.at()), rules)
    pending = timers(effects)
    assert pending[hold.timer_key("c1", 2, hold.LIMIT)] == clock.t + 10  # 30 - 20 already
    h, fired = run_timers(h, pending, clock.t + 12, rules)
    assert (clock.t + 10, "hold_limit") in kinds(fired)
    clock.t += 12
    h, _ = step(h, hold.HoldOff("c1", "1001", **clock.at()), rules)
    clock.t += 1
    h, effects = step(h, hold.HoldOn("c1", "1001", **clock.at()), rules)
    assert hold.timer_key("c1", 3, hold.LIMIT) not in timers(effects)  # once per call


def test_episode_scope_each_hold_has_its_own_limit() -> None:
    clock = Clock()
    h = hold.new("c1", "1001")
    h, _ = step(h, hold.HoldOn("c1", "1001", **clock.at()), RULES)
    clock.t += 20
    h, _ = step(h, hold.HoldOff("c1", "1001", **clock.at()), RULES)
    h, effects = step(h, hold.HoldOn("c1", "1001", **clock.at()), RULES)
    assert timers(effects)[hold.timer_key("c1", 2, hold.LIMIT)] == clock.t + 30


@pytest.mark.std("STD-043")
def test_max_wait_and_auto_retrieve_std_043() -> None:
    rules = replace(RULES, auto_retrieve_s=60.0, max_wait_s=50.0)
    clock = Clock()
    h = hold.new("c1", "1001")
    h, effects = step(h, hold.HoldOn("c1", "1001", **clock.at()), rules)
    h, fired = run_timers(h, timers(effects), clock.t + 61, rules)
    assert (150.0, "hold_max_wait") in kinds(fired)
    assert [(a.kind, a.std) for _, a in fired if isinstance(a, Alarm)] == [
        ("hold_limit", "STD-040"), ("hold_max_wait", "STD-043")]
    assert [(at, e) for at, e in fired if isinstance(e, hold.Retrieve)] == [
        (160.0, hold.Retrieve("c1", "1001"))]


def test_auto_retrieve_off_by_default_and_limit_zero_disables_breach() -> None:
    assert POLICY.hold.auto_retrieve_s == 0
    rules = replace(RULES, limit_s=0)
    _, effects = step(hold.new("c1", "1001"),
                           hold.HoldOn("c1", "1001", 0.0, WALL0), rules)
    keys = set(timers(effects))
    assert hold.timer_key("c1", 1, hold.LIMIT) not in keys
    assert hold.timer_key("c1", 1, hold.RETRIEVE) not in keys


def test_call_end_closes_an_open_hold_and_later_events_are_rejected() -> None:
    clock = Clock()
    h = hold.new("c1", "1001")
    h, _ = step(h, hold.HoldOn("c1", "1001", **clock.at()), RULES)
    clock.t += 7
    h, effects = step(h, hold.CallOver("c1", **clock.at()), RULES)
    row = next(e for e in effects if isinstance(e, Persist))
    assert row.data["hold_s"] == 7.0 and h.ended
    again, none = step(h, hold.CallOver("c1", **clock.at()), RULES)
    assert again == h and none == []
    with pytest.raises(StateError) as err:
        step(h, hold.HoldOn("c1", "1001", **clock.at()), RULES)
    assert err.value.reason == "call_ended"


@pytest.mark.parametrize(("events", "reason"), [
    ([("on", 0.0), ("on", 1.0)], "already_on_hold"),  # duplicated hold
    ([("off", 0.0)], "not_on_hold"),  # unhold with no hold
    ([("on", 0.0), ("off", 2.0), ("off", 3.0)], "not_on_hold"),  # duplicated unhold
    ([("on", 5.0), ("off", 4.0)], "out_of_order"),  # unhold before its hold
    ([("on", 5.0), ("off", 6.0), ("on", 5.5)], "out_of_order"),  # hold before last unhold
])
def test_bad_sequences_are_rejected_state_unchanged(events: list[tuple[str, float]],
                                                    reason: str) -> None:
    h = hold.new("c1", "1001")
    *good, bad = events
    for kind, at in good:
        cls: Any = hold.HoldOn if kind == "on" else hold.HoldOff
        h, _ = step(h, cls("c1", "1001", at, WALL0 + at), RULES)
    kind, at = bad
    cls = hold.HoldOn if kind == "on" else hold.HoldOff
    with pytest.raises(StateError) as err:
        step(h, cls("c1", "1001", at, WALL0 + at), RULES)
    assert err.value.reason == reason


def test_another_agent_or_call_is_rejected() -> None:
    h = hold.new("c1", "1001")
    with pytest.raises(StateError) as err:
        step(h, hold.HoldOn("c1", "1002", 0.0, WALL0), RULES)
    assert err.value.reason == "not_your_call"
    with pytest.raises(StateError) as err:
        step(h, hold.HoldOn("c2", "1001", 0.0, WALL0), RULES)
    assert err.value.reason == "wrong_call"
    with pytest.raises(StateError) as err:
        step(h, hold.HoldTimer("desk:1:2", 0.0, WALL0), RULES)
    assert err.value.reason == "bad_timer"
    assert h == hold.new("c1", "1001")


def held_past_max_wait(rules: hold.HoldRules, via: hold.Via = "softphone",
                       ) -> tuple[hold.CallHolds, dict[str, float], list[tuple[float, Effect]]]:
    h = hold.new("c1", "1001")
    h, effects = step(h, hold.HoldOn("c1", "1001", 100.0, WALL0 + 100, via=via), rules)
    pending = timers(effects)
    h, fired = run_timers(h, pending, 100.0 + rules.max_wait_s, rules)
    return h, pending, fired


@pytest.mark.std("STD-042", "STD-043")
def test_max_wait_offers_the_caller_the_choice_and_key_2_is_a_callback_std_042_043() -> None:
    rules = replace(RULES, max_wait_s=120.0, choice_window_s=15.0)
    h, pending, fired = held_past_max_wait(rules)
    assert [e for _, e in fired if isinstance(e, hold.OfferChoice)] == [hold.OfferChoice("c1")]
    assert pending[hold.timer_key("c1", 1, hold.CHOICE)] == 235.0
    assert h.current is not None and h.current.choice_open
    # a key that is not an answer is the caller's business: nothing happens
    same, effects = step(h, hold.CallerKey("c1", "5", 225.0, WALL0 + 225), rules)
    assert (same, effects) == (h, [])
    h, effects = step(h, hold.CallerKey("c1", "2", 226.0, WALL0 + 226), rules)
    assert hold.CallbackChosen("c1", "1001") in effects
    assert CancelTimer(hold.timer_key("c1", 1, hold.CHOICE)) in effects
    chosen = [e.payload for e in effects if isinstance(e, Publish)]
    assert {p["choice"] for p in chosen} == {"callback"}
    assert any(isinstance(e, Persist) and e.kind == "hold_choice" for e in effects)
    # the window is closed: a second key changes nothing
    again, effects = step(h, hold.CallerKey("c1", "2", 227.0, WALL0 + 227), rules)
    assert (again, effects) == (h, [])
    assert h.current is not None and h.current.choice == "2"


def test_key_1_keeps_waiting_silence_closes_the_window_and_no_offer_when_off() -> None:
    rules = replace(RULES, max_wait_s=120.0, choice_window_s=15.0)
    h, _, _ = held_past_max_wait(rules)
    kept, effects = step(h, hold.CallerKey("c1", "1", 221.0, WALL0 + 221), rules)
    assert kept.current is not None and kept.current.choice == "1"
    assert not any(isinstance(e, hold.CallbackChosen) for e in effects)
    assert [e.payload["choice"] for e in effects if isinstance(e, Publish)] == [
        "keep_waiting", "keep_waiting"]
    # nobody pressed anything: the window closes, the desktop is told, the hold goes on
    h, pending, _ = held_past_max_wait(rules)
    h, fired = run_timers(h, pending, 236.0, rules)
    assert (235.0, "hold_choice") in kinds(fired)  # beside the 15-s reminders
    assert h.current is not None and not h.current.choice_open
    late, effects = step(h, hold.CallerKey("c1", "2", 240.0, WALL0 + 240), rules)
    assert (late, effects) == (h, [])
    # the offer switched off: the alarm and the desktop only
    _, _, fired = held_past_max_wait(replace(rules, max_wait_offer=False))
    assert not [e for _, e in fired if isinstance(e, hold.OfferChoice)]
    assert (220.0, "hold_max_wait") in kinds(fired)


def test_a_key_before_the_offer_or_after_the_hold_counts_for_nothing() -> None:
    rules = replace(RULES, max_wait_s=120.0)
    h, _ = step(hold.new("c1", "1001"), hold.HoldOn("c1", "1001", 100.0, WALL0), rules)
    assert step(h, hold.CallerKey("c1", "2", 101.0, WALL0), rules) == (h, [])
    with pytest.raises(StateError):
        step(h, hold.CallerKey("c2", "2", 101.0, WALL0), rules)
    h, _ = step(h, hold.HoldOff("c1", "1001", 102.0, WALL0), rules)
    assert step(h, hold.CallerKey("c1", "2", 103.0, WALL0), rules) == (h, [])


def test_auto_retrieve_says_who_made_the_hold() -> None:
    rules = replace(RULES, auto_retrieve_s=60.0, max_wait_s=120.0)
    for via in ("softphone", "desktop"):
        h = hold.new("c1", "1001")
        h, effects = step(h, hold.HoldOn("c1", "1001", 100.0, WALL0, via=via), rules)
        started = [e.payload for e in effects if isinstance(e, Publish)]
        assert started[0]["via"] == via
        _, fired = run_timers(h, timers(effects), 161.0, rules)
        assert [e for _, e in fired if isinstance(e, hold.Retrieve)] == [
            hold.Retrieve("c1", "1001", via)]
