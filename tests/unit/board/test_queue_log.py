"""queue_log lines for a scripted set of calls, from the core's own publishes.

The real Runtime runs the calls and agents (FakeClock; Asterisk's event times given
explicitly); the QueueLog hears the core's facts (``Runtime.on_event``),
exactly as the board feature wires it. The expected lines are app_queue's format.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from callflow.agents.events import AgentState
from callflow.agents.roster import Roster, RosterAgent
from callflow.agents.state import (
    CallAnswered,
    CallEnded,
    EndAcw,
    LogIn,
    LogOut,
    OfferTimedOut,
    RequestState,
)
from callflow.board.queue_log import QueueLog, QueueLogFile
from callflow.engine import calls
from callflow.engine.clock import FakeClock
from callflow.engine.policy import Policy
from callflow.runtime.core import Runtime
from callflow.service import edge_adapters

START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
E = int(START.timestamp())
ROSTER = Roster((RosterAgent("1001", "A", "agent1001", queues=("main",)),
                 RosterAgent("1002", "B", "agent1002", queues=("main", "sales"))))


class Script:
    """Drives the runtime with Asterisk-like facts at given seconds after START."""

    def __init__(self) -> None:
        self.clock = FakeClock(START)
        self.published: list[tuple[str, dict[str, Any]]] = []
        self.runtime = Runtime(Policy.defaults(), self.clock, ROSTER, edge_adapters(self.clock,
            persist=lambda kind, data: None,
            publish=lambda topic, payload: self.published.append((topic, payload))))
        self.log = QueueLog(lambda a: ROSTER.by_id(a).queues)  # type: ignore[union-attr]
        self.lines: list[str] = []
        self.runtime.on_event(
            lambda e: self.lines.extend(self.log.observe(e, self.runtime.epoch_of)))

    def at(self, seconds: float) -> float:
        self.clock.advance(E + seconds - self.clock.wall().timestamp())
        return E + seconds

    def agent(self, seconds: float, agent_id: str, event: Any) -> None:
        self.at(seconds)
        self.runtime.agent_event(agent_id, event)

    def enter(self, seconds: float, call_id: str, caller: str, queue: str = "main") -> None:
        self.runtime.call_entered(call_id, f"PJSIP/trunk-{call_id}", caller, "100", queue,
                                  at=self.at(seconds))

    def ring(self, seconds: float, call_id: str, agent_id: str) -> None:
        self.at(seconds)
        assert self.runtime.choose_agent(call_id) is not None
        self.runtime.call_event(calls.OfferStarted(call_id, agent_id,
                                                   f"PJSIP/agent{agent_id}-1", E + seconds))

    def offer_end(self, seconds: float, call_id: str, agent_id: str, status: str) -> None:
        self.runtime.call_event(calls.OfferEnded(call_id, agent_id, status, self.at(seconds)))
        event = CallAnswered(call_id) if status == "ANSWER" else OfferTimedOut(call_id)
        self.runtime.agent_event(agent_id, event)

    def release(self, seconds: float, call_id: str, by: str = "caller",
                outcome: calls.Outcome | None = None) -> None:
        self.runtime.call_event(calls.CallReleased(call_id, self.at(seconds), by=by,
                                                   outcome=outcome))


async def test_scripted_calls_give_app_queue_lines(tmp_path: Path) -> None:
    s = Script()
    s.agent(0, "1001", LogIn())
    s.agent(0, "1002", LogIn())
    s.agent(1, "1002", RequestState(AgentState.BUSY, "meal"))
    # call A: rings 1001 for 15 s unanswered (RONA), then 1002 answers after 3 s
    s.enter(10, "A", "13800000001")
    s.ring(11, "A", "1001")
    s.offer_end(26, "A", "1001", "NOANSWER")
    s.agent(27, "1002", RequestState(AgentState.READY))
    s.ring(27, "A", "1002")
    s.offer_end(30, "A", "1002", "ANSWER")
    # call B hangs up after 3 s in the queue; call C chooses a callback
    s.enter(40, "B", "13800000002")
    s.release(43, "B")
    s.enter(50, "C", "13800000003")
    # the agent releases call A; C leaves for a callback; 1001 logs out
    s.release(90, "A", by="agent")
    s.agent(90, "1002", CallEnded("A"))
    s.release(180, "C", by="system", outcome=calls.Outcome.CALLBACK)
    s.agent(181, "1001", LogOut())
    # two callers wait together; the first leaves, then the second (now first in line)
    s.enter(210, "E", "13800000005")
    s.enter(211, "F", "13800000006")
    s.release(240, "E")
    s.release(250, "F")
    # a sales call answered by 1002 after ACW; the caller hangs up
    s.agent(255, "1002", EndAcw())
    s.enter(260, "D", "13800000004", queue="sales")
    s.ring(261, "D", "1002")
    s.offer_end(265, "D", "1002", "ANSWER")
    s.release(360, "D")
    expected = [
        f"{E}|NONE|main|Agent/1001|ADDMEMBER|",
        f"{E}|NONE|main|Agent/1002|ADDMEMBER|",
        f"{E}|NONE|sales|Agent/1002|ADDMEMBER|",
        f"{E + 1}|NONE|main|Agent/1002|PAUSE|meal",
        f"{E + 1}|NONE|sales|Agent/1002|PAUSE|meal",
        f"{E + 10}|A|main|NONE|ENTERQUEUE||13800000001|1",
        f"{E + 26}|A|main|Agent/1001|RINGNOANSWER|15000",
        f"{E + 26}|NONE|main|Agent/1001|PAUSE|ring_no_answer",
        f"{E + 27}|NONE|main|Agent/1002|UNPAUSE|",
        f"{E + 27}|NONE|sales|Agent/1002|UNPAUSE|",
        f"{E + 30}|A|main|Agent/1002|CONNECT|20||3",
        f"{E + 40}|B|main|NONE|ENTERQUEUE||13800000002|1",
        f"{E + 43}|B|main|NONE|ABANDON|1|1|3",
        f"{E + 50}|C|main|NONE|ENTERQUEUE||13800000003|1",
        f"{E + 90}|A|main|Agent/1002|COMPLETEAGENT|20|60|1",
        f"{E + 180}|C|main|NONE|EXITWITHKEY||1|1|130",
        f"{E + 181}|NONE|main|Agent/1001|REMOVEMEMBER|",
        f"{E + 210}|E|main|NONE|ENTERQUEUE||13800000005|1",
        f"{E + 211}|F|main|NONE|ENTERQUEUE||13800000006|2",
        f"{E + 240}|E|main|NONE|ABANDON|1|1|30",
        f"{E + 250}|F|main|NONE|ABANDON|1|2|39",
        f"{E + 260}|D|sales|NONE|ENTERQUEUE||13800000004|1",
        f"{E + 265}|D|sales|Agent/1002|CONNECT|5||4",
        f"{E + 360}|D|sales|Agent/1002|COMPLETECALLER|5|95|1",
    ]
    assert s.lines == expected
    out = QueueLogFile(tmp_path / "queue_log")
    out.write(s.lines)
    out.close()
    assert (tmp_path / "queue_log").read_text().splitlines() == expected


def test_caller_gone_while_ringing_and_a_transfer() -> None:
    log = QueueLog(lambda agent: ("main",))

    def record(**changes: Any) -> dict[str, Any]:
        base = {"uniqueid": "X", "direction": "inbound", "queue": "main", "caller_number": "1",
                "entered_at": iso(0), "offers": [], "ended_at": None, "outcome": None}
        return {**base, **changes}

    ringing = {"agent_id": "1001", "started_at": iso(2), "ended_at": None, "result": None}
    assert log.on_call(record(offers=[ringing])) == [f"{E}|X|main|NONE|ENTERQUEUE||1|1"]
    gone = {**ringing, "ended_at": iso(6.5), "result": "caller_gone"}
    assert log.on_call(record(offers=[gone], ended_at=iso(6.5), outcome="abandoned")) == [
        f"{E + 6}|X|main|Agent/1001|RINGCANCELED|4500", f"{E + 6}|X|main|NONE|ABANDON|1|1|6"]
    # a call answered by 1001, then answered by 1002 after a transfer
    first = {"agent_id": "1001", "started_at": iso(1), "ended_at": iso(4), "result": "answered"}
    second = {"agent_id": "1002", "started_at": iso(60), "ended_at": iso(64),
              "result": "answered"}
    log.on_call(record(uniqueid="T", offers=[first]))
    assert log.on_call(record(uniqueid="T", offers=[first, second])) == [
        f"{E + 64}|T|main|Agent/1001|TRANSFER|1002|callflow|4|60|1"]
    # nothing more for it, not even a second ENTERQUEUE when it ends
    assert log.on_call(record(uniqueid="T", offers=[first, second], ended_at=iso(99))) == []
    assert log.on_call(record(direction="outbound", uniqueid="O")) == []


def test_fields_cannot_break_the_format() -> None:
    log = QueueLog(lambda agent: ("main",))
    lines = log.on_call({"uniqueid": "Z", "queue": "ma|in", "caller_number": "1|2\n3",
                         "entered_at": iso(0), "offers": []})
    assert lines == [f"{E}|Z|ma/in|NONE|ENTERQUEUE||1/2 3|1"]


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(E + seconds, UTC).isoformat()
