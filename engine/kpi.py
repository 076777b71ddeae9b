"""Every KPI of the standards, computed in one place (KPI definitions, STD-139..144).

The board, the REST API and the reports all call these functions, so a figure means
the same everywhere. They are pure: plain facts in (calls with their offers and
holds, agent state spans), numbers out. The facts are handed in: ``store/kpi_facts.py``
reads them from the database, ``board/live.py`` builds them from what the core publishes.

Time points per call (KPI definitions): ``t_in`` (``routed_at``: the call reached
agent routing, after any menu such as the named-agent question; ``entered_at`` is when
our flow took the call, and stands in for records made before ``routed_at`` existed),
``t_ring`` (the answering agent's phone started ringing), ``t_ans``,
``t_end``; hold episodes inside the call; ACW is time in the ``acw`` agent state
(C-3) linked to the call. A ring count is ``ceil(seconds / ring_cycle_s)``.

Decisions made here, where the definitions leave a choice (ASSUMPTION, documented so
the reports can say so):

* **Attribution.** A call belongs to the period (day, week, interval) in which it
  reached routing (``t_in``), with everything that follows from it: its answer, its
  talk, its holds and the ACW after it, even when those run past midnight. Agent
  state time (online, busy, ready, occupancy) is clipped to the period instead, since
  it belongs to no call.
* **Undecided calls.** A call still waiting (not answered, not ended) counts as
  offered but in no rate's denominator: its fate is not known yet, and the three
  rates must add up to 100 % (answer + abandon + callback conversion).
* **Menu callers.** A call that ended before it reached routing (the caller hung up
  in the named-agent menu) is IVR-handled: not offered, not an abandon.
* **Callback conversions.** A caller who ends the call by choosing a callback counts
  as a callback conversion even when an agent had answered first (the held caller's
  choice at the hold limit, STD-042): not answered, so not in the answer rate, the
  answer ring or the service level. The agent's talk, hold and ACW on it still count
  as handling (``handled``), since the work was done.
* **Transfers.** Each answered offer of a call is one agent's segment of it: agent A
  talks from the first answer to the answer of the agent the call was transferred
  to, and so on. Per queue the call counts once; per agent each segment counts as a
  call handled by that agent. The answer ring is the first answering agent's only.
  Per queue a call with ``transfer_count`` > 0 or more than one answered offer is
  transferred (one-stop rate, STD-050); per agent only a segment the agent handed on
  (a later segment exists, or the call left by a transfer to no agent of ours) is,
  so the agent who took a transfer and finished the call made a one-stop call.
* **Resolution.** Problem-resolution rate = calls whose wrap-up disposition is
  ``resolved`` ÷ calls handled; None (no data, never 0 %) while no handled call has a
  wrap-up form (inbound forms are optional: ``outbound.wrapup_inbound``).
* **Hold.** Average hold = hold time ÷ answered calls (a call never held counts 0);
  a call still going counts its holds so far. Per agent the base is the calls they
  answered or took by transfer (their segments).
* **Occupancy** uses agent state time: (ringing + on_call + on_hold + acw) ÷ (that +
  ready). Ringing is time the agent is engaged with a call (the phone rings, they must
  answer), so it counts as handling; ready is the only idle time; busy and not-ready
  are outside both.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

from callflow.engine.policy import Policy, min_answer_delay_seconds
from callflow.engine.rules import enforces
from callflow.engine.tickets import Ticket
from callflow.engine.tickets import clocks as ticket_clocks
from callflow.engine.tickets import met_at as ticket_met_at

# Outcome classes of an inbound call (from its time points, not only its stored outcome).
ANSWERED = "answered"
ABANDONED = "abandoned"
SHORT_ABANDON = "short_abandon"
CALLBACK = "callback"
IVR_HANDLED = "ivr_handled"
WAITING = "waiting"
#: Lost before an answer because Asterisk stopped: offered, but neither answered nor an
#: abandon (the caller did not leave; nobody is to blame), so outside the rates' base.
PBX_FAILURE = "pbx_failure"

HANDLING_STATES = ("ringing", "on_call", "on_hold", "acw")
IDLE_STATES = ("ready",)
#: The wrap-up disposition that means "resolved on the call" (problem-resolution rate).
RESOLVED = "resolved"

_MS = 3  # durations are compared at millisecond precision (Asterisk's timestamps)


# --- facts ------------------------------------------------------------------------------


@dataclass(frozen=True)
class OfferFact:
    """One offer of a call to one agent (call_offers)."""

    agent_id: str
    started_at: datetime
    ended_at: datetime | None = None
    result: str | None = None  # answered | no_answer | caller_gone | failed | busy
    left_at: datetime | None = None  # answered: when this agent's part ended (a transfer)


@dataclass(frozen=True)
class HoldFact:
    """One hold episode (call_holds); open while ``ended_at`` is None."""

    started_at: datetime
    ended_at: datetime | None = None
    agent_id: str | None = None


@dataclass(frozen=True)
class CallFact:
    """An inbound call's time points and tags (calls), with its offers and holds."""

    uniqueid: str
    queue: str
    entered_at: datetime
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    agent_id: str | None = None
    outcome: str | None = None
    ring_started_at: datetime | None = None
    offers: tuple[OfferFact, ...] = ()
    holds: tuple[HoldFact, ...] = ()
    hold_total_s: float = 0.0  # used when the episodes are not itemised
    transfer_count: int = 0
    released_by: str | None = None
    release_compliant: bool | None = None
    release_procedure: str | None = None
    disposition: str | None = None
    caller: str = ""
    #: t_in: the call reached agent routing (after any menu); None: it never did (the
    #: caller left in the menu) or the record predates the field (see ``reached_routing``)
    routed_at: datetime | None = None
    menu: bool = False  # the call met a menu before routing (the named-agent question)
    #: the PIN steps an agent asked for mid-call (start, end): the caller was in the IVR,
    #: the agent heard hold music; neither talk nor hold (docs/kpi.md)
    pin_steps: tuple[tuple[datetime, datetime], ...] = ()

    @property
    def t_in(self) -> datetime:
        """When the wait starts (KPI definitions): routing, not the menu before it."""
        return self.routed_at or self.entered_at

    @property
    def reached_routing(self) -> bool:
        return not self.menu or self.routed_at is not None or self.answered_at is not None


