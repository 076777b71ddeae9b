"""Queue waits (STD-047, STD-043): announcements every interval, the callback offer on time."""

import itertools

import pytest

from callflow.engine.policy import Policy, parse_policy
from callflow.engine.waiting import WaitAction, heard, next_step, start_waiting


def play(policy: Policy, until: float, prompt_s: float = 0.0) -> list[tuple[str, float]]:
    """Everything the caller hears in ``until`` seconds, each prompt lasting ``prompt_s``."""
    state = start_waiting(entered_at=0.0, now=0.0)
    heard_steps = []
    while True:
        step = next_step(state, policy)
        if step.at > until:
            return heard_steps
        heard_steps.append((step.action.value, step.at))
        state = heard(state, step, step.at + prompt_s)


@pytest.mark.std("STD-047")
def test_announcement_every_interval_and_the_offer_at_two_minutes() -> None:
    policy = Policy.defaults()
    interval = policy.waiting.announcement_interval_s
    steps = play(policy, policy.waiting.callback_offer_s)
    announce_times = [t for kind, t in steps if kind == "announce"]
    assert announce_times == [interval * k for k in range(1, len(announce_times) + 1)]
    assert steps[-1] == ("offer_callback", policy.waiting.callback_offer_s)


def test_never_longer_than_the_interval_without_hearing_us() -> None:
    policy = parse_policy({"waiting": {"announcement_interval_s": 15, "callback_offer_s": 40}})
    steps = play(policy, 200, prompt_s=2.5)
    times = [0.0] + [t for _, t in steps]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert max(gaps) <= 15 + 2.5
    offers = [t for kind, t in steps if kind == "offer_callback"]
    assert offers[0] == 40  # the offer is due at 40 s even between announcements


def test_keep_waiting_offers_again_one_offer_period_later() -> None:
    policy = parse_policy({"waiting": {"announcement_interval_s": 15, "callback_offer_s": 30}})
    kinds = [kind for kind, _ in play(policy, 95)]
    assert kinds == ["announce", "offer_callback", "announce", "offer_callback", "announce",
                     "offer_callback"]


def test_callbacks_can_be_switched_off() -> None:
    policy = parse_policy({"waiting": {"callbacks_enabled": False}})
    assert {kind for kind, _ in play(policy, 600)} == {WaitAction.ANNOUNCE.value}
