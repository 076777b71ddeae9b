"""Every call judged: one verdict per applicable rule, from the rules' own functions.

Why here and why so: the standards are enforced by the machines (the ring limit by
Dial's timeout from ``ring_limit_seconds``, the hold limit by ``engine/hold.py``'s
timers, the ACW limit by the agent machine, the release rule by
``engine/special_calls.py``). A report that re-derived "was this call compliant" would be
a second implementation that drifts from the first. So a verdict is read off the facts
the enforcing machine recorded, through the same small functions it uses
(``answer_ring``, ``is_late``, ``hold_breached``, ``reminders_due``, ``acw_overrun``),
and nowhere else: the store, the board, the reports and the QA sample all take these.

A verdict is produced when what it judges is closed: a call's ring and apology rules
when the call ends, each hold episode when it ends, the release rule when the release is
judged, the ACW rule when the ACW ends (after the call). Each carries the measured value
and the limit in the rule's unit ("hold 34 s of 30", "ACW 48 s of 60", "answered on
ring 2 of 3"). ``key`` tells several verdicts of one rule on one call apart (the hold
episodes, the unanswered offers).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from functools import partial
from typing import Any

from callflow.engine.calls import (
    CallRules,
    InboundCall,
    OfferResult,
    Phase,
    answer_ring,
    is_late,
)
from callflow.engine.effects import DomainEvent
from callflow.engine.hold import HoldChanged, HoldRules, hold_breached, reminders_due
from callflow.engine.policy import Policy, ring_limit_seconds
from callflow.engine.rules import enforces
from callflow.engine.special_calls import STD as SPECIAL_STD
from callflow.engine.special_calls import ReleaseJudged

RING_LIMIT = "STD-008"
APOLOGY = "STD-009"
HOLD_LIMIT = "STD-040"
HOLD_REMINDER = "STD-041"
HOLD_MAX_WAIT = "STD-043"
ACW_LIMIT = "STD-100"
AGENT_FIRST = "STD-110"


class Outcome(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    NOT_APPLICABLE = "not_applicable"


@dataclass(frozen=True)
class Verdict:
    """One rule judged on one call (or one part of it: ``key``)."""

    call_id: str
    rule: str  # STD-nnn
    outcome: Outcome
    measured: float | None
    limit: float | None
    unit: str
    agent: str | None
    queue: str
    at: float  # epoch seconds: when what it judges closed
    detail: str
    key: str = ""  # "hold:2", "offer:1": several verdicts of one rule on one call

    def as_record(self) -> dict[str, Any]:
        return {"call_uniqueid": self.call_id, "rule": self.rule,
                "outcome": self.outcome.value, "key": self.key,
                "measured": None if self.measured is None else round(self.measured, 3),
                "limit": self.limit, "unit": self.unit, "agent_id": self.agent,
                "queue": self.queue, "at": self.at, "detail": self.detail}


@dataclass(frozen=True)
class CallJudged(DomainEvent):
    """Verdicts reached: the store keeps them, the board counts them (compliance)."""

    verdicts: tuple[Verdict, ...]

    @property
    def failed(self) -> tuple[Verdict, ...]:
        return tuple(v for v in self.verdicts if v.outcome is Outcome.FAIL)


@dataclass(frozen=True)
class VerdictRules:
    """What judging a call needs of the Policy."""

    ring_limit_rings: int
    ring_limit_s: float
    hold: HoldRules
    rona_sets_not_ready: bool = True

    @classmethod
    def from_policy(cls, policy: Policy) -> VerdictRules:
        return cls(ring_limit_rings=policy.answering.ring_limit_rings,
                   ring_limit_s=ring_limit_seconds(policy), hold=HoldRules.from_policy(policy),
                   rona_sets_not_ready=policy.answering.rona_sets_not_ready)


def _outcome(ok: bool) -> Outcome:
    return Outcome.PASS if ok else Outcome.FAIL


def _num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


# --- a call's own rules, when it ends -------------------------------------------------------


@enforces(RING_LIMIT, APOLOGY, policy=("answering.ring_limit_rings",
                                       "answering.rona_sets_not_ready",
                                       "answering.apology_after_rings"))
def judge_call(call: InboundCall, timings: CallRules, rules: VerdictRules,
               after_rona: Mapping[str, str] | None = None) -> list[Verdict]:
    """STD-008 (the answer within the ring limit; each unanswered offer handled: the call
    moved on, and the agent went to the state the Policy says) and STD-009 (the apology
    opening when the answer was late), for an ended call. Rings are ``answer_ring`` (ring
    time / ring cycle), the KPI's own count; lateness is ``is_late``, the function that
    switched the desktop to the apology opening. ``after_rona``: the state each agent whose
    offer timed out on this call entered then (the agent machine's, seen by the runtime);
    an agent missing from it is judged on the call's facts alone."""
    if call.phase is not Phase.ENDED or call.ended_at is None:
        return []
    end = call.ended_at
    out: list[Verdict] = []
    answered = call.answered_offer
    base = partial(Verdict, call_id=call.call_id, queue=call.queue, at=end)
    if answered is not None and answered.ring_s is not None and not answered.joined:
        ring = answer_ring(call, timings)
        assert ring is not None
        out.append(base(
            rule=RING_LIMIT, outcome=_outcome(ring <= rules.ring_limit_rings),
            measured=answered.ring_s, limit=rules.ring_limit_s, unit="s",
            agent=answered.agent_id, key="answer",
            detail=f"answered on ring {ring} of {rules.ring_limit_rings}"))
    elif not call.offers:
        out.append(base(rule=RING_LIMIT, outcome=Outcome.NOT_APPLICABLE,
                           measured=None, limit=rules.ring_limit_s, unit="s", agent=None,
                           key="answer", detail="never offered to an agent"))
    for i, offer in enumerate(call.offers):
        if offer.result is not OfferResult.NO_ANSWER or offer.ring_s is None:
            continue
        later = call.offers[i + 1:]
        moved = bool(later) or call.answered_at is None
        nxt = f"moved on to agent {later[0].agent_id}" if later else \
            "no other agent before the caller left" if call.answered_at is None else "stuck"
        state = (after_rona or {}).get(offer.agent_id)
        set_ok = state is None or not rules.rona_sets_not_ready or state == "not_ready"
        if state is not None:
            nxt += f"; agent {state}"
        rang = round(offer.ring_s / timings.ring_cycle_s, 1)
        out.append(base(
            rule=RING_LIMIT, outcome=_outcome(moved and set_ok), measured=offer.ring_s,
            limit=rules.ring_limit_s, unit="s", agent=offer.agent_id, key=f"offer:{i + 1}",
            detail=f"ring-no-answer after {_num(rang)} rings of {rules.ring_limit_rings}; {nxt}"))
    if call.answered_at is not None:
        wait = call.answered_at - call.entered_at
        if is_late(call, timings):
            out.append(base(
                rule=APOLOGY, outcome=_outcome(call.greeting == "apology"),
                measured=wait, limit=timings.apology_after_s, unit="s", agent=call.agent_id,
                detail=f"waited {_num(wait)} s of {_num(timings.apology_after_s)}: "
                       f"{'apology opening' if call.greeting == 'apology' else 'no apology'}"))
        else:
            out.append(base(
                rule=APOLOGY, outcome=Outcome.NOT_APPLICABLE, measured=wait,
                limit=timings.apology_after_s, unit="s", agent=call.agent_id,
                detail=f"waited {_num(wait)} s of {_num(timings.apology_after_s)}: no apology due"))
    return out


# --- each hold, when it ends -------------------------------------------------------------


@enforces(HOLD_LIMIT, HOLD_REMINDER, HOLD_MAX_WAIT,
          policy=("hold.limit_s", "hold.reminder_s", "hold.max_wait_s"))
def judge_hold(event: HoldChanged, rules: HoldRules, wall_end: float | None = None,
               ) -> list[Verdict]:
    """STD-040 (the episode within ``limit_s``: ``hold_breached``), STD-041 (the reminders
    it was owed, ``reminders_due``, were given), STD-043 (a hold that reached
    ``max_wait_s`` got the continue-or-callback choice), for an episode that ended."""
    if event.kind != "hold_ended":
        return []
    holds = event.holds
    ep = holds.episodes[event.episode - 1]
    length = ep.length
    if length is None:
        return []
    at = ep.ended_wall if ep.ended_wall is not None else (wall_end or 0.0)
    base = partial(Verdict, call_id=holds.call_id, agent=holds.agent_id, queue="", at=at)
    key = f"hold:{event.episode}"
    breached = hold_breached(ep, rules)
    out = [base(rule=HOLD_LIMIT, outcome=_outcome(not breached), measured=length,
                   limit=rules.limit_s, unit="s", key=key,
                   detail=f"hold {_num(length)} s of {_num(rules.limit_s)}")]
    due = reminders_due(length, rules)
    out.append(base(
        rule=HOLD_REMINDER,
        outcome=Outcome.NOT_APPLICABLE if due == 0 else _outcome(ep.reminders >= due),
        measured=float(ep.reminders), limit=float(due), unit="reminders", key=key,
        detail=f"{ep.reminders} reminders of {due} due in {_num(length)} s"))
    reached = length >= rules.max_wait_s
    out.append(base(
        rule=HOLD_MAX_WAIT,
        outcome=_outcome(ep.max_wait) if reached else Outcome.NOT_APPLICABLE,
        measured=length, limit=rules.max_wait_s, unit="s", key=key,
        detail=(f"choice offered at {_num(rules.max_wait_s)} s" if ep.max_wait
                else f"held {_num(length)} s of {_num(rules.max_wait_s)}")))
    return out


# --- the release, when it is judged ------------------------------------------------------


@enforces(AGENT_FIRST, "STD-056", policy=("hangup.closing_grace_s", "hangup.strict_mode"))
def judge_release(event: ReleaseJudged, agent: str | None, queue: str, at: float,
                  ) -> list[Verdict]:
    """STD-110 as ``special_calls._released`` judged it (``compliant``: None when nobody
    knows who released first), and the special-call script that ended the call, if one did
    (its procedure's rule passes: the system released at the script's end, STD-112)."""
    base = partial(Verdict, call_id=event.call_id, agent=agent, queue=queue, at=at,
                   measured=None, limit=None, unit="")
    if event.compliant is None:
        outcome, detail = Outcome.NOT_APPLICABLE, "who released first is not known"
    elif event.released_by == "agent":
        outcome = _outcome(event.compliant)
        detail = "agent hung up first" + ("" if event.compliant else " (violation)")
    else:
        outcome, detail = Outcome.PASS, f"released by {event.released_by}"
    out = [base(rule=AGENT_FIRST, outcome=outcome, detail=detail)]
    if event.procedure is not None and event.procedure in SPECIAL_STD:
        out.append(_script(event, base))
    return out


def _script(event: ReleaseJudged, base: partial[Verdict]) -> Verdict:
    """The script that ended the call kept its pauses: from its start to the system's
    release it took at least the pauses the Policy gives it (``script_pauses_s``, the
    prompts' own playback comes on top); a script started before a restart has no start
    time here and passes on its release alone."""
    name = str(event.procedure)
    took, pauses = event.script_s, event.script_pauses_s
    if took is None or pauses is None:
        return base(rule=SPECIAL_STD[name], outcome=Outcome.PASS,
                    detail=f"{name} script ran to its release")
    return base(rule=SPECIAL_STD[name], outcome=_outcome(took >= pauses), measured=took,
                limit=pauses, unit="s",
                detail=f"{name} script {_num(took)} s to the release, pauses {_num(pauses)} s")


# --- after-call work, when it ends ------------------------------------------------------


@enforces(ACW_LIMIT, policy=("agents.acw_limit_s",))
def judge_acw(call_id: str, agent: str, seconds: float, limit_s: float, overrun: bool,
              at: float, queue: str = "") -> list[Verdict]:
    """STD-100's per-call cap: the ACW after this call against its limit; ``overrun`` is
    the agent machine's own finding (``agents.state.acw_overrun``)."""
    if not call_id:
        return []
    return [Verdict(call_id=call_id, rule=ACW_LIMIT, outcome=_outcome(not overrun),
                    measured=seconds, limit=limit_s, unit="s", agent=agent, queue=queue,
                    at=at, detail=f"ACW {_num(seconds)} s of {_num(limit_s)}")]


def with_queue(verdicts: list[Verdict], queue: str) -> list[Verdict]:
    """Verdicts judged without the call at hand get its queue (the runtime knows it)."""
    return [v if v.queue else replace(v, queue=queue) for v in verdicts]
