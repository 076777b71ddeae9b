"""Issue 13's proof on real Asterisk + SIPp: every way a call ends or moves, in every phase
where it can happen, through the real product (the inbound flow behind ``running_product``,
agents logged in through the runtime).

The product runs its inbound flow with the features that follow calls and holds (the
agent desktop, special calls and holds), wired as ``default_features()`` wires them.
Each case asserts the call record in the store (outcome, ``ending``, ``released_by``, each
offer's result, ``transfer_count``, ``left_at`` of answered offers), every agent's state
afterwards, and the record's times against Asterisk's own stamps read from the AMI tap
(within 0.2 s):

* ring start = the agent leg's ``Newchannel`` (a leg linked to the caller's channel); the
  record keeps Dial's later ``DialBegin`` when Dial rang it (a pre-dial handler runs
  between them, milliseconds, within the tolerance);
* answer = the agent leg's ``Newstate Up``;
* end = the first ``HangupRequest`` of the caller's or the talking agent's leg, or the
  ``SoftHangupRequest`` Cause 4 of a shutdown; a call Asterisk itself released (a blind
  transfer's target never answered) ends at the caller's first ``SoftHangupRequest``;
* ``left_at`` = the transfer's AMI event for an agent who transferred, the end for the
  agent who had the caller last.

Each case also checks, from the tap, that the phase it claims to test was really reached
(e.g. the caller's BYE came before any bridge for "during the opening"), and that every
agent leg Asterisk created for the call is an offer on the record (nobody rung again, no
fallback queue). The four invariants are checked by ``Product.stop()`` in every case.

``-s`` prints one line per case with the measured deltas (record minus Asterisk, in ms).
Times in the comments below are from the caller's answer (the dialplan answers at once);
the "short" opening is a one-word Policy opening (1.1 s) so the talking phase starts
about 1.2 s after the agent answers; the default opening (6.5 s) leaves room to act
during it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from product import Product, running_product

from callflow.agents.events import IN_CALL, AgentState, LogIn, RequestState
from callflow.desktop.feature import AgentDesktop
from callflow.engine.calls import Phase
from callflow.engine.effects import Alarm, DomainEvent
from callflow.engine.policy import Policy, parse_policy
from callflow.service import ServiceOptions
from callflow.special_calls.feature import SpecialCallsFeature
from callflow.store import repo

if TYPE_CHECKING:
    from conftest import PbxHandle
    from sippctl import SippControl, SippRun

TOLERANCE_S = 0.2  # issue 13: the record's times are Asterisk's, within 0.2 s
CALLER = "13900000013"
Event = dict[str, Any]

#: A one-word opening: the talking phase starts ~1.2 s after the answer.
SHORT_OPENING = {"greetings": {"opening_template": "您好"}}
#: One ring (5 s at cn cadence) before an offer moves on: the RONA control case is short.
ONE_RING = {"answering": {"ring_limit_rings": 1}}


def policy_of(*parts: dict[str, Any]) -> Policy:
    merged: dict[str, Any] = {}
    for part in parts:
        for section, values in part.items():
            merged.setdefault(section, {}).update(values)
    return parse_policy(merged)


def epoch(value: datetime | None) -> float:
    assert value is not None
    return value.replace(tzinfo=UTC).timestamp() if value.tzinfo is None else value.timestamp()


def ts(event: Event) -> float:
    return float(event["Timestamp"])


# --- one case on the real product ------------------------------------------------------------


@dataclass
class Matrix:
    """One case: the product, the phones, the caller, and Asterisk's word (the tap)."""

    pbx: PbxHandle
    sipp: SippControl
    product: Product
    case: str
    t0: float = 0.0
    call_id: str = ""
    caller: SippRun | None = None
    events: list[DomainEvent] = field(default_factory=list)
    deltas: dict[str, float] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)

    # -- set-up --

    def phones(self, *phones: tuple[str, str, int, tuple[str, ...]]) -> None:
        """Start each agent's softphone ``(ext, scenario, ring_ms, extra args)`` and wait
        until Asterisk holds them all Reachable."""
        runs = []
        for ext, scenario, ring_ms, extra in phones:
            run = self.sipp.start(f"agent{ext}", scenario, self.sipp.agent_port[ext],
                                  "-aa", "-d", ring_ms, *extra)
            run.aor = f"agent{ext}"
            runs.append(run)
        self.sipp.wait_ready(*runs)

    def log_in(self, *agent_ids: str) -> None:
        """In this order: the first logged in idles longest and is offered first."""
        for agent_id in agent_ids:
            self.product.call(lambda a=agent_id: self.product.runtime.agent_event(a, LogIn()))
            time.sleep(0.01)

    def not_ready(self, agent_id: str, reason: str = "break") -> None:
        self.product.call(lambda: self.product.runtime.agent_event(
            agent_id, RequestState(AgentState.NOT_READY, reason)))

    def call(self, scenario: str = "uac_call.xml", talk_ms: int = 2000) -> str:
        """The caller dials DID 100; returns the call id (the caller channel's Uniqueid)."""
        self.product.call(lambda: self.product.runtime.on_event(self.events.append))
        self.t0 = self.pbx.tap.mark()
        self.caller = self.sipp.caller("100", scenario, caller_id=CALLER, talk_ms=talk_ms)
        start = self.pbx.tap.wait_event("AGIExecStart", 10, since=self.t0)
        self.call_id = start["Uniqueid"]
        return self.call_id

    # -- Asterisk's word --

    def tap(self, name: str, pred: Callable[[Event], bool] = lambda e: True) -> list[Event]:
        return [e for e in self.pbx.tap.events_since(self.t0, name) if pred(e)]

    def wait(self, name: str, timeout: float, **match: str) -> Event:
        return self.pbx.tap.wait_event(name, timeout, since=self.t0, **match)

    def legs(self, ext: str) -> list[Event]:
        """``Newchannel`` of agent ``ext``'s legs linked to our call, in order."""
        return self.tap("Newchannel", lambda e: e["Channel"].startswith(f"PJSIP/agent{ext}-")
                        and e.get("Linkedid") == self.call_id)

    def first(self, name: str, uid: str, **match: str) -> Event | None:
        found = self.tap(name, lambda e: e.get("Uniqueid") == uid
                         and all(e.get(k) == v for k, v in match.items()))
        return found[0] if found else None

    def up(self, uid: str) -> float:
        event = self.first("Newstate", uid, ChannelStateDesc="Up")
        assert event is not None, f"no Newstate Up for {uid}"
        return ts(event)

    def before(self, a: Event | None, b: Event | None) -> bool:
        return a is not None and b is not None and ts(a) < ts(b)

    # -- the end --

    def finish(self, timeout: float = 60) -> None:
        """The caller's SIPp ends, Asterisk destroys the caller's channel, the core has
        the call ended and the store has every record."""
        assert self.caller is not None
        status = self.caller.wait(timeout)
        assert status == 0, self.caller.diagnostics()
        self.wait("Hangup", 15, Uniqueid=self.call_id)
        self.ended()

    def ended(self, timeout: float = 10) -> None:
        runtime = self.product.runtime
        self.product.wait_for(lambda: runtime.calls[self.call_id].phase is Phase.ENDED,
                              timeout, "the call to end in the core")
        self.product.flush()

    def record(self) -> Any:
        call = self.product.store.read(repo.get_call, self.call_id)
        assert call is not None
        return call

    def offers(self) -> list[Any]:
        return list(self.product.store.read(repo.offers_for_call, self.call_id))

    def agent(self, agent_id: str) -> Any:
        return self.product.call(lambda: self.product.runtime.agents[agent_id])

    def alarms(self, kind: str) -> list[Alarm]:
        return [e for e in self.events if isinstance(e, Alarm) and e.kind == kind]

    # -- the checks every case makes --

    def near(self, what: str, recorded: datetime | None, asterisk: float) -> None:
        delta = epoch(recorded) - asterisk
        self.deltas[what] = delta
        assert abs(delta) <= TOLERANCE_S, \
            f"{self.case}: the record's {what} is {delta * 1000:+.1f} ms from Asterisk's"

    def check_record(self, *, outcome: str, ending: str, released_by: str,
                     offers: list[tuple[str, str]], agent_id: str | None,
                     transfer_count: int = 0, cause: int | None = None,
                     transfers: dict[int, float] | None = None,
                     system_end: bool = False) -> Any:
        """The record and its times against the tap. ``transfers``: offer index -> the
        stamp of the transfer that ended that agent's part (its ``left_at``)."""
        call, rows = self.record(), self.offers()
        got = [(o.agent_id, o.result) for o in rows]
        assert got == offers, f"{self.case}: offers {got}"
        assert (call.outcome, call.ending, call.released_by) == (outcome, ending, released_by)
        assert call.agent_id == agent_id
        assert call.transfer_count == transfer_count
        assert call.incomplete_reason is None
        if cause is not None:
            assert call.hangup_cause == cause
        if call.answered_at is not None:  # STD-110's verdict on who released first
            verdict = {"caller": True, "system": True, "pbx": None,
                       "agent": ending == "network_drop"}[released_by]
            assert call.release_compliant is verdict, f"{self.case}: {call.release_compliant}"
            assert bool(self.alarms("agent_hung_up_first")) == (verdict is False)
        # every agent leg Asterisk made for the call is an offer on the record: nobody was
        # rung again after the call was over, and the fallback queue never took the call
        for ext in {o.agent_id for o in rows}:
            rung = [o for o in rows if o.agent_id == ext and not self.joined(o)]
            assert len(self.legs(ext)) == len(rung), \
                f"{self.case}: agent {ext} rung {len(self.legs(ext))} times, {len(rung)} offers"
        assert self.tap("QueueCallerJoin", lambda e: e.get("Uniqueid") == self.call_id) == []
        # times
        answered_uid: dict[int, str] = {}
        seen: dict[str, int] = {}
        for i, offer in enumerate(rows):
            if self.joined(offer):
                transfer = self.tap("AttendedTransfer")[0]
                answered_uid[i] = transfer["TransferTargetUniqueid"]
                self.near(f"join[{offer.agent_id}]", offer.started_at, ts(transfer))
                continue
            n = seen.get(offer.agent_id, 0)
            seen[offer.agent_id] = n + 1
            leg = self.legs(offer.agent_id)[n]
            self.near(f"ring[{offer.agent_id}]", offer.started_at, ts(leg))
            if offer.result == "answered":
                answered_uid[i] = leg["Uniqueid"]
                self.near(f"answer[{offer.agent_id}]", offer.ended_at, self.up(leg["Uniqueid"]))
        if answered_uid:
            first = min(answered_uid)
            self.near("t_ans", call.answered_at, ts(self.first("Newstate", answered_uid[first],
                                                              ChannelStateDesc="Up")
                                                   or self.tap("AttendedTransfer")[0]))
        else:
            assert call.answered_at is None
        end = self.asterisk_end(answered_uid[max(answered_uid)] if answered_uid else None,
                                system_end)
        self.near("t_end", call.ended_at, end)
        for i in answered_uid:
            left = (transfers or {}).get(i, end)
            self.near(f"left[{rows[i].agent_id}]", rows[i].left_at, left)
        return call

    @staticmethod
    def joined(offer: Any) -> bool:
        """An offer made by an attended transfer: the agent never rang for it."""
        return offer.result == "answered" and offer.ring_s == 0.0

    def asterisk_end(self, talking_uid: str | None, system_end: bool) -> float:
        """Asterisk's end of the call: the first far-end request of the caller's or the
        talking agent's leg, or the shutdown; else (released by Asterisk) the caller's
        first soft request."""
        candidates = [self.first("HangupRequest", self.call_id)]
        if talking_uid is not None:
            candidates.append(self.first("HangupRequest", talking_uid))
        shutdown = self.tap("SoftHangupRequest", lambda e: e.get("Cause") == "4")
        candidates.append(shutdown[0] if shutdown else None)
        found = [ts(e) for e in candidates if e is not None]
        if system_end:
            assert not found, f"{self.case}: a party hung up: {found}"
            soft = self.first("SoftHangupRequest", self.call_id)
            assert soft is not None
            return ts(soft)
        assert found, f"{self.case}: Asterisk says nobody hung up"
        return min(found)

    def check_agent(self, agent_id: str, state: AgentState, reason: str = "", *,
                    rona: int = 0) -> None:
        agent = self.agent(agent_id)
        assert (agent.state, agent.reason) == (state, reason), \
            f"{self.case}: agent {agent_id} is {agent.state} ({agent.reason})"
        assert agent.ring_no_answer_count == rona
        assert not agent.phone_in_use

    def timeline(self) -> str:
        """Asterisk's key events since the call began, from the tap (for a failure)."""
        keys = ("Newchannel", "Newstate", "DialBegin", "DialEnd", "HangupRequest",
                "SoftHangupRequest", "Hangup", "BridgeEnter", "BridgeLeave", "Hold", "Unhold",
                "BlindTransfer", "AttendedTransfer", "AGIExecStart", "AGIExecEnd",
                "QueueCallerJoin", "FullyBooted", "Shutdown")
        events = [e for e in self.pbx.tap.events_since(self.t0) if e["Event"] in keys]
        base = ts(events[0]) if events and "Timestamp" in events[0] else 0.0
        lines = []
        for e in events:
            detail = " ".join(f"{k}={e[k]}" for k in (
                "ChannelStateDesc", "DialStatus", "Forward", "Cause", "TechCause", "Command",
                "Result", "DestChannel") if e.get(k))
            at = ts(e) - base if "Timestamp" in e else float("nan")
            lines.append(f"{at:8.3f} {e['Event']:18} {e.get('Channel', '')[:28]:28} "
                         f"{detail[:110]}")
        return "\n".join(lines)

    def report(self) -> None:
        call = self.record()
        parts = " ".join([f"{k}={v * 1000:+.1f}ms" for k, v in self.deltas.items()]
                         + [f"{k}={v}" for k, v in self.notes.items()])
        print(f"\n[matrix] {self.case:44} {call.outcome:13} {call.ending:16} "
              f"by={call.released_by or '-':6} {parts}")