@dataclass(frozen=True)
class StateSpan:
    """One row of the agent state log; open while ``ended_at`` is None."""

    agent_id: str
    state: str
    started_at: datetime
    ended_at: datetime | None = None
    reason: str | None = None
    call_uniqueid: str | None = None


@dataclass(frozen=True)
class Period:
    """``[start, end)`` in aware datetimes."""

    start: datetime
    end: datetime

    def holds(self, at: datetime) -> bool:
        return self.start <= at < self.end


# --- rules ------------------------------------------------------------------------------


@dataclass(frozen=True)
class KpiRules:
    """The Policy numbers the KPIs are judged by, in seconds and percent."""

    ring_cycle_s: float
    short_abandon_s: float
    service_level_s: float
    service_level_target_pct: float
    within_rings: int
    within_rings_target_pct: float
    average_ring_target: float
    late_answer_s: float
    hold_limit_s: float
    hold_breach_scope: str
    long_wait_s: float
    acw_target_s: float
    talk_target_s: float
    interval_min: int
    timezone: str
    min_answer_s: float = 0.0  # C-12 optional floor of ringing before an answer; 0 = off

    @classmethod
    def from_policy(cls, policy: Policy, queue: str | None = None) -> KpiRules:
        """The rules of ``queue`` (its service-level target may differ, QueuePolicy)."""
        p = policy.for_queue(queue) if queue is not None else policy
        return cls(
            ring_cycle_s=p.ring_cycle_s,
            short_abandon_s=p.kpi.short_abandon_s,
            service_level_s=p.rings_to_seconds(p.kpi.service_level_threshold_rings),
            service_level_target_pct=p.kpi.service_level_target_pct,
            within_rings=p.kpi.within_rings_threshold,
            within_rings_target_pct=p.kpi.within_rings_target_pct,
            average_ring_target=p.kpi.average_answer_rings_target,
            late_answer_s=p.rings_to_seconds(p.answering.apology_after_rings),
            hold_limit_s=p.hold.limit_s,
            hold_breach_scope=p.hold.breach_scope,
            long_wait_s=p.hold.max_wait_s,
            acw_target_s=p.kpi.acw_average_target_s,
            talk_target_s=p.kpi.talk_average_target_s,
            interval_min=p.kpi.report_interval_min,
            timezone=p.calendar.timezone,
            min_answer_s=min_answer_delay_seconds(p),
        )

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


def rules_by_queue(policy: Policy) -> Callable[[str], KpiRules]:
    """A cached ``queue -> KpiRules`` (for_queue re-validates the Policy each call)."""
    cache: dict[str, KpiRules] = {}

    def rules_for(queue: str) -> KpiRules:
        if queue not in cache:
            cache[queue] = KpiRules.from_policy(policy, queue)
        return cache[queue]

    return rules_for


# --- per-call figures ----------------------------------------------------------------------


def seconds(a: datetime, b: datetime) -> float:
    """``b - a`` in seconds, at millisecond precision."""
    return round((b - a).total_seconds(), _MS)


def ring_count(secs: float, ring_cycle_s: float) -> int:
    """KPI definitions: ``ceil(seconds / ring cycle)``; an instant answer is ring 1."""
    return max(1, math.ceil(round(secs, _MS) / ring_cycle_s))


@enforces("STD-139", "STD-140", policy=("kpi.short_abandon_s",))
def classify(call: CallFact, rules: KpiRules) -> str:
    """Which class of the KPI definitions a call falls in (from its time points)."""
    if call.outcome == IVR_HANDLED:
        return IVR_HANDLED
    if call.outcome == CALLBACK:  # before the answer: a held caller's choice converts too
        return CALLBACK
    if call.answered_at is not None:
        return ANSWERED
    if call.outcome == PBX_FAILURE:
        return PBX_FAILURE
    if call.ended_at is None:
        return WAITING
    if not call.reached_routing:
        return IVR_HANDLED
    if seconds(call.t_in, call.ended_at) <= rules.short_abandon_s:
        return SHORT_ABANDON
    return ABANDONED


def total_wait(call: CallFact) -> float | None:
    """``t_ans - t_in``: queue plus all ringing (never the menu before routing)."""
    return None if call.answered_at is None else seconds(call.t_in, call.answered_at)


def _ring_start(call: CallFact) -> datetime | None:
    """When the answering agent's phone began to ring: the recorded ring start, else the
    first answered offer's start (records written before ring starts were kept)."""
    if call.ring_started_at is not None:
        return call.ring_started_at
    first = _answered_offers(call)
    return first[0].started_at if first else None


