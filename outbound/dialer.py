"""The outbound dialer: due tasks become agent-first calls, every attempt is recorded.

(The feature that starts it and serves the tasks API is ``outbound/feature.py``.)

The rules live in ``callflow.engine.outbound`` (pure); this module is the edge
that applies them (STD-081..096):

* **Scheduling.** A loop ticks every ``tick_s``. When the AMI link is up and the
  calling window is open (STD-085), one grouped read says who has tasks due, and
  each free agent gets one: first the agent's own due tasks (dropped-call and
  named-agent callbacks, STD-069, STD-072), then, when no inbound caller is
  waiting, a due pool task. Tasks are claimed in the store atomically, one number
  never twice at once (STD-090, also across engines: ``repo.claim_next_task``),
  never a number on the do-not-call list, never a campaign's number outside its
  contact window, while it is paused, or for an agent it does not use
  (``engine/campaigns.py``: the skipped campaigns are handed to the claim).
  An idle tick costs three small reads (who has tasks due, the campaigns, the
  task feed), whatever the size of the task list.
* **Agent-first.** The agent's softphone rings first (agent state ``ringing``, so
  no inbound call is offered to them), then the dialplan rings the customer for
  six rings (STD-081) presenting the centre's number. Preview mode (STD-082): due
  tasks are pushed to the agent's desktop and dialled when the agent presses dial
  (``POST /api/v1/tasks/{id}/dial``, also allowed in agent-first mode).
* **Facts.** AMI events of the attempt's two legs (by ChannelId) feed the pure
  attempt machine; the task is finished the moment the outcome is known (at the
  customer's answer, or at the end of the ringing), so a long conversation never
  holds a claim. An attempt that never reached the customer (Originate refused,
  AMI down, the agent's own phone not answered) releases its claim without using
  up an attempt: tasks are never lost.
* **Link loss.** After every AMI resync, and when an attempt hears nothing for
  longer than its ring limits allow, the live channels are listed; an attempt
  whose channel is gone is closed as seen (``unknown`` if the customer was being
  rung). Claims of a crashed engine go back to pending after ``stale_claim_s``.
* **Desktops.** Each tick reads the tasks written since the last one and publishes
  them as ``{"type": "task", "change": "created"|"updated"|"preview", "task": {...}}``
  on ``board`` and ``agent:<owner>`` (and the former owner's, and the dialling
  agent's), whoever wrote them (the API, the inbound flow, another engine); each
  attempt's progress goes out as ``{"type": "task_attempt", ...}``. Clients upsert
  tasks by id; on (re)connect they list them over REST.
* **Owner logged out** (decided here): an agent's due task whose owner is not
  logged in goes back to the pool ``outbound.owner_absent_grace_min`` after it fell
  due, with a note and an audit entry; named-agent tasks (STD-072: the customer
  asked for that person) stay with their agent and raise one board alarm so a
  supervisor can reassign them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from callflow.agents import state as agent_state
from callflow.engine import calls, campaigns, outbound
from callflow.engine.effects import Alarm, ListChannels
from callflow.engine.numbers import DEFAULT_COUNTRY
from callflow.engine.outbound import Attempt, AttemptEvent, AttemptOutcome, Decision
from callflow.engine.policy import Policy
from callflow.engine.rules import enforces
from callflow.errors import AmiActionFailed, AmiError, AmiLinkDown, CallflowError, StateError
from callflow.store import campaigns as campaign_store
from callflow.store import repo
from callflow.store.db import Store
from callflow.store.models import OPEN_TASK_STATUSES, CallbackTask, Campaign, TaskAttempt

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from callflow.engine.clock import Clock
    from callflow.runtime.asterisk import AmiFrame
    from callflow.runtime.core import Runtime

log = logging.getLogger(__name__)

OUTBOUND_CONTEXT = "callflow-outbound"
#: Seconds between scheduler ticks: the longest a free agent waits for a due task.
TICK_S = 0.5
#: Slack on top of the ring limits before an attempt with no news is checked.
NEWS_SLACK_S = 15.0
#: Claims older than the ring limits plus this are a crashed engine's (released).
STALE_CLAIM_SLACK_S = 120.0
STALE_SWEEP_EVERY_S = 60.0
FAILED_TICK_PAUSE_S = 5.0
#: Asterisk may publish the agent leg's Hangup before the customer leg's (each is sent
#: when its channel is destroyed, in no fixed order): the agent's is held this long for
#: the customer's, whose cause the attempt keeps (e.g. 17 busy).
CUSTOMER_CAUSE_GRACE_S = 1.0
ABSENT_SWEEP_EVERY_S = 10.0
#: The desktop feed re-reads this much before its last read (late commits), in batches.
FEED_OVERLAP_S = 5.0
FEED_BATCH = 500


# --- payloads ---------------------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def task_payload(task: CallbackTask) -> dict[str, Any]:
    """A task as the API and the desktops show it."""
    return {
        "id": task.id, "kind": task.kind, "number": task.number,
        "owner_agent_id": task.owner_agent_id, "status": task.status,
        "due_at": _iso(task.due_at), "deadline_at": _iso(task.deadline_at),
        "attempts": task.attempts, "max_attempts": task.max_attempts,
        "last_outcome": task.last_outcome, "note": task.note,
        "created_from_call_id": task.created_from_call_id, "campaign_id": task.campaign_id,
        "created_at": _iso(task.created_at), "updated_at": _iso(task.updated_at),
    }


def attempt_payload(row: TaskAttempt) -> dict[str, Any]:
    """One attempt of a task's history; ``counted`` False = refunded (never reached)."""
    return {
        "id": row.id, "at": _iso(row.at), "outcome": row.outcome,
        "counted": row.outcome not in outbound.REFUNDED, "hangup_cause": row.hangup_cause,
        "call_uniqueid": row.call_uniqueid, "agent_id": row.agent_id,
    }