@pytest.fixture
def matrix(request: pytest.FixtureRequest, asterisk: PbxHandle, asterisk_root: Path,
           sipp: SippControl, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """``with matrix(policy, agents) as m:`` runs the product for one case."""

    @contextmanager
    def run(policy: Policy, agents: list[str]) -> Iterator[Matrix]:
        # the features that follow calls and holds, wired as default_features() does
        # (the dialer is left out: it would act on the callback tasks endings create)
        special_calls = SpecialCallsFeature(desktop_hold_reminders=False)
        desktop = AgentDesktop(hold_reminders=not special_calls.desktop_hold_reminders)
        options = ServiceOptions(features=[desktop, special_calls])
        with running_product(asterisk, asterisk_root, tmp_path, policy, agents,
                             options) as product:
            m = Matrix(asterisk, sipp, product, request.node.name.removeprefix("test_"))
            try:
                yield m
            except BaseException:
                print(f"\n[matrix] {m.case}: Asterisk's events\n{m.timeline()}")
                raise
            m.report()
            if os.environ.get("CALLFLOW_MATRIX_TIMELINE"):
                print(m.timeline())

    yield run


AGENTS = ["1001", "1002"]


def wait_state(m: Matrix, agent_id: str, state: AgentState, timeout: float = 10) -> None:
    m.product.wait_for(lambda: m.product.runtime.agents[agent_id].state is state, timeout,
                       f"agent {agent_id} {state}")


# --- the caller hangs up ---------------------------------------------------------------------


def test_caller_bye_while_waiting_no_agent_free(matrix: Callable[..., Any]) -> None:
    """Nobody ready (1001 on a break): the caller waits 6 s and hangs up: abandoned at the
    BYE, a missed-call callback (STD-055), nobody rung."""
    with matrix(policy_of(ONE_RING), ["1001"]) as m:
        m.phones(("1001", "uas_answer.xml", 500, ()))
        m.log_in("1001")
        m.not_ready("1001")
        m.call("uac_call.xml", talk_ms=6000)
        m.finish()
        m.check_record(outcome="abandoned", ending="abandoned", released_by="caller",
                       offers=[], agent_id=None)
        assert [e.kind for e in m.events if type(e).__name__ == "TaskRequested"] \
            == ["callback"]
        m.check_agent("1001", AgentState.NOT_READY, "break")
        assert m.tap("Newchannel", lambda e: "agent1001" in e["Channel"]) == []


def test_caller_bye_while_ringing(matrix: Callable[..., Any]) -> None:
    """1001 rings (never answers, 5 s limit); the caller hangs up 2.5 s in: CANCEL to the
    phone, the offer is caller_gone, 1001 ready again, no RONA."""
    with matrix(policy_of(ONE_RING), ["1001"]) as m:
        m.phones(("1001", "uas_noanswer.xml", 0, ()))
        m.log_in("1001")
        m.call("uac_call.xml", talk_ms=2500)
        m.finish()
        bye = m.first("HangupRequest", m.call_id)
        assert m.before(m.legs("1001")[0], bye) and not m.tap("DialEnd", lambda e: e.get(
            "DialStatus") == "NOANSWER")
        m.check_record(outcome="short_abandon", ending="short_abandon",
                       released_by="caller", offers=[("1001", "caller_gone")], agent_id=None)
        m.check_agent("1001", AgentState.READY)
        assert m.alarms("ring_no_answer") == []


@pytest.mark.parametrize("phase", ["opening", "talking", "held"])
def test_caller_bye_answered(matrix: Callable[..., Any], phase: str) -> None:
    """The caller hangs up an answered call during the opening (Dial's A() still plays,
    no bridge), while talking (bridged), or while the agent's softphone holds them:
    caller_released at the BYE, the agent in ACW."""
    policy = policy_of(ONE_RING) if phase == "opening" else policy_of(ONE_RING, SHORT_OPENING)
    scenario, talk_ms = {"opening": ("uas_answer.xml", 3500),
                         "talking": ("uas_answer.xml", 5000),
                         "held": ("uas_answer_hold_wait.xml", 5500)}[phase]
    with matrix(policy, ["1001"]) as m:
        m.phones(("1001", scenario, 500, ()))
        m.log_in("1001")
        m.call("uac_call.xml", talk_ms=talk_ms)
        if phase == "held":  # the softphone's hold is the agent's state too
            wait_state(m, "1001", AgentState.ON_HOLD)
        m.finish()
        bye = m.first("HangupRequest", m.call_id)
        bridged = m.first("BridgeEnter", m.call_id)
        hold = m.tap("Hold", lambda e: e["Channel"].startswith("PJSIP/agent1001-"))
        if phase == "opening":
            assert bridged is None, "the caller was bridged before the BYE"
        else:
            assert m.before(bridged, bye)
        if phase == "held":
            assert m.before(hold[0] if hold else None, bye)
            assert m.tap("Unhold") == []
        else:
            assert hold == []
        call = m.check_record(outcome="answered", ending="caller_released",
                              released_by="caller", offers=[("1001", "answered")],
                              agent_id="1001")
        if phase == "held":
            assert call.hold_count == 1
        m.check_agent("1001", AgentState.ACW)


# --- the agent hangs up first ----------------------------------------------------------------


@pytest.mark.parametrize("phase", ["opening", "talking", "holding"])
def test_agent_bye(matrix: Callable[..., Any], phase: str) -> None:
    """The agent hangs up first (STD-110): during the opening, while talking, while
    holding the caller. agent_released at the agent's BYE; the caller hears the goodbye
    and is released by the flow; the agent in ACW and never rung again."""
    policy = policy_of(ONE_RING) if phase == "opening" else policy_of(ONE_RING, SHORT_OPENING)
    scenario = "uas_answer_hold_bye.xml" if phase == "holding" else "uas_answer_bye.xml"
    with matrix(policy, ["1001"]) as m:
        m.phones(("1001", scenario, 500, ()))
        m.log_in("1001")
        m.call("uac_wait_bye.xml")
        if phase == "holding":
            wait_state(m, "1001", AgentState.ON_HOLD)
        m.finish()
        leg = m.legs("1001")[0]["Uniqueid"]
        bye = m.first("HangupRequest", leg)
        bridged = m.first("BridgeEnter", leg)
        if phase == "opening":
            assert bridged is None
        else:
            assert m.before(bridged, bye)
        hold = m.tap("Hold", lambda e: e.get("Uniqueid") == leg)
        assert bool(hold) == (phase == "holding")
        if hold:
            assert m.before(hold[0], bye)
        call = m.check_record(outcome="answered", ending="agent_released",
                              released_by="agent", offers=[("1001", "answered")],
                              agent_id="1001")
        assert m.first("HangupRequest", m.call_id) is None  # the caller never hung up
        # STD-110: no closing was said before the agent's BYE: a violation, raised at once
        assert call.release_compliant is False
        [alarm] = m.alarms("agent_hung_up_first")
        m.notes["std110_alarm"] = f"{(alarm.raised_at - ts(bye)) * 1000:+.1f}ms"
        assert 0 <= alarm.raised_at - ts(bye) < 0.5
        m.check_agent("1001", AgentState.ACW)
        released = ts(m.wait("Hangup", 1, Uniqueid=m.call_id)) - ts(bye)
        goodbye = m.product.service.prompts.path("goodbye")
        closing = (Path(f"{goodbye}.wav").stat().st_size - 44) / 16000
        assert released < closing + 1.0, f"caller released {released:.2f}s after the BYE"
        m.notes["caller_out"] = f"{released:.2f}s(goodbye {closing:.2f}s)"


# --- the phone refuses ---------------------------------------------------------------------


@pytest.mark.parametrize(("code", "result", "reason"), [
    ("486", "busy", "rejected"),
    ("603", "declined", "rejected"),
    ("480", "unavailable", "unreachable"),
])
def test_phone_refuses_then_the_next_agent_answers(matrix: Callable[..., Any], code: str,
                                                    result: str, reason: str) -> None:
    """1001's phone rings 1 s and answers the INVITE with 486 / 603 / 480: not a RONA;
    1001 not-ready, 1002 gets the call and answers."""
    with matrix(policy_of(ONE_RING, SHORT_OPENING), AGENTS) as m:
        m.phones(("1001", f"uas_reject_{code}.xml", 1000, ()),
                 ("1002", "uas_answer.xml", 500, ()))
        m.log_in("1001", "1002")
        m.call("uac_call.xml", talk_ms=6000)
        m.finish()
        refused = m.first("HangupRequest", m.legs("1001")[0]["Uniqueid"])
        assert refused is not None and refused.get("TechCause") == code
        m.check_record(outcome="answered", ending="caller_released", released_by="caller",
                       offers=[("1001", result), ("1002", "answered")], agent_id="1002")
        m.check_agent("1001", AgentState.NOT_READY, reason)
        m.check_agent("1002", AgentState.ACW)
        assert m.alarms("ring_no_answer") == []
        # not-ready until the agent says otherwise (STD-099): their phone is still there
        m.product.call(lambda: m.product.runtime.agent_event(
            "1001", RequestState(AgentState.READY)))
        m.check_agent("1001", AgentState.READY)


def test_ring_limit_runs_out_is_the_only_rona(matrix: Callable[..., Any]) -> None:
    """The control case: 1001 never answers; the ring limit (1 ring, 5 s) runs out: a RONA,
    1002 gets the call."""
    with matrix(policy_of(ONE_RING, SHORT_OPENING), AGENTS) as m:
        m.phones(("1001", "uas_noanswer.xml", 0, ()), ("1002", "uas_answer.xml", 500, ()))
        m.log_in("1001", "1002")
        m.call("uac_call.xml", talk_ms=10000)
        m.finish()
        m.check_record(outcome="answered", ending="caller_released", released_by="caller",
                       offers=[("1001", "no_answer"), ("1002", "answered")], agent_id="1002")
        m.check_agent("1001", AgentState.NOT_READY, "ring_no_answer", rona=1)
        m.check_agent("1002", AgentState.ACW)
        assert len(m.alarms("ring_no_answer")) == 1


# --- moved on the phone ------------------------------------------------------------------------


def test_302_forward_to_another_agent(matrix: Callable[..., Any]) -> None:
    """1001's phone rings 1 s and forwards (302) to 1002; Asterisk follows; 1002 answers:
    one record, 1001 forwarded (not-ready rejected), 1002 on the call."""
    with matrix(policy_of(ONE_RING, SHORT_OPENING), AGENTS) as m:
        m.phones(("1001", "uas_redirect_302.xml", 1000, ("-key", "forward_to", "1002")),
                 ("1002", "uas_answer.xml", 500, ()))
        m.log_in("1001", "1002")
        m.call("uac_call.xml", talk_ms=6000)
        wait_state(m, "1002", AgentState.ON_CALL)
        assert m.agent("1002").call_id == m.call_id
        m.finish()
        forward = m.tap("DialEnd", lambda e: e.get("Forward") == "1002")
        assert forward and forward[0]["DestChannel"].startswith("PJSIP/agent1001-")
        m.check_record(outcome="answered", ending="caller_released", released_by="caller",
                       offers=[("1001", "forwarded"), ("1002", "answered")], agent_id="1002")
        m.check_agent("1001", AgentState.NOT_READY, "rejected")
        m.check_agent("1002", AgentState.ACW)


def test_blind_refer_answered(matrix: Callable[..., Any]) -> None:
    """1001 answers and 2 s later transfers blind (REFER) to 1002, who answers: 1001's part
    ends at the BlindTransfer (ACW), 1002 has the caller; one record, one transfer."""
    with matrix(policy_of(ONE_RING, SHORT_OPENING), AGENTS) as m:
        m.phones(("1001", "uas_answer_refer_blind.xml", 500, ("-key", "refer_to", "1002")),
                 ("1002", "uas_answer.xml", 500, ()))
        m.log_in("1001", "1002")
        m.call("uac_call.xml", talk_ms=7000)
        wait_state(m, "1002", AgentState.ON_CALL)
        assert m.agent("1002").call_id == m.call_id
        assert m.agent("1001").state is AgentState.ACW
        m.finish()
        transfer = m.wait("BlindTransfer", 1)
        m.check_record(outcome="answered", ending="caller_released", released_by="caller",
                       offers=[("1001", "answered"), ("1002", "answered")], agent_id="1002",
                       transfer_count=1, transfers={0: ts(transfer)})
        m.check_agent("1001", AgentState.ACW)
        m.check_agent("1002", AgentState.ACW)


def test_blind_refer_not_answered(matrix: Callable[..., Any]) -> None:
    """1001 transfers blind to 1002, whose phone never answers: the [agents] Dial rings it
    15 s (3 rings at cn: its ring limit ran out) and Asterisk then hangs the caller up."""
    with matrix(policy_of(ONE_RING, SHORT_OPENING), AGENTS) as m:
        m.phones(("1001", "uas_answer_refer_blind.xml", 500, ("-key", "refer_to", "1002")),
                 ("1002", "uas_noanswer.xml", 0, ()))
        m.log_in("1001", "1002")
        m.call("uac_wait_bye.xml")
        m.finish(timeout=40)
        transfer = m.wait("BlindTransfer", 1)
        m.check_record(outcome="answered", ending="system_released", released_by="system",
                       offers=[("1001", "answered"), ("1002", "no_answer")], agent_id="1001",
                       transfer_count=1, transfers={0: ts(transfer)}, system_end=True)
        m.check_agent("1001", AgentState.ACW)
        m.check_agent("1002", AgentState.NOT_READY, "ring_no_answer", rona=1)


def test_attended_refer(matrix: Callable[..., Any]) -> None:
    """1001 answers, consults 1002 (a call of its own), then joins the caller to 1002
    (REFER with Replaces): 1002 has the caller, 1001 in ACW; one record, one transfer."""
    with matrix(policy_of(ONE_RING, SHORT_OPENING), AGENTS) as m:
        m.phones(("1001", "uas_answer_refer_attended.xml", 500,
                  ("-key", "consult_to", "1002")),
                 ("1002", "uas_answer.xml", 500, ()))
        m.log_in("1001", "1002")
        m.call("uac_call.xml", talk_ms=9000)
        transfer = m.wait("AttendedTransfer", 10)
        m.product.wait_for(lambda: m.product.runtime.agents["1001"].state is AgentState.ACW,
                           5, "1001 in ACW after the transfer")
        assert m.agent("1002").state is AgentState.ON_CALL
        assert m.agent("1002").call_id == m.call_id
        m.finish()
        m.check_record(outcome="answered", ending="caller_released", released_by="caller",
                       offers=[("1001", "answered"), ("1002", "answered")], agent_id="1002",
                       transfer_count=1, transfers={0: ts(transfer)})
        m.check_agent("1001", AgentState.ACW)
        m.check_agent("1002", AgentState.ACW)


# --- the line drops ------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["caller", "agent"])
def test_bye_with_cause_38_is_a_network_drop(matrix: Callable[..., Any], who: str) -> None:
    """A BYE with Reason Q.850 cause 38 while talking: network_drop, released by that party,
    a dropped-call task for the same agent (STD-069)."""
    with matrix(policy_of(ONE_RING, SHORT_OPENING), ["1001"]) as m:
        if who == "caller":
            m.phones(("1001", "uas_answer.xml", 500, ()))
            m.log_in("1001")
            m.call("uac_call_dropped.xml", talk_ms=5000)
        else:
            m.phones(("1001", "uas_answer_bye_cause38.xml", 500, ()))
            m.log_in("1001")
            m.call("uac_wait_bye.xml")
        m.finish()
        m.check_record(outcome="answered", ending="network_drop", released_by=who,
                       offers=[("1001", "answered")], agent_id="1001", cause=38)
        tasks = [e for e in m.events if type(e).__name__ == "TaskRequested"]
        assert [(t.kind, t.owner_agent_id) for t in tasks] == [  # type: ignore[attr-defined]
            ("dropped_call", "1001")]
        # the line dropped: nobody released the caller badly (STD-110 judges a choice)
        assert m.alarms("agent_hung_up_first") == []
        m.check_agent("1001", AgentState.ACW)


# --- Asterisk restarts ---------------------------------------------------------------------------


@pytest.mark.parametrize("phase", ["waiting", "ringing", "talking"])
def test_asterisk_restart(matrix: Callable[..., Any], asterisk: PbxHandle, phase: str) -> None:
    """Asterisk stops and starts again mid-call: pbx_failure at the shutdown's
    SoftHangupRequest, blamed on nobody, no RONA; the product reconnects and resyncs, and
    no agent stays in a call."""
    policy = policy_of(SHORT_OPENING, {"answering": {"ring_limit_rings": 3}})
    with matrix(policy, ["1001"]) as m:
        m.phones(("1001", "uas_noanswer.xml" if phase == "ringing" else "uas_answer.xml",
                  500, ()))
        m.log_in("1001")
        if phase == "waiting":
            m.not_ready("1001")
        m.call("uac_wait_bye.xml")
        if phase == "waiting":
            m.wait("AGIExecStart", 5, Command="SET MUSIC ON default")
        elif phase == "ringing":
            m.wait("DialBegin", 5)
        else:
            m.wait("BridgeEnter", 10, Uniqueid=m.call_id)
        time.sleep(1.0)
        runtime = m.product.runtime
        assert m.product.service.ami is not None
        resyncs = m.product.call(lambda: runtime.stats.resyncs)
        took = asterisk.restart()
        m.product.wait_for(lambda: runtime.pbx_up and runtime.stats.resyncs > resyncs, 20,
                           "the product to reconnect and resync")
        m.finish()
        offers = {"waiting": [], "ringing": [("1001", "pbx_failure")],
                  "talking": [("1001", "answered")]}[phase]
        m.check_record(outcome="pbx_failure", ending="pbx_failure", released_by="pbx",
                       offers=offers, agent_id="1001" if phase == "talking" else None)
        assert m.alarms("ring_no_answer") == [] and m.alarms("agent_hung_up_first") == []
        agent = m.agent("1001")
        assert agent.state not in IN_CALL and agent.ring_no_answer_count == 0
        expected = {"waiting": (AgentState.NOT_READY, "break"), "ringing": (AgentState.READY, ""),
                    "talking": (AgentState.ACW, "")}[phase]
        m.check_agent("1001", *expected)
        # and the engine's picture of the softphone is right again (PJSIP re-qualified it)
        m.product.wait_for(lambda: runtime.agents["1001"].softphone_reachable, 5,
                           "1001's softphone reachable after the restart")
        m.notes["restart"] = f"{took:.2f}s"