@enforces("STD-006", policy=("kpi.average_answer_rings_target",))
def answer_ring(call: CallFact, rules: KpiRules) -> int | None:
    """Ring count of ``t_ans - t_ring`` at the (first) answering agent (STD-006)."""
    if call.answered_at is None:
        return None
    ring_start = _ring_start(call)
    if ring_start is None:
        return None
    return ring_count(seconds(ring_start, call.answered_at), rules.ring_cycle_s)


@enforces("STD-007", policy=("answering.min_answer_delay_rings",))
def answered_too_early(call: CallFact, rules: KpiRules) -> bool:
    """STD-007/C-12: with a minimum answer delay configured, an answer before that much
    ringing is not a standard pick-up (counted, and not within the N-rings standard)."""
    if rules.min_answer_s <= 0 or call.answered_at is None:
        return False
    ring_start = _ring_start(call)
    if ring_start is None:
        return False
    return seconds(ring_start, call.answered_at) < round(rules.min_answer_s, _MS)


def _answered_offers(call: CallFact) -> list[OfferFact]:
    return sorted((o for o in call.offers if o.result == ANSWERED and o.ended_at is not None),
                  key=lambda o: o.ended_at or o.started_at)


def _hold_seconds(hold: HoldFact, as_of: datetime) -> float:
    return max(0.0, seconds(hold.started_at, hold.ended_at or as_of))


def call_hold_s(call: CallFact, as_of: datetime) -> float:
    if call.holds:
        return sum(_hold_seconds(h, as_of) for h in call.holds)
    return call.hold_total_s


@enforces("STD-050")
def is_transferred(call: CallFact) -> bool:
    """One-stop rate (STD-050): the call went through a transfer, to an agent or elsewhere."""
    return call.transfer_count > 0 or len(_answered_offers(call)) > 1


def handed_on_segments(call: CallFact, every: Sequence[Segment]) -> set[int]:
    """Indexes of the segments whose agent handed the call on: every segment but the last,
    and the last too when the call has more transfers than agent hand-overs (it was
    transferred out of our agents, e.g. to a number or the attendant)."""
    handed = set(range(len(every) - 1))
    if every and call.transfer_count > len(every) - 1:
        handed.add(len(every) - 1)
    return handed


def handover_gaps_s(call: CallFact) -> float:
    """Time between an agent leaving the caller and the next agent's answer (a desktop
    transfer's announcement and ringing), and after the last agent left a caller sent out
    of our agents (a back office or external number: issue 18, measured live): talk of
    nobody, counted in no segment."""
    answered = _answered_offers(call)
    gaps = 0.0
    for offer, following in pairwise(answered):
        if offer.left_at is not None and following.ended_at is not None \
                and offer.left_at < following.ended_at:
            gaps += seconds(offer.left_at, following.ended_at)
    last = answered[-1] if answered else None
    if last is not None and last.left_at is not None and call.ended_at is not None \
            and last.left_at < call.ended_at:
        gaps += seconds(last.left_at, call.ended_at)
    return gaps


@dataclass(frozen=True)
class Segment:
    """One agent's part of an answered call: from their answer to when they left it (their
    leg's ``left_at``), else the next agent's answer, or t_end."""

    agent_id: str
    start: datetime
    end: datetime | None
    hold_s: float
    pin_s: float = 0.0  # mid-call PIN steps in this part (not talk)

    def talk_s(self) -> float | None:
        """``end - start`` minus hold and mid-call PIN steps (talk time, ASSUMPTION of the
        definitions)."""
        if self.end is None:
            return None
        return max(0.0, seconds(self.start, self.end) - self.hold_s - self.pin_s)


def pin_step_s(call: CallFact, start: datetime, end: datetime | None) -> float:
    """Seconds of the call's mid-call PIN steps that began within ``[start, end)``
    (identity.md: the caller keys the PIN in the IVR while the agent hears music)."""
    return sum(seconds(a, b) for a, b in call.pin_steps
               if start <= a and (end is None or a < end))


def segments(call: CallFact, as_of: datetime) -> list[Segment]:
    """The answered call split by agent (transfers); empty for unanswered calls."""
    if call.answered_at is None:
        return []
    answered = _answered_offers(call)
    if not answered:
        if call.agent_id is None:
            return []
        return [Segment(call.agent_id, call.answered_at, call.ended_at,
                        call_hold_s(call, as_of),
                        pin_step_s(call, call.answered_at, call.ended_at))]
    out = []
    for i, offer in enumerate(answered):
        start = offer.ended_at
        assert start is not None
        end = answered[i + 1].ended_at if i + 1 < len(answered) else call.ended_at
        if offer.left_at is not None:
            # the agent handed the caller on before the next one answered (a desktop
            # transfer: the announcement and the next phone's ringing are nobody's talk),
            # or stayed after the next one joined (a three-way conference, STD-049)
            end = offer.left_at
        if call.holds:
            held = sum(_hold_seconds(h, as_of) for h in call.holds
                       if (h.agent_id == offer.agent_id if h.agent_id is not None
                           else start <= h.started_at and (end is None or h.started_at < end)))
        else:
            held = call.hold_total_s if i == len(answered) - 1 else 0.0
        out.append(Segment(offer.agent_id, start, end, held, pin_step_s(call, start, end)))
    return out


# --- the figures ----------------------------------------------------------------------------