# --- creating tasks ---------------------------------------------------------------------


def create_callback(store: Store, kind: str, number: str, owner_agent_id: str | None = None,
                    due: datetime | None = None, created_from_call_id: str | None = None, *,
                    policy: Policy | None = None, now: datetime | None = None, note: str = "",
                    follow_up: outbound.FollowUpReason = "general",
                    max_attempts: int | None = None,
                    country: str = DEFAULT_COUNTRY) -> tuple[CallbackTask, bool]:
    """Create a task to call ``number`` back (blocking: call it from a worker thread).

    For the inbound flow (STD-047 callback request, STD-055 missed call, STD-069
    dropped call with the agent as owner, STD-072 named agent) and the API.
    ``due=None`` takes the kind's rule (``engine.outbound.plan_due``); a given
    ``due`` is moved into the calling window (STD-085). ``created_from_call_id``
    is the Asterisk uniqueid of the call that asked for it. ``policy`` should be
    the deployment's (its calling window and attempts); ``now`` its Clock's wall time.

    Returns ``(task, created)``. An open task of the same number and kind is the
    same task (STD-090): it is returned with ``created=False``, its due time moved
    earlier if this request's is earlier (C-11), nothing else changed. Raises
    ``StateError``: ``invalid_number``, ``invalid_kind``, ``owner_required``
    (named-agent tasks need their agent); ``StoreError`` if the database refuses.
    The dialer tells the desktops within one tick, whoever created the task.
    """
    with store.session() as s:
        return add_callback(s, kind, number, owner_agent_id, due, created_from_call_id,
                            policy=policy, now=now, note=note, follow_up=follow_up,
                            max_attempts=max_attempts, country=country)


def add_callback(s: Session, kind: str, number: str, owner_agent_id: str | None = None,
                 due: datetime | None = None, created_from_call_id: str | None = None, *,
                 policy: Policy | None = None, now: datetime | None = None, note: str = "",
                 follow_up: outbound.FollowUpReason = "general",
                 max_attempts: int | None = None,
                 country: str = DEFAULT_COUNTRY) -> tuple[CallbackTask, bool]:
    """``create_callback`` inside the caller's transaction (e.g. a records writer).
    ``country``: how a prefixed number is read (the outbound trunk's, engine/numbers.py)."""
    policy = policy or Policy.defaults()
    digits = outbound.normalize_number(number, country)
    now = now or datetime.now(UTC)
    plan = outbound.plan_due(kind, now, policy, requested_at=due, follow_up=follow_up)
    if kind == "named_agent" and not owner_agent_id:
        raise StateError("owner_required", "a named-agent callback needs its agent (STD-072)")
    task, created = repo.add_task(
        s, kind, digits, plan.due_at, owner_agent_id=owner_agent_id,
        max_attempts=max_attempts or policy.outbound.max_attempts,
        deadline_at=plan.deadline_at, note=note, created_from_uniqueid=created_from_call_id)
    if not created and task.status == "pending" and plan.due_at < task.due_at:
        task = repo.update_task(s, task.id, due_at=outbound.earliest_due(
            [plan.due_at, task.due_at]))
        log.info("task #%d (%s %s): due moved earlier to %s (C-11)", task.id, kind, digits,
                 task.due_at.isoformat())
    return task, created


# --- the dialer -----------------------------------------------------------------------------


@dataclass
class _Live:
    """An attempt in flight."""

    attempt: Attempt
    news_at: float  # monotonic time of the last fact (or the Originate)
    finishing: bool = False


@dataclass(frozen=True)
class LegAttempt:
    """A live attempt as seen from one of its legs (what the recordings feature needs)."""

    attempt_id: str  # also the agent leg's uniqueid (the Originate's ChannelId)
    agent_id: str
    number: str


class Dialer:
    """The scheduler and the AMI side of outbound calls; one per engine process."""

    def __init__(self, store: Store, runtime: Runtime, policy: Policy, clock: Clock, *,
                 claimed_by: str | None = None, context: str = OUTBOUND_CONTEXT,
                 route: outbound.OutboundRoute | None = None) -> None:
        self.store = store
        # the outbound trunk's number format and presented numbers (callflow.trunks)
        self.route = route or outbound.OutboundRoute()
        self.runtime = runtime
        self.policy = policy
        self.clock = clock
        self.claimed_by = claimed_by or f"{socket.gethostname()}:{os.getpid()}"
        self.context = context
        self.attempts: dict[str, _Live] = {}  # attempt id (agent leg ChannelId) -> live
        self._legs: dict[str, str] = {}  # customer leg uniqueid -> attempt id
        self._customer_gone: set[str] = set()  # attempts whose customer leg hung up
        self._held_back: dict[str, tuple[AttemptEvent, asyncio.TimerHandle]] = {}
        self._claiming: set[str] = set()  # agents a claim is being made for
        self._reserved: set[str] = set()  # agents with own due tasks (STD-069)
        self._known: dict[int, _Seen] = {}  # task id -> what the desktops last heard
        self._previewed: dict[str, int] = {}  # agent -> task id offered (preview mode)
        self._alarmed_absent: set[int] = set()
        self._cooldown: dict[str, float] = {}  # agent -> monotonic time their dials resume
        self._background: set[asyncio.Task[Any]] = set()
        self._resyncs_seen = runtime.stats.resyncs
        self._last_stale_sweep = -STALE_SWEEP_EVERY_S
        self._last_absent_sweep = -ABSENT_SWEEP_EVERY_S
        self._feed_since = datetime.now(UTC)
        self._campaigns: list[campaigns.CampaignRules] = []
        self.stats: dict[str, int] = {"ticks": 0, "originates": 0, "refused": 0,
                                      "finished": 0, "released": 0, "vanished": 0}
        for name in ("Newchannel", "OriginateResponse", "Newstate", "DialBegin", "DialEnd",
                     "HangupRequest", "SoftHangupRequest", "Hangup"):
            runtime.on_ami(name, self._on_frame)

    def attempt_for_leg(self, uid: str) -> LegAttempt | None:
        """The live attempt whose agent leg (the attempt id) or customer leg is ``uid``."""
        attempt_id = uid if uid in self.attempts else self._legs.get(uid)
        live = self.attempts.get(attempt_id or "")
        if attempt_id is None or live is None:
            return None
        return LegAttempt(attempt_id, live.attempt.agent_id, live.attempt.number)

    # --- limits -----------------------------------------------------------------------

    @property
    def ring_budget_s(self) -> float:
        """The longest an attempt can ring: the agent's offer plus the customer's six rings."""
        return (outbound.agent_ring_seconds(self.policy)
                + outbound.customer_ring_seconds(self.policy))

    @property
    def stale_claim_s(self) -> float:
        return self.ring_budget_s + STALE_CLAIM_SLACK_S

    def holds_agent(self, agent_id: str) -> bool:
        """True while the dialer is about to give ``agent_id`` an outbound call: their own
        callback is due (STD-069: before any new inbound call) or a claim is under way.
        Inbound routing should skip such an agent."""
        return agent_id in self._reserved or agent_id in self._claiming

    # --- the tick -----------------------------------------------------------------------

    async def tick(self) -> None:
        """One round: feed the desktops, sweep, and dial (or preview) what is due.

        Cheap when idle: one grouped read of who has due tasks, one of the campaigns,
        one of the tasks changed since the last round; nothing scans the task list.
        """
        self.stats["ticks"] += 1
        now = self.clock.wall()
        await self._push_changes()
        await self._sweep(now)
        await self._check_links()
        ready = self.runtime.pbx_up and outbound.in_calling_window(now, self.policy)
        if not ready:
            self._reserved = set()
            return
        self._campaigns, (owners, pool) = await asyncio.to_thread(self.store.read, _due_now, now)
        preview = self.policy.outbound.dial_mode == "preview"
        self._reserved = owners if not preview and outbound.own_callbacks_first(self.policy) \
            else set()
        if not owners and not pool:
            return
        if preview:
            await self._offer_previews(owners, pool > 0, now)
        else:
            await self._dial_due(owners, pool > 0, now)

    def _free_agents(self) -> list[agent_state.AgentSnapshot]:
        busy = {live.attempt.agent_id for live in self.attempts.values()} | self._claiming
        now = self.clock.now()
        free = [a for a in self.runtime.agents.values()
                if agent_state.routable(a) and a.agent_id not in busy
                and self._cooldown.get(a.agent_id, now) <= now]
        return sorted(free, key=lambda a: (a.since, a.agent_id))

    def _inbound_waiting(self) -> bool:
        """A caller is in our hands with no agent ringing: pool tasks wait (inbound first)."""
        return any(c.phase is calls.Phase.ROUTING for c in self.runtime.live_calls())

    async def _dial_due(self, owners: set[str], pool: bool, now: datetime) -> None:
        for agent in self._free_agents():
            own = agent.agent_id in owners
            if not outbound.may_dial_now(own, pool, self._inbound_waiting(), self.policy):
                continue
            task = await self._claim(agent.agent_id, now, own)
            if task is None:
                if not own and not self._agent_only_campaigns(agent.agent_id, now):
                    pool = False  # nothing claimable left in the pool this tick
                continue
            await self._start(task, agent.agent_id)

    def _presented_key(self, task: CallbackTask) -> str:
        """The campaign's choice of presented number, if the task has one."""
        for rules in self._campaigns:
            if rules.campaign_id == task.campaign_id:
                return rules.caller_id_key
        return ""

    def _skipped_for(self, agent_id: str, now: datetime) -> frozenset[int]:
        member = self.runtime.roster.by_id(agent_id)
        return campaigns.skipped_for(agent_id, self._campaigns, now, self.policy,
                                     member.queues if member is not None else ())

    def _agent_only_campaigns(self, agent_id: str, now: datetime) -> bool:
        """Are campaigns kept from ``agent_id`` that other agents may dial (so a failed
        claim by this agent says nothing about the pool)?"""
        return (self._skipped_for(agent_id, now)
                != campaigns.skipped_for(None, self._campaigns, now, self.policy))

    async def _claim(self, agent_id: str, now: datetime, own: bool) -> CallbackTask | None:
        skip = self._skipped_for(agent_id, now)
        self._claiming.add(agent_id)
        try:
            return await asyncio.to_thread(
                self.store.run, repo.claim_next_task, now, claimed_by=self.claimed_by,
                owner_agent_id=agent_id if own else None, skip_campaigns=skip)
        finally:
            self._claiming.discard(agent_id)

    # --- one attempt ---------------------------------------------------------------------

    async def dial(self, task_id: int, agent_id: str) -> str:
        """Dial one task now with ``agent_id`` (preview: the agent pressed dial, STD-082).

        Returns the attempt id. Raises ``StateError``: ``agent_not_ready``,
        ``not_found``, ``task_not_pending``, ``number_dialing``, ``ami_down``.
        """
        if not self.runtime.pbx_up:
            raise StateError("ami_down", "the PBX link is down; the task stays due")
        agent = self.runtime.agents.get(agent_id)
        if agent is None or not agent_state.routable(agent) or agent_id in self._claiming \
                or any(live.attempt.agent_id == agent_id for live in self.attempts.values()):
            state = agent.state.value if agent is not None else "unknown"
            raise StateError("agent_not_ready", f"agent {agent_id} is {state}")
        self._claiming.add(agent_id)
        try:
            task = await asyncio.to_thread(self.store.run, repo.claim_task, task_id,
                                           self.clock.wall(), claimed_by=self.claimed_by)
        finally:
            self._claiming.discard(agent_id)
        attempt_id = await self._start(task, agent_id)
        if attempt_id is None:
            raise StateError("agent_not_ready", f"agent {agent_id} was taken meanwhile")
        return attempt_id

    async def _start(self, task: CallbackTask, agent_id: str) -> str | None:
        """Ring the agent, then the customer. None when the agent was taken meanwhile."""
        member = self.runtime.roster.by_id(agent_id)
        agent = self.runtime.agents.get(agent_id)
        attempt_id = f"cfo-{task.id}-{task.attempts}-{secrets.token_hex(3)}"
        try:
            outbound.normalize_number(task.number, self.route.country)
        except StateError as exc:  # written by something that did not check it
            log.warning("task #%d: %s; not dialled, unreachable", task.id, exc)
            failed = outbound.new_attempt(attempt_id, task.id, task.kind, task.number,
                                          agent_id, self.clock.wall().timestamp())
            self._spawn(self._finish(replace(failed, outcome=AttemptOutcome.INVALID_NUMBER,
                                             detail=str(exc))))
            return None
        if member is None or agent is None or not agent_state.routable(agent):
            await self._release(task, AttemptOutcome.NOT_OFFERED, agent_id, attempt_id,
                                due_at=task.due_at)
            return None
        try:
            self.runtime.agent_event(agent_id, agent_state.CallOffered(attempt_id, outbound=True))
        except StateError as exc:
            log.info("task #%d: agent %s cannot take it (%s)", task.id, agent_id, exc)
            await self._release(task, AttemptOutcome.NOT_OFFERED, agent_id, attempt_id,
                                due_at=task.due_at)
            return None
        attempt = outbound.new_attempt(attempt_id, task.id, task.kind, task.number, agent_id,
                                       self.clock.wall().timestamp())
        self.tell(task, also=agent_id)
        self.attempts[attempt_id] = _Live(attempt, self.clock.now())
        desk = agent.extension or member.endpoint  # hot-desking: where the agent logged in
        originate = outbound.originate(attempt, self.policy, desk, self.context, self.route,
                                       presented_key=self._presented_key(task))
        log.info("task #%d: dialling %s for agent %s (attempt %s, %s ms)", task.id,
                 task.number, agent_id, attempt_id, originate.timeout_ms)
        self.stats["originates"] += 1
        try:
            await self.runtime.request(originate)
        except (AmiLinkDown, AmiActionFailed) as exc:
            self.stats["refused"] += 1
            log.warning("task #%d: Originate refused: %s", task.id, exc)
            self.apply(attempt_id, outbound.OriginateRefused(str(exc), time.time()))
        except AmiError as exc:  # a timeout: it may still have been queued; facts will tell
            log.warning("task #%d: Originate unconfirmed (%s); waiting for its events",
                        task.id, exc)
        self._publish_attempt(self.attempts.get(attempt_id))
        return attempt_id

    def apply(self, attempt_id: str, event: AttemptEvent) -> None:
        """Feed one fact to an attempt and carry out what follows from it."""
        live = self.attempts.get(attempt_id)
        if live is None:
            return
        before, after = live.attempt, outbound.step(live.attempt, event)
        if after == before:
            return
        live.attempt = after
        live.news_at = self.clock.now()
        if after.customer_uid and after.customer_uid not in self._legs:
            self._legs[after.customer_uid] = attempt_id
        agent_id = after.agent_id
        if before.agent_answered_at is None and after.agent_answered_at is not None:
            self._agent_quiet(agent_id, agent_state.CallAnswered(attempt_id))
        if before.outcome is None and after.outcome is not None and not live.finishing:
            live.finishing = True
            self._spawn(self._finish(after))
        if after.phase is outbound.Phase.ENDED:
            self._ended(live, after)
        elif after.phase is not before.phase:
            self._publish_attempt(live)

    def _ended(self, live: _Live, attempt: Attempt) -> None:
        agent_id, attempt_id = attempt.agent_id, attempt.attempt_id
        agent = self.runtime.agents.get(agent_id)
        if agent is not None and agent.call_id == attempt_id:
            if attempt.agent_answered_at is not None:
                self._agent_quiet(agent_id, agent_state.CallEnded(attempt_id))
            elif outbound.agent_rang_out(attempt):
                self._agent_quiet(agent_id, agent_state.OfferTimedOut(attempt_id))
            else:
                self._agent_quiet(agent_id, agent_state.OfferWithdrawn(attempt_id))
                self._cool_down(attempt)
        record = outbound.call_record(attempt)
        if record is not None:
            self.runtime.execute([outbound.OutboundCallEnded(record)])
        self._publish_attempt(live)
        self.attempts.pop(attempt_id, None)
        self._customer_gone.discard(attempt_id)
        held = self._held_back.pop(attempt_id, None)
        if held is not None:
            held[1].cancel()
        if attempt.customer_uid:
            self._legs.pop(attempt.customer_uid, None)
        log.info("attempt %s (task #%d) ended: %s, cause %s", attempt_id, attempt.task_id,
                 attempt.outcome, attempt.cause)

    def _cool_down(self, attempt: Attempt) -> None:
        """The agent's leg failed without ringing out (softphone refused the call, codec
        mismatch, AMI refusal): no outbound call for them for a while, and the board is
        told once, so one broken softphone cannot burn through the task list."""
        agent_id = attempt.agent_id
        if self._cooldown.get(agent_id, 0.0) > self.clock.now():
            return
        self._cooldown[agent_id] = self.clock.now() + self.policy.outbound.agent_failure_backoff_s
        log.warning("agent %s: outbound call failed before it rang (%s, cause %s); no "
                    "outbound calls for %gs", agent_id, attempt.detail or attempt.originate_reason,
                    attempt.agent_cause, self.policy.outbound.agent_failure_backoff_s)
        self.runtime.execute([Alarm("outbound_agent_leg_failed", {
            "agent_id": agent_id, "task_id": attempt.task_id, "cause": attempt.agent_cause,
            "reason": attempt.detail or attempt.originate_reason}, std="STD-099")])

    def _agent_quiet(self, agent_id: str, event: Any) -> None:
        try:
            self.runtime.agent_event(agent_id, event)
        except StateError as exc:
            log.info("agent %s: %s ignored (%s)", agent_id, type(event).__name__, exc)

    async def _finish(self, attempt: Attempt) -> None:
        """Record the attempt and apply the retry rule, in one transaction."""
        assert attempt.outcome is not None
        now = self.clock.wall()
        try:
            task, decision = await asyncio.to_thread(
                self.store.run, _record_attempt, attempt, now, self.policy)
        except CallflowError as exc:
            # the claim stays 'dialing' and goes back to pending as a stale claim: not lost
            log.error("task #%d: attempt %s (%s) could not be recorded: %s", attempt.task_id,
                      attempt.attempt_id, attempt.outcome, exc)
            return
        self.stats["finished" if decision.counted else "released"] += 1
        if attempt.outcome is AttemptOutcome.NO_ROUTE:  # at once: every dial will fail alike
            self.runtime.execute([Alarm("no_route", {
                "task_id": task.id, "kind": task.kind, "number": task.number,
                "attempts": task.attempts}, std="STD-081")])
        if task.status == "unreachable":
            self.runtime.execute([Alarm("task_unreachable", {
                "task_id": task.id, "kind": task.kind, "number": task.number,
                "owner_agent_id": task.owner_agent_id, "attempts": task.attempts,
                "last_outcome": task.last_outcome}, std="STD-081")])
        self.tell(task, also=attempt.agent_id)

    async def _release(self, task: CallbackTask, outcome: AttemptOutcome, agent_id: str,
                       attempt_id: str, *, due_at: datetime) -> None:
        try:
            released = await asyncio.to_thread(
                self.store.run, repo.release_claim, task.id, self.clock.wall(), outcome.value,
                due_at=due_at, call_uniqueid=attempt_id, agent_id=agent_id)
        except CallflowError as exc:
            log.error("task #%d: claim could not be released (%s); it becomes stale", task.id,
                      exc)
            return
        self.stats["released"] += 1
        self.tell(released, also=agent_id)

    # --- AMI facts ---------------------------------------------------------------------

    def _on_frame(self, frame: AmiFrame) -> None:
        uid = frame.get("Uniqueid")
        attempt_id = uid if uid in self.attempts else self._legs.get(uid)
        if attempt_id is None:
            return
        at = _stamp(frame)
        name = frame.name
        event: AttemptEvent | None = None
        if name == "Newchannel":
            event = outbound.ChannelCreated(uid, at)
        elif name == "OriginateResponse":
            event = outbound.OriginateResult(frame.get("Response") == "Success",
                                             frame.get("Reason"), at)
        elif name == "Newstate" and frame.get("ChannelStateDesc") == "Up":
            event = outbound.LegUp(uid, at)
        elif name == "DialBegin" and uid == attempt_id:
            event = outbound.CustomerDialled(frame.get("DestUniqueid"), at)
        elif name == "DialEnd" and uid == attempt_id:
            event = outbound.DialEnded(frame.get("DialStatus"), at)
        elif name in ("HangupRequest", "SoftHangupRequest"):
            event = outbound.HangupRequested(uid, at)
        elif name == "Hangup":
            event = outbound.LegHungUp(uid, _cause(frame.get("Cause")), at)
            if uid != attempt_id:
                self._customer_gone.add(attempt_id)
            elif self._hold_back(attempt_id, event):
                return
        if event is not None:
            self.apply(attempt_id, event)
            if name == "Hangup" and uid != attempt_id:
                self._release_held(attempt_id)  # the agent's hang-up may follow now

    def _hold_back(self, attempt_id: str, event: AttemptEvent) -> bool:
        """Hold the agent leg's Hangup while the dialled customer's is still to come."""
        live = self.attempts.get(attempt_id)
        if live is None or not live.attempt.customer_dialled \
                or attempt_id in self._customer_gone or attempt_id in self._held_back:
            return False
        handle = asyncio.get_running_loop().call_later(
            CUSTOMER_CAUSE_GRACE_S, self._release_held, attempt_id)
        self._held_back[attempt_id] = (event, handle)
        return True

    def _release_held(self, attempt_id: str) -> None:
        held = self._held_back.pop(attempt_id, None)
        if held is not None:
            held[1].cancel()
            self.apply(attempt_id, held[0])

    async def _check_links(self) -> None:
        """After a resync, or when an attempt is silent too long: is its channel still up?"""
        resynced = self.runtime.stats.resyncs != self._resyncs_seen
        limit = self.ring_budget_s + NEWS_SLACK_S
        silent = [a for a, live in self.attempts.items()
                  if live.attempt.phase is not outbound.Phase.CONNECTED
                  and self.clock.now() - live.news_at > limit]
        if not self.attempts or not (resynced or silent):
            self._resyncs_seen = self.runtime.stats.resyncs
            return
        if not self.runtime.pbx_up:
            return
        try:
            listing = await self.runtime.query(ListChannels())
        except AmiError as exc:
            log.warning("dialer: cannot list channels to check attempts: %s", exc)
            return
        self._resyncs_seen = self.runtime.stats.resyncs
        live_uids = {item.get("Uniqueid") for item in listing}
        for attempt_id in list(self.attempts):
            if attempt_id not in live_uids and (resynced or attempt_id in silent):
                self.stats["vanished"] += 1
                log.warning("attempt %s: channel gone, its end was not seen", attempt_id)
                self.apply(attempt_id, outbound.Vanished(time.time()))
            elif attempt_id in silent:
                self.attempts[attempt_id].news_at = self.clock.now()

    # --- housekeeping -----------------------------------------------------------------------

    async def _sweep(self, now: datetime) -> None:
        """Stale claims of a crashed engine back to pending; tasks of absent owners to
        the pool (named-agent tasks stay and alarm the board)."""
        mono = self.clock.now()
        if mono - self._last_stale_sweep >= STALE_SWEEP_EVERY_S:
            self._last_stale_sweep = mono
            before = now - timedelta(seconds=self.stale_claim_s)
            await asyncio.to_thread(self.store.run, repo.release_stale_claims, before)
        if mono - self._last_absent_sweep < ABSENT_SWEEP_EVERY_S:
            return
        self._last_absent_sweep = mono
        for task in await asyncio.to_thread(self.store.run, campaign_store.close_dnc_tasks):
            self.tell(task)  # a task created for a listed number: closed, never dialled
        present = {a.agent_id for a in self.runtime.agents.values()
                   if a.state is not agent_state.AgentState.LOGGED_OUT}
        grace = timedelta(minutes=self.policy.outbound.owner_absent_grace_min)
        moved, kept = await asyncio.to_thread(self.store.run, _pool_absent_owners, present,
                                              now - grace, now)
        for task, owner in moved:
            log.info("task #%d: owner %s not logged in; back to the pool", task.id, owner)
            self.tell(task, also=owner)
        for task in kept:
            if task.id not in self._alarmed_absent:
                self._alarmed_absent.add(task.id)
                self.runtime.execute([Alarm("callback_owner_absent", {
                    "task_id": task.id, "number": task.number, "kind": task.kind,
                    "owner_agent_id": task.owner_agent_id, "due_at": _iso(task.due_at)},
                    std="STD-072")])

    @enforces("STD-082", policy=("outbound.dial_mode",))
    async def _offer_previews(self, owners: set[str], pool: bool, now: datetime) -> None:
        """Preview (STD-082): each free agent is shown their next due task; a due pool
        task is given to a free agent who has none of their own."""
        for agent in self._free_agents():
            mine = await asyncio.to_thread(self._next_due, agent.agent_id, now,
                                          agent.agent_id) if (
                agent.agent_id in owners) else None
            task = mine
            if task is None and pool and not self._inbound_waiting():
                offered = await asyncio.to_thread(self._next_due, None, now, agent.agent_id)
                if offered is None:
                    pool = self._agent_only_campaigns(agent.agent_id, now)
                    continue
                try:
                    task = await asyncio.to_thread(self._assign, offered.id, agent.agent_id)
                except StateError:
                    continue  # claimed or changed meanwhile
                self.tell(task)
            if task is not None and self._previewed.get(agent.agent_id) != task.id:
                self._previewed[agent.agent_id] = task.id
                self.runtime.execute([outbound.TaskChanged(
                    task_payload(task), "preview", (agent.agent_id,), board=False)])

    def _next_due(self, owner: str | None, now: datetime, agent_id: str
                  ) -> CallbackTask | None:
        """The next task to preview for ``agent_id``: due, dialable (not do-not-call),
        not of a campaign closed, paused or not this agent's."""
        skip = self._skipped_for(agent_id, now)
        found = self.store.read(repo.list_tasks, statuses=("pending",), owner_agent_id=owner,
                                pool_only=owner is None, due_by=now, limit=1,
                                skip_campaigns=skip, dialable_only=True)
        return found[0] if found else None

    def _assign(self, task_id: int, agent_id: str) -> CallbackTask:
        with self.store.session() as s:
            return repo.update_task(s, task_id, owner_agent_id=agent_id)

    # --- desktops --------------------------------------------------------------------------

    async def _push_changes(self) -> None:
        """Publish every task written since the last round, whoever wrote it (the API,
        the inbound flow, another engine). Reads overlap by ``FEED_OVERLAP_S`` so a
        transaction that committed late is not missed; ``tell`` drops repeats."""
        started = datetime.now(UTC)  # the store stamps updated_at with bookkeeping time
        since = self._feed_since - timedelta(seconds=FEED_OVERLAP_S)
        changes = await asyncio.to_thread(self.store.read, repo.task_changes_since, since,
                                          limit=FEED_BATCH)
        news = [row.id for row in changes if self._is_news(row)]
        if news:
            for task in await asyncio.to_thread(self.store.read, repo.tasks_by_id, news):
                self.tell(task)
        self._feed_since = changes[-1].updated_at if len(changes) == FEED_BATCH else started
        horizon = since - timedelta(seconds=FEED_OVERLAP_S)
        for task_id in [i for i, seen in self._known.items()
                        if seen.closed and seen.updated_at < horizon]:
            del self._known[task_id]

    def _is_news(self, change: Any) -> bool:
        """Whether ``tell`` would publish this change (a row of ``task_changes_since``)."""
        version = tuple(getattr(change, name) for name in repo.TASK_VERSION_COLUMNS)
        return not _told_already(self._known.get(change.id), version, change.updated_at)

    def tell(self, task: CallbackTask, also: str | None = None) -> None:
        """Publish one task on ``board`` and the desktops of its owner, its former owner
        and ``also`` (the agent dialling it), unless they already have this version."""
        old = self._known.get(task.id)
        version = _version(task)
        if _told_already(old, version, task.updated_at):
            return
        self._known[task.id] = _Seen(task.updated_at, version, task.owner_agent_id,
                                     task.status not in OPEN_TASK_STATUSES)
        fresh = task.updated_at - task.created_at < timedelta(seconds=1)
        created = old is None and fresh and task.status == "pending"
        change: Literal["created", "updated"] = "created" if created else "updated"
        owners = {task.owner_agent_id, also, old.owner if old is not None else None}
        self.runtime.execute([outbound.TaskChanged(
            task_payload(task), change, tuple(sorted(o for o in owners if o)))])

    def _publish_attempt(self, live: _Live | None) -> None:
        if live is not None:
            self.runtime.execute([outbound.AttemptChanged(live.attempt)])

    # --- background ----------------------------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def drain(self) -> None:
        """Wait until every attempt being recorded is in the store."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)


def _told_already(old: _Seen | None, version: tuple[Any, ...], updated_at: datetime) -> bool:
    """The desktops have this version of the task, or a newer one (a late read of an
    older row must not undo what they were told): the one test ``tell`` and the feed's
    ``_is_news`` both make."""
    return old is not None and (old.version == version or old.updated_at > updated_at)


@dataclass(frozen=True)
class _Seen:
    """What the desktops last heard of a task."""

    updated_at: datetime
    version: tuple[Any, ...]
    owner: str | None
    closed: bool


def _version(task: CallbackTask) -> tuple[Any, ...]:
    return tuple(getattr(task, name) for name in repo.TASK_VERSION_COLUMNS)


def _stamp(frame: AmiFrame) -> float:
    try:
        return float(frame.get("Timestamp"))
    except ValueError:
        return time.time()


def _cause(raw: str) -> int | None:
    try:
        return int(raw)
    except ValueError:
        return None


def _record_attempt(s: Session, attempt: Attempt, now: datetime, policy: Policy
                    ) -> tuple[CallbackTask, Decision]:
    """One transaction: count today's attempts, decide (pure), write the outcome."""
    assert attempt.outcome is not None
    task = repo.get_task(s, attempt.task_id)
    if task is None:
        raise StateError("not_found", f"task {attempt.task_id}")
    tz = outbound.zone(policy)
    day_start = datetime.combine(now.astimezone(tz).date(), datetime.min.time(), tzinfo=tz)
    today = sum(1 for row in repo.task_attempts(s, task.id)
                if row.at >= day_start and row.outcome not in outbound.REFUNDED)
    decision = outbound.decide(attempt.outcome, kind=task.kind, attempts=task.attempts,
                               max_attempts=task.max_attempts, attempts_today=today + 1,
                               now=now, due_at=task.due_at, policy=policy)
    campaign = (campaign_store.get_campaign(s, task.campaign_id)
                if task.campaign_id is not None else None)
    if campaign is not None and decision.counted and decision.retry_at is not None:
        # the campaign's spacing and contact window on top of the ladder (engine/campaigns.py)
        decision = replace(decision, retry_at=campaigns.campaign_retry_at(
            decision.retry_at, now, rules_of(campaign), policy))
    if not decision.counted:
        assert decision.retry_at is not None
        task = repo.release_claim(s, task.id, now, attempt.outcome.value,
                                  due_at=decision.retry_at, hangup_cause=attempt.cause,
                                  call_uniqueid=attempt.attempt_id, agent_id=attempt.agent_id)
    else:
        task = repo.finish_attempt(s, task.id, now, attempt.outcome.value,
                                   reached=decision.reached, retry_at=decision.retry_at,
                                   hangup_cause=attempt.cause,
                                   call_uniqueid=attempt.attempt_id, agent_id=attempt.agent_id)
    return task, decision