@dataclass
class Kpis:
    """Counts and sums of one scope (a queue, an agent, an interval); rates are derived.

    Every field is additive, so scopes merge with ``+=`` and the rates of a merged
    scope are right by construction.
    """

    offered: int = 0
    ivr_handled: int = 0
    short_abandons: int = 0
    answered: int = 0
    abandoned: int = 0
    callbacks: int = 0
    waiting: int = 0
    pbx_failures: int = 0  # lost unanswered when Asterisk stopped (not in ``decided``)
    answer_ring_sum: int = 0
    ring_measured: int = 0
    within_rings: int = 0
    in_service_level: int = 0
    wait_sum_s: float = 0.0
    late_answers: int = 0
    early_answers: int = 0  # before the optional minimum answer delay (C-12)
    long_waits: int = 0
    ring_no_answer: int = 0
    offers: int = 0
    handled: int = 0
    talk_s: float = 0.0
    hold_s: float = 0.0  # holds of the answered calls (of ``hold_calls``), so far
    hold_calls: int = 0  # answered calls (per agent: their segments), average hold's base
    handled_hold_s: float = 0.0  # holds of the handled (ended) calls, for AHT
    hold_episodes: int = 0
    hold_breaches: int = 0
    acw_s: float = 0.0
    transferred: int = 0
    resolved: int = 0
    dispositioned: int = 0  # handled calls with a wrap-up disposition
    agent_first_hangups: int = 0
    state_s: dict[str, float] = field(default_factory=dict)  # "busy:meal", "ready", ...

    def __iadd__(self, other: Kpis) -> Kpis:
        for name in _KPI_COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name in _KPI_DICTS:
            mine = getattr(self, name)
            for key, value in getattr(other, name).items():
                mine[key] = mine.get(key, 0.0) + value
        return self

    def __isub__(self, other: Kpis) -> Kpis:
        """Take a call's figures out again (its facts changed after it was counted)."""
        for name in _KPI_COUNTS:
            setattr(self, name, getattr(self, name) - getattr(other, name))
        for name in _KPI_DICTS:
            mine = getattr(self, name)
            for key, value in getattr(other, name).items():
                mine[key] = mine.get(key, 0.0) - value
        return self

    # --- denominators ---
    @property
    def decided(self) -> int:
        """Offered minus short abandons minus calls still waiting (the rates' base)."""
        return self.answered + self.abandoned + self.callbacks

    # --- rates (None when there is nothing to divide) ---
    @property
    @enforces("STD-140")
    def answer_rate(self) -> float | None:
        return _ratio(self.answered, self.decided)

    @property
    @enforces("STD-139", policy=("kpi.short_abandon_s",))
    def abandon_rate(self) -> float | None:
        return _ratio(self.abandoned, self.decided)

    @property
    def callback_rate(self) -> float | None:
        return _ratio(self.callbacks, self.decided)

    @property
    def service_level(self) -> float | None:
        return _ratio(self.in_service_level, self.decided)

    @property
    def average_answer_ring(self) -> float | None:
        return _ratio(self.answer_ring_sum, self.ring_measured)

    @property
    def within_rings_rate(self) -> float | None:
        return _ratio(self.within_rings, self.ring_measured)

    @property
    def asa_s(self) -> float | None:
        return _ratio(self.wait_sum_s, self.answered)

    @property
    @enforces("STD-101", policy=("kpi.talk_average_target_s",))
    def average_talk_s(self) -> float | None:
        """ACD (STD-101): talk time ÷ calls talked."""
        return _ratio(self.talk_s, self.handled)

    @property
    def average_hold_s(self) -> float | None:
        """Hold time ÷ answered calls (KPI definitions: average hold per answered call)."""
        return _ratio(self.hold_s, self.hold_calls)

    @property
    @enforces("STD-100", policy=("kpi.acw_average_target_s",))
    def average_acw_s(self) -> float | None:
        """STD-100: ACW time ÷ calls handled (a call with no ACW counts 0)."""
        return _ratio(self.acw_s, self.handled)

    @property
    def aht_s(self) -> float | None:
        return _ratio(self.talk_s + self.handled_hold_s + self.acw_s, self.handled)

    @property
    @enforces("STD-050")
    def one_stop_rate(self) -> float | None:
        return _ratio(self.handled - self.transferred, self.handled)

    @property
    def resolution_rate(self) -> float | None:
        """Resolved ÷ handled; None while no handled call has a disposition (unknown, not 0)."""
        return _ratio(self.resolved, self.handled) if self.dispositioned else None

    @property
    def online_s(self) -> float:
        return sum(v for k, v in self.state_s.items() if k != "logged_out")

    def state_total(self, prefix: str) -> float:
        return sum(v for k, v in self.state_s.items() if k == prefix
                   or k.startswith(prefix + ":"))

    @property
    def occupancy(self) -> float | None:
        busy = sum(self.state_total(s) for s in HANDLING_STATES)
        idle = sum(self.state_total(s) for s in IDLE_STATES)
        return _ratio(busy, busy + idle)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON: the counts, then every derived figure (rates 0..1, seconds)."""
        out: dict[str, Any] = {f.name: _round(getattr(self, f.name)) for f in fields(self)}
        out["state_s"] = {k: round(v, 1) for k, v in sorted(self.state_s.items())}
        for name in DERIVED:
            out[name] = _round(getattr(self, name))
        return out


#: Kpis' fields, split once (issue 20: ``dataclasses.fields`` per sum was most of the
#: board's KPI cost): the counts and sums added as numbers, the per-key dicts key by key.
_KPI_DICTS = tuple(f.name for f in fields(Kpis) if f.default_factory is dict)
_KPI_COUNTS = tuple(f.name for f in fields(Kpis) if f.name not in _KPI_DICTS)

DERIVED = ("decided", "answer_rate", "abandon_rate", "callback_rate", "service_level",
           "average_answer_ring", "within_rings_rate", "asa_s", "average_talk_s",
           "average_hold_s", "average_acw_s", "aht_s", "one_stop_rate", "resolution_rate",
           "online_s", "occupancy")


def _ratio(num: float, den: float) -> float | None:
    return None if den <= 0 else num / den


def _round(value: Any) -> Any:
    return round(value, 4) if isinstance(value, float) else value


class AcwByCall(dict[tuple[str, str], float]):
    """ACW seconds per (agent, call), with each call's total kept beside them: a queue's
    figures look a call's ACW up by key, never by scanning every (agent, call) pair (that
    scan made a 25,000-call day take minutes)."""

    def __init__(self) -> None:
        super().__init__()
        self.per_call: dict[str, float] = defaultdict(float)

    def add(self, agent_id: str, uniqueid: str, secs: float) -> None:
        self[(agent_id, uniqueid)] = self.get((agent_id, uniqueid), 0.0) + secs
        self.per_call[uniqueid] += secs


def _acw_by_call(spans: Iterable[StateSpan], as_of: datetime) -> AcwByCall:
    """ACW seconds per (agent, call): only time in the acw state counts (C-3)."""
    out = AcwByCall()
    for span in spans:
        if span.state == "acw" and span.call_uniqueid:
            end = span.ended_at or as_of
            out.add(span.agent_id, span.call_uniqueid, max(0.0, seconds(span.started_at, end)))
    return out


@enforces("STD-110", policy=("answering.agent_release_closing",))
def is_agent_first_release(call: CallFact) -> bool:
    """STD-110: an agent release neither after the 2 s rule nor a special-call ending."""
    if call.released_by != "agent":
        return False
    if call.release_compliant is not None:
        return not call.release_compliant
    return call.release_procedure is None


def _hold_figures(call: CallFact, rules: KpiRules, as_of: datetime,
                  agent_id: str | None = None) -> tuple[int, int, int]:
    """(episodes, breaches, long holds) of the call (or of one agent's holds in it)."""
    holds = [h for h in call.holds if agent_id is None or h.agent_id in (None, agent_id)]
    lengths = [_hold_seconds(h, as_of) for h in holds]
    if rules.hold_breach_scope == "call":
        breaches = int(sum(lengths) > rules.hold_limit_s) if lengths else 0
    else:
        breaches = sum(1 for s in lengths if s > rules.hold_limit_s)
    long_holds = sum(1 for s in lengths if s >= rules.long_wait_s)
    return len(lengths), breaches, long_holds


@enforces("STD-144")
def call_kpis(call: CallFact, rules: KpiRules, as_of: datetime,
              acw: dict[tuple[str, str], float] | None = None) -> Kpis:
    """The queue-side figures of one call (each call counts once)."""
    k = Kpis()
    kind = classify(call, rules)
    k.offers = len(call.offers)
    k.ring_no_answer = sum(1 for o in call.offers if o.result == "no_answer")
    if kind == IVR_HANDLED:
        k.ivr_handled = 1
        return k
    k.offered = 1
    queue_wait_end = call.answered_at or call.ended_at or as_of
    if seconds(call.t_in, queue_wait_end) >= rules.long_wait_s:
        k.long_waits += 1
    if kind == SHORT_ABANDON:
        k.short_abandons = 1
    elif kind == ABANDONED:
        k.abandoned = 1
    elif kind == CALLBACK:
        k.callbacks = 1
    elif kind == WAITING:
        k.waiting = 1
    elif kind == PBX_FAILURE:
        k.pbx_failures = 1
    else:
        _answered_figures(k, call, rules)
    if call.answered_at is not None:  # answered, or answered then converted to a callback
        _handling_figures(k, call, rules, as_of, acw)
    return k


@enforces("STD-050", "STD-140")
def _handling_figures(k: Kpis, call: CallFact, rules: KpiRules, as_of: datetime,
                      acw: dict[tuple[str, str], float] | None) -> None:
    """The agents' work on an answered call: hold, talk, ACW, transfer, resolution."""
    answered_at = call.answered_at
    assert answered_at is not None
    k.hold_calls = 1
    k.hold_s = call_hold_s(call, as_of)
    if call.ended_at is not None:
        k.handled = 1
        k.handled_hold_s = k.hold_s
        k.talk_s = max(0.0, seconds(answered_at, call.ended_at) - k.hold_s
                       - handover_gaps_s(call) - pin_step_s(call, answered_at, call.ended_at))
        if acw is not None:
            k.acw_s = (acw.per_call.get(call.uniqueid, 0.0) if isinstance(acw, AcwByCall)
                       else sum(v for (_, uid), v in acw.items() if uid == call.uniqueid))
        k.transferred = int(is_transferred(call))
        k.dispositioned = int(call.disposition is not None)
        k.resolved = int(call.disposition == RESOLVED)
        k.agent_first_hangups = int(is_agent_first_release(call))
    episodes, breaches, long_holds = _hold_figures(call, rules, as_of)
    k.hold_episodes, k.hold_breaches = episodes, breaches
    k.long_waits += long_holds


def _answered_figures(k: Kpis, call: CallFact, rules: KpiRules) -> None:
    k.answered = 1
    wait = total_wait(call)
    assert wait is not None
    k.wait_sum_s = wait
    k.in_service_level = int(wait <= rules.service_level_s)
    k.late_answers = int(wait > rules.late_answer_s)
    ring = answer_ring(call, rules)
    if ring is not None:
        k.ring_measured = 1
        k.answer_ring_sum = ring
        k.early_answers = int(answered_too_early(call, rules))
        k.within_rings = int(ring <= rules.within_rings and not k.early_answers)


def agent_call_kpis(call: CallFact, agent_id: str, rules: KpiRules, as_of: datetime,
                    acw: dict[tuple[str, str], float]) -> Kpis:
    """What one call means for one agent: offers, RONA, answer ring if they answered first,
    and their segments' talk, hold and ACW."""
    k = Kpis()
    mine = [o for o in call.offers if o.agent_id == agent_id]
    k.offers = len(mine)
    k.ring_no_answer = sum(1 for o in mine if o.result == "no_answer")
    every = segments(call, as_of)
    parts = [s for s in every if s.agent_id == agent_id]
    if not parts:
        return k
    if every[0].agent_id == agent_id and classify(call, rules) == ANSWERED:
        _answered_figures(k, call, rules)
    k.hold_calls = len(parts)
    k.hold_s = sum(s.hold_s for s in parts)
    ended = [s for s in parts if s.end is not None]
    if ended:
        k.handled = len(ended)
        k.talk_s = sum(s.talk_s() or 0.0 for s in ended)
        k.handled_hold_s = sum(s.hold_s for s in ended)
        k.acw_s = acw.get((agent_id, call.uniqueid), 0.0)
        handed_on = handed_on_segments(call, every)
        k.transferred = sum(1 for i, s in enumerate(every)
                            if s.agent_id == agent_id and s.end is not None and i in handed_on)
        last_is_mine = every[-1].agent_id == agent_id and call.ended_at is not None
        k.dispositioned = int(last_is_mine and call.disposition is not None)
        k.resolved = int(last_is_mine and call.disposition == RESOLVED)
        k.agent_first_hangups = int(every[-1].agent_id == agent_id and is_agent_first_release(call))
    episodes, breaches, _ = _hold_figures(call, rules, as_of, agent_id)
    k.hold_episodes, k.hold_breaches = episodes, breaches
    return k


def state_time(spans: Iterable[StateSpan], period: Period, as_of: datetime) -> dict[str, float]:
    """Seconds per state bucket (``busy:<reason>``, ``not_ready:<reason>``, ``acw``...) inside
    the period; open spans run to ``as_of``."""
    out: dict[str, float] = defaultdict(float)
    for span in spans:
        start = max(span.started_at, period.start)
        end = min(span.ended_at or as_of, period.end, as_of)
        if end <= start:
            continue
        key = span.state
        if span.state in ("busy", "not_ready"):
            key = f"{span.state}:{span.reason or ''}"
        out[key] += seconds(start, end)
    return dict(out)


# --- scopes ---------------------------------------------------------------------------------


def in_period(calls: Iterable[CallFact], period: Period) -> list[CallFact]:
    """Calls attributed to the period: those that reached routing inside it."""
    return [c for c in calls if period.holds(c.entered_at)]


def queue_kpis(calls: Iterable[CallFact], rules_for: Callable[[str], KpiRules],
               as_of: datetime, spans: Iterable[StateSpan] = ()) -> dict[str, Kpis]:
    """Per queue, over the given calls (filter them with ``in_period`` first)."""
    acw = _acw_by_call(spans, as_of)
    out: dict[str, Kpis] = {}
    for call in calls:
        out.setdefault(call.queue, Kpis())
        out[call.queue] += call_kpis(call, rules_for(call.queue), as_of, acw)
    return out


def agent_kpis(calls: Iterable[CallFact], spans: Sequence[StateSpan],
               rules_for: Callable[[str], KpiRules], period: Period,
               as_of: datetime, agents: Iterable[str] = ()) -> dict[str, Kpis]:
    """Per agent: their part of the calls, plus their state time clipped to the period."""
    acw = _acw_by_call(spans, as_of)
    out: dict[str, Kpis] = {a: Kpis() for a in agents}
    for call in calls:
        involved = {o.agent_id for o in call.offers}
        if call.agent_id:
            involved.add(call.agent_id)
        for agent_id in involved:
            out.setdefault(agent_id, Kpis())
            out[agent_id] += agent_call_kpis(call, agent_id, rules_for(call.queue), as_of, acw)
    by_agent: dict[str, list[StateSpan]] = defaultdict(list)
    for span in spans:
        by_agent[span.agent_id].append(span)
    for agent_id, own in by_agent.items():
        out.setdefault(agent_id, Kpis())
        times = state_time(own, period, as_of)
        for key, value in times.items():
            out[agent_id].state_s[key] = out[agent_id].state_s.get(key, 0.0) + value
    return out


def total(scopes: Iterable[Kpis]) -> Kpis:
    out = Kpis()
    for k in scopes:
        out += k
    return out


# --- intervals and the waiting profile ----------------------------------------------------


def interval_starts(period: Period, interval_min: int) -> list[datetime]:
    step = timedelta(minutes=interval_min)
    out = []
    at = period.start
    while at < period.end:
        out.append(at)
        at += step
    return out


def interval_kpis(calls: Iterable[CallFact], rules: KpiRules, period: Period,
                  as_of: datetime) -> list[tuple[datetime, Kpis]]:
    """The period cut in ``rules.interval_min`` pieces, each with its calls (by t_in)."""
    starts = interval_starts(period, rules.interval_min)
    buckets = [Kpis() for _ in starts]
    step = rules.interval_min * 60
    for call in in_period(calls, period):
        index = int((call.entered_at - period.start).total_seconds() // step)
        buckets[index] += call_kpis(call, rules, as_of)
    return list(zip(starts, buckets, strict=True))


def waiting_profile(calls: Iterable[CallFact], period: Period, interval_min: int,
                    as_of: datetime) -> list[int]:
    """The most calls waiting at once (t_in until answer or end) in each interval.

    A sweep over the waits: +1 when a call reaches routing, -1 when it is answered or
    ends. A wait that started before the period counts from its start.
    """
    starts = interval_starts(period, interval_min)
    step = interval_min * 60
    changes: list[tuple[datetime, int]] = []
    for call in calls:
        until = call.answered_at or call.ended_at or as_of
        if until <= period.start or call.t_in >= period.end or until <= call.t_in:
            continue
        changes.append((max(call.t_in, period.start), 1))
        changes.append((until, -1))
    changes.sort(key=lambda c: (c[0], c[1]))  # leaving before entering at the same instant
    peaks = [0] * len(starts)
    current = 0
    for at, delta in changes:
        current += delta
        if delta > 0 and at < period.end:
            index = int((at - period.start).total_seconds() // step)
            peaks[index] = max(peaks[index], current)
    # a wait spanning whole intervals keeps them non-zero
    current = 0
    pos = 0
    for i, start in enumerate(starts):
        while pos < len(changes) and changes[pos][0] <= start:
            current += changes[pos][1]
            pos += 1
        peaks[i] = max(peaks[i], current)
    return peaks


# --- standards: target, actual, pass/fail ---------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One standard judged over one scope; ``passed`` is None when there is no target or no
    data (shown as information, never as a pass)."""

    std: str
    name: str
    unit: str
    target: str
    actual: float | int | None
    passed: bool | None


def _at_most(value: float | None, limit: float) -> bool | None:
    return None if value is None else round(value, 4) <= limit


def _at_least(value: float | None, floor: float) -> bool | None:
    return None if value is None else round(value, 4) >= floor


def checks(k: Kpis, rules: KpiRules, scope: str) -> list[Check]:
    """The standards a report shows for a queue (``scope="queue"``) or an agent."""
    out = [
        Check("STD-144", "calls handled", "calls", "", k.handled, None),
        Check("KPI", "offered", "calls", "", k.offered, None),
        Check("STD-006", "average answer ring", "rings", f"<= {rules.average_ring_target:g}",
              _r(k.average_answer_ring), _at_most(k.average_answer_ring,
                                                  rules.average_ring_target)),
        Check("STD-008", f"answered within {rules.within_rings} rings", "%",
              f">= {rules.within_rings_target_pct:g}", _pct(k.within_rings_rate),
              _at_least(_pct(k.within_rings_rate), rules.within_rings_target_pct)),
        Check("STD-008", "ring-no-answer offers", "offers", "", k.ring_no_answer, None),
        Check("STD-009", "late answers (apology due)", "calls", "", k.late_answers, None),
        Check("STD-007", "answered before the minimum delay", "calls",
              "0" if rules.min_answer_s > 0 else "", k.early_answers,
              (k.early_answers == 0 if k.ring_measured else None)
              if rules.min_answer_s > 0 else None),
        Check("STD-040", "hold breaches", "holds", "0", k.hold_breaches,
              k.hold_breaches == 0 if k.handled else None),
        Check("STD-100", "average ACW", "s", f"<= {rules.acw_target_s:g}", _r(k.average_acw_s),
              _at_most(k.average_acw_s, rules.acw_target_s)),
        Check("STD-101", "average talk time (ACD)", "s", f"<= {rules.talk_target_s:g}",
              _r(k.average_talk_s), _at_most(k.average_talk_s, rules.talk_target_s)),
        Check("STD-110", "agent-first hang-ups", "calls", "0", k.agent_first_hangups,
              k.agent_first_hangups == 0 if k.handled else None),
        Check("STD-050", "one-stop rate", "%", "", _pct(k.one_stop_rate), None),
        Check("KPI", "AHT", "s", "", _r(k.aht_s), None),
    ]
    if scope == "queue":
        out[2:2] = [
            Check("KPI", "service level", "%", f">= {rules.service_level_target_pct:g}",
                  _pct(k.service_level), _at_least(_pct(k.service_level),
                                                   rules.service_level_target_pct)),
            Check("STD-140", "answer rate", "%", "", _pct(k.answer_rate), None),
            Check("STD-139", "abandon rate", "%", "", _pct(k.abandon_rate), None),
            Check("STD-047", "callback conversions", "calls", "", k.callbacks, None),
            Check("KPI", "short abandons", "calls", "", k.short_abandons, None),
            Check("KPI", "ASA", "s", "", _r(k.asa_s), None),
            Check("STD-043", f"waits reaching {rules.long_wait_s:g} s", "waits", "0",
                  k.long_waits, k.long_waits == 0 if k.offered else None),
        ]
    else:
        out.append(Check("KPI", "occupancy", "%", "", _pct(k.occupancy), None))
        out.append(Check("STD-103", "online time", "s", "", round(k.online_s, 1), None))
    return out


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _pct(value: float | None) -> float | None:
    return None if value is None else round(value * 100, 2)


# --- calendar ------------------------------------------------------------------------------


def day_period(day: date, zone: ZoneInfo) -> Period:
    """One local day (23 or 25 hours on DST changes), as UTC instants: arithmetic on
    datetimes sharing a zone is wall-clock arithmetic in Python, which DST would skew."""
    start = datetime.combine(day, time(0), zone).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(0), zone).astimezone(UTC)
    return Period(start, end)


def week_period(monday: date, zone: ZoneInfo) -> Period:
    start = day_period(monday, zone).start
    return Period(start, day_period(monday + timedelta(days=6), zone).end)


def local_day(at: datetime, zone: ZoneInfo) -> date:
    return at.astimezone(zone).date()


# --- tickets (issue 19) --------------------------------------------------------------------


@dataclass(frozen=True)
class TicketKpis:
    """Ticket figures of a period (tickets logged in it), as fractions 0..1 (None: nothing
    to count). ``reply_rate_met``: the reply rate reaches ``kpi.reply_rate_target_pct``."""

    logged: int
    complaints: int
    timeliness: float | None  # clocks due by as_of that were met on time
    reply_rate: float | None  # tickets answered (replied or resolved), STD-133
    reply_rate_met: bool | None
    complaint_rate: float | None  # complaints per answered call
    followup_coverage: float | None  # complaints whose follow-up contact was made, STD-134

    def as_dict(self) -> dict[str, Any]:
        return {"logged": self.logged, "complaints": self.complaints,
                "timeliness_pct": _pct(self.timeliness), "reply_rate_pct": _pct(self.reply_rate),
                "reply_rate_met": self.reply_rate_met,
                "complaint_rate_pct": _pct(self.complaint_rate),
                "followup_coverage_pct": _pct(self.followup_coverage)}


@enforces("STD-133", policy=("kpi.reply_rate_target_pct",))
@enforces("STD-124")
def ticket_kpis(tickets: Sequence[Ticket], answered_calls: int, as_of: datetime,
                policy: Policy) -> TicketKpis:
    """Timeliness (each ticket clock due by ``as_of``: met by its due time?), reply rate
    (STD-133: every issue gets a reply, target 100%), complaint rate (complaints logged
    per answered call) and follow-up coverage (complaints followed up, STD-134)."""
    due = on_time = answered = followed = 0
    complaints = [t for t in tickets if t.type in policy.tickets.close_needs_followup]
    for ticket in tickets:
        for clock in ticket_clocks(ticket, policy):
            if clock.due_at > as_of:
                continue
            due += 1
            met = ticket_met_at(ticket, clock)
            if met is None and clock.meets == "reply":
                met = ticket.resolved_at
            on_time += met is not None and met <= clock.due_at
        answered += ticket.replied_at is not None or ticket.resolved_at is not None
    followed = sum(t.followed_up_at is not None for t in complaints)
    reply_rate = _ratio(answered, len(tickets))
    target = policy.kpi.reply_rate_target_pct / 100
    return TicketKpis(
        logged=len(tickets), complaints=len(complaints),
        timeliness=_ratio(on_time, due), reply_rate=reply_rate,
        reply_rate_met=None if reply_rate is None else reply_rate >= target,
        complaint_rate=_ratio(len(complaints), answered_calls),
        followup_coverage=_ratio(followed, len(complaints)))
# --- the post-call survey (STD-120, issue 18) ---------------------------------------------


@dataclass(frozen=True)
class SurveyFact:
    """One survey question of one call: ``score`` 1-5, None = no response."""

    agent_id: str
    queue: str
    score: int | None
    question: str = ""  # the Policy's question key (survey.questions)


@dataclass
class SurveyFigures:
    """Survey KPIs of a set of questions asked. Response rate = answered ÷ asked (a hang-up,
    silence or garbage is asked but not answered); mean score = Σ score ÷ answered, None
    while nothing was answered (unknown, not 0)."""

    asked: int = 0
    answered: int = 0
    score_sum: int = 0

    @property
    def response_rate(self) -> float | None:
        return _ratio(self.answered, self.asked)

    @property
    def mean_score(self) -> float | None:
        return _ratio(self.score_sum, self.answered)

    def add(self, fact: SurveyFact) -> None:
        self.asked += 1
        if fact.score is not None:
            self.answered += 1
            self.score_sum += fact.score

    def as_dict(self) -> dict[str, Any]:
        return {"asked": self.asked, "answered": self.answered,
                "response_rate": _round(self.response_rate),
                "mean_score": _round(self.mean_score)}


@enforces("STD-120")
def survey_kpis(facts: Iterable[SurveyFact]) -> dict[str, Any]:
    """Response rate and mean score in total, per agent, per queue and per question
    (STD-120: the customers' ratings summarised for appraisal)."""
    total = SurveyFigures()
    agents: dict[str, SurveyFigures] = defaultdict(SurveyFigures)
    queues: dict[str, SurveyFigures] = defaultdict(SurveyFigures)
    questions: dict[str, SurveyFigures] = defaultdict(SurveyFigures)
    for fact in facts:
        total.add(fact)
        agents[fact.agent_id].add(fact)
        queues[fact.queue].add(fact)
        questions[fact.question].add(fact)
    return {"total": total.as_dict(),
            "agents": {a: f.as_dict() for a, f in sorted(agents.items())},
            "queues": {q: f.as_dict() for q, f in sorted(queues.items())},
            "questions": {q: f.as_dict() for q, f in sorted(questions.items())}}