def _pool_absent_owners(s: Session, present: set[str], due_before: datetime, now: datetime
                        ) -> tuple[list[tuple[CallbackTask, str]], list[CallbackTask]]:
    """Tasks of absent owners back to the pool; named-agent tasks kept (and returned)."""
    moved: list[tuple[CallbackTask, str]] = []
    kept: list[CallbackTask] = []
    for task in repo.due_tasks_of_absent(s, present, due_before):
        owner = task.owner_agent_id or ""
        if task.kind == "named_agent":
            kept.append(task)
            continue
        note = (task.note + "\n" if task.note else "") + (
            f"back to the pool at {now.isoformat(timespec='seconds')}: "
            f"agent {owner} not logged in")
        moved.append((repo.update_task(s, task.id, owner_agent_id=None, note=note), owner))
        repo.audit(s, "dialer", "task_to_pool", now, target=f"task:{task.id}",
                   detail={"owner_agent_id": owner, "reason": "owner_logged_out"})
    return moved, kept


def rules_of(campaign: Campaign) -> campaigns.CampaignRules:
    """A stored campaign as the core's rules."""
    return campaigns.CampaignRules(
        campaign.id, tuple(campaign.days), campaigns.parse_clock(campaign.window_start, "start"),
        campaigns.parse_clock(campaign.window_end, "end"), campaign.max_attempts,
        campaign.retry_spacing_min, tuple(campaign.agents), campaign.status == "active",
        queue=campaign.queue or "", caller_id_key=campaign.caller_id_key or "")


def _campaign_rules(s: Session) -> list[campaigns.CampaignRules]:
    return [rules_of(c) for c in campaign_store.list_campaigns(s)]


def _due_now(s: Session, now: datetime) -> tuple[list[campaigns.CampaignRules],
                                                 tuple[set[str], int]]:
    """A tick's two reads in one session and one worker-thread hop (the tick runs twice
    a second, idle or not): the campaigns' rules, and who has tasks due."""
    return _campaign_rules(s), repo.due_task_owners(s, now)
