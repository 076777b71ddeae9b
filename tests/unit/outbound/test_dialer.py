"""The dialer edge with a real store and a real runtime, Asterisk's facts replayed as AMI
frames and a fake clock: who gets which task, what is recorded, what happens when the
AMI link or the agent fails, and that tasks are never lost nor dialled twice at once.

The AMI side is a recording stand-in (``FakeAmi``): these tests are about our
decisions; tests/integration/test_outbound_live.py runs the same code on Asterisk.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from callflow.agents.roster import Roster, RosterAgent
from callflow.agents.state import AgentState, LogIn, LogOut, RequestState
from callflow.ami.actions import encode
from callflow.ami.frames import AmiMessage
from callflow.engine.clock import FakeClock
from callflow.engine.effects import ListChannels, PbxAction, PbxQuery
from callflow.engine.policy import Policy
from callflow.errors import AmiActionFailed, AmiActionTimeout, AmiLinkDown, StateError
from callflow.outbound.dialer import Dialer, create_callback
from callflow.runtime.core import Runtime
from callflow.service import edge_adapters
from callflow.store import records, repo
from callflow.store.db import Store, open_store
from callflow.store.models import AuditEntry, CallbackTask

SHANGHAI = ZoneInfo("Asia/Shanghai")
MONDAY_10 = datetime(2026, 1, 5, 10, 0, tzinfo=SHANGHAI).astimezone(UTC)
AGENTS = ("1001", "1002")
NUMBER = "13900000001"


class FakePbx:
    """The runtime's PBX port, recording what is sent (as AMI wire fields, through the
    real encoder); it can be down, refuse, or time out; it lists the channels it is given."""

    def __init__(self) -> None:
        self.up = True
        self.stats: dict[str, float] = {}
        self.actions: list[tuple[str, dict[str, Any]]] = []
        self.fail: Exception | None = None
        self.channels: list[str] = []

    async def send(self, action: PbxAction) -> AmiMessage:
        self.actions.append(encode(action))
        if self.fail is not None:
            raise self.fail
        return AmiMessage("Success", {"Response": "Success"}, time.monotonic(), "response")

    async def query(self, query: PbxQuery) -> list[AmiMessage]:
        assert isinstance(query, ListChannels)
        return [frame("CoreShowChannel", Uniqueid=uid) for uid in self.channels]

    def originates(self) -> list[dict[str, Any]]:
        return [fields for name, fields in self.actions if name == "Originate"]


def frame(name: str, **fields: str) -> AmiMessage:
    return AmiMessage(name, {"Event": name, "Timestamp": f"{time.time():.6f}", **fields},
                      time.monotonic())


class Rig:
    def __init__(self, store: Store, policy: Policy) -> None:
        self.store = store
        self.policy = policy
        self.clock = FakeClock(MONDAY_10)
        self.roster = Roster(tuple(RosterAgent(a, f"Agent {a}", f"agent{a}") for a in AGENTS))
        records.sync_roster(store, self.roster)
        self.published: list[tuple[str, dict[str, Any]]] = []
        self.ami = FakePbx()
        self.persisted: list[tuple[str, dict[str, Any]]] = []
        self.runtime = Runtime(policy, self.clock, self.roster, edge_adapters(self.clock,
            persist=lambda kind, data: self.persisted.append((kind, data)),
            publish=lambda topic, payload: self.published.append((topic, payload)),
            pbx=self.ami))
        self.dialer = Dialer(store, self.runtime, policy, self.clock, claimed_by="test")

    def login(self, *agent_ids: str) -> None:
        for agent_id in agent_ids:
            self.runtime.agent_event(agent_id, LogIn())
            self.clock.advance(1)  # the first logged in is the longest idle

    def state(self, agent_id: str) -> AgentState:
        return self.runtime.agents[agent_id].state

    def add(self, number: str = NUMBER, kind: str = "callback", owner: str | None = None,
            due: datetime | None = None, max_attempts: int = 3) -> CallbackTask:
        """A task written straight to the store (as the inbound flow's writer does)."""
        task, created = self.store.run(repo.add_task, kind, number, due or self.clock.wall(),
                                       owner_agent_id=owner, max_attempts=max_attempts)
        assert created
        return task

    def task(self, task_id: int) -> CallbackTask:
        found = self.store.read(repo.get_task, task_id)
        assert found is not None
        return found

    def history(self, task_id: int) -> list[tuple[str, int | None]]:
        return [(a.outcome, a.hangup_cause) for a in self.store.read(repo.task_attempts, task_id)]

    def feed(self, *frames: AmiMessage) -> None:
        self.runtime.on_ami_batch(list(frames))

    def attempt_of(self, agent_id: str) -> str:
        for fields in self.ami.originates():
            if fields["Channel"] == f"PJSIP/agent{agent_id}":
                channel_id: str = fields["ChannelId"]
                return channel_id
        raise AssertionError(f"no Originate for agent {agent_id}: {self.ami.actions}")

    def agent_answers(self, attempt: str) -> None:
        self.feed(frame("Newstate", Uniqueid=attempt, ChannelStateDesc="Up"),
                  frame("OriginateResponse", Uniqueid=attempt, Response="Success", Reason="4"),
                  frame("DialBegin", Uniqueid=attempt, DestUniqueid=f"{attempt}-cust",
                        DestChannel="PJSIP/customer-00000001"))

    def customer_ends(self, attempt: str, status: str, cause: str) -> None:
        self.feed(frame("DialEnd", Uniqueid=attempt, DialStatus=status),
                  frame("Hangup", Uniqueid=f"{attempt}-cust", Cause=cause),
                  frame("Hangup", Uniqueid=attempt, Cause="16"))

    def tasks_published(self, topic: str) -> list[dict[str, Any]]:
        return [p for t, p in self.published if t == topic and p.get("type") == "task"]

    def alarms(self, kind: str) -> list[dict[str, Any]]:
        return [d for k, d in self.persisted if k == "alarm" and d["kind"] == kind]


def open_policy(**outbound_fields: Any) -> Policy:
    return Policy.model_validate({"outbound": outbound_fields} if outbound_fields else {})


@pytest.fixture
def sqlite_store(migrated_sqlite_file: Path, tmp_path: Path) -> Iterator[Store]:
    target = tmp_path / "callflow.db"
    shutil.copyfile(migrated_sqlite_file, target)
    store = open_store(f"sqlite:///{target}")
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def rig(sqlite_store: Store) -> Rig:
    return Rig(sqlite_store, Policy.defaults())


# --- agent-first ------------------------------------------------------------------------------


async def test_own_callback_goes_to_its_agent_and_pool_task_to_the_longest_idle(rig: Rig
                                                                                ) -> None:
    rig.login("1001", "1002")  # 1001 is the longest idle
    pool = rig.add("13900000009")
    own, _ = create_callback(rig.store, "dropped_call", NUMBER, "1002", now=rig.clock.wall(),
                             created_from_call_id="1700000000.1")
    await rig.dialer.tick()
    assert rig.state("1001") is rig.state("1002") is AgentState.RINGING  # no inbound offer now
    originate = {f["Channel"]: f for f in rig.ami.originates()}
    assert originate["PJSIP/agent1002"]["Exten"] == NUMBER  # STD-069: the same agent
    assert originate["PJSIP/agent1001"]["Exten"] == "13900000009"
    assert originate["PJSIP/agent1002"]["ChannelId"].startswith(f"cfo-{own.id}-1-")
    assert rig.task(own.id).status == rig.task(pool.id).status == "dialing"


async def test_the_agent_is_rung_at_the_desk_they_logged_in_at(rig: Rig) -> None:
    rig.runtime.agent_event("1001", LogIn(extension="agent1003"))  # hot-desking
    rig.add()
    await rig.dialer.tick()
    assert [f["Channel"] for f in rig.ami.originates()] == ["PJSIP/agent1003"]


async def test_answered_on_ring_three_is_done_and_the_agent_talks(rig: Rig) -> None:
    rig.login("1001")
    task = rig.add()
    await rig.dialer.tick()
    attempt = rig.attempt_of("1001")
    rig.agent_answers(attempt)
    assert rig.state("1001") is AgentState.ON_CALL  # the agent hears the customer's ringing
    rig.feed(frame("Newstate", Uniqueid=f"{attempt}-cust", ChannelStateDesc="Up"),
             frame("DialEnd", Uniqueid=attempt, DialStatus="ANSWER"))
    await rig.dialer.drain()
    done = rig.task(task.id)
    assert (done.status, done.attempts, done.last_outcome) == ("done", 1, "answered")
    assert rig.history(task.id) == [("answered", None)]  # decided at the answer
    assert rig.tasks_published("agent:1001")[-1]["task"]["status"] == "done"
    rig.feed(frame("HangupRequest", Uniqueid=f"{attempt}-cust"),
             frame("Hangup", Uniqueid=f"{attempt}-cust", Cause="16"),
             frame("Hangup", Uniqueid=attempt, Cause="16"))
    assert rig.state("1001") is AgentState.ACW  # STD-092: wrap-up after every outbound call
    call = next(d for k, d in rig.persisted if k == "call" and d["uniqueid"] == attempt)
    assert (call["direction"], call["outcome"], call["caller_number"], call["agent_id"],
            call["released_by"]) == ("outbound", "answered", NUMBER, "1001", "caller")
    assert rig.dialer.attempts == {}


@pytest.mark.parametrize("status, cause, outcome", [("NOANSWER", "0", "no_answer"),
                                                    ("BUSY", "17", "busy"),
                                                    ("CONGESTION", "34", "failed")])
async def test_not_reached_is_retried_after_the_spacing(rig: Rig, status: str, cause: str,
                                                        outcome: str) -> None:
    rig.login("1001")
    task = rig.add()
    await rig.dialer.tick()
    attempt = rig.attempt_of("1001")
    rig.agent_answers(attempt)
    rig.customer_ends(attempt, status, cause)
    await rig.dialer.drain()
    after = rig.task(task.id)
    assert (after.status, after.attempts, after.last_outcome) == ("pending", 1, outcome)
    spacing = timedelta(minutes=rig.policy.outbound.retry_spacing_min)
    assert after.due_at == rig.clock.wall() + spacing
    assert rig.history(task.id) == [(outcome, int(cause))]
    assert rig.state("1001") is AgentState.ACW
    call = next(d for k, d in rig.persisted if k == "call")
    assert call["hangup_cause"] == int(cause)


async def test_the_customers_cause_is_kept_when_the_agents_hangup_comes_first(
        rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    """Asterisk sends each leg's Hangup when its channel is destroyed, in no fixed order
    (seen in CI: the agent's first, the busy customer's 17 lost)."""
    monkeypatch.setattr("callflow.outbound.dialer.CUSTOMER_CAUSE_GRACE_S", 0.3)
    rig.login("1001")
    task = rig.add()
    await rig.dialer.tick()
    attempt = rig.attempt_of("1001")
    rig.agent_answers(attempt)
    rig.feed(frame("DialEnd", Uniqueid=attempt, DialStatus="BUSY"),
             frame("Hangup", Uniqueid=attempt, Cause="17"))
    assert attempt in rig.dialer.attempts  # held for the customer's Hangup
    rig.feed(frame("Hangup", Uniqueid=f"{attempt}-cust", Cause="17"))
    assert attempt not in rig.dialer.attempts
    await rig.dialer.drain()
    assert rig.history(task.id) == [("busy", 17)]

    # the customer's Hangup never comes (a lost event): the attempt ends after the grace
    rig.login("1002")
    other = rig.add(number="13900000002")
    await rig.dialer.tick()
    second = rig.attempt_of("1002")
    rig.agent_answers(second)
    rig.feed(frame("DialEnd", Uniqueid=second, DialStatus="BUSY"),
             frame("Hangup", Uniqueid=second, Cause="17"))
    assert second in rig.dialer.attempts
    await asyncio.sleep(0.45)
    assert second not in rig.dialer.attempts
    await rig.dialer.drain()
    assert rig.history(other.id) == [("busy", None)]


async def test_invalid_number_and_last_attempt_are_unreachable_and_reported(rig: Rig) -> None:
    rig.login("1001", "1002")
    wrong = rig.add("13900000002")
    last = rig.add("13900000003", max_attempts=1)
    await rig.dialer.tick()
    for agent_id, (status, cause) in {"1001": ("CHANUNAVAIL", "1"),
                                      "1002": ("NOANSWER", "0")}.items():
        attempt = rig.attempt_of(agent_id)
        rig.agent_answers(attempt)
        rig.customer_ends(attempt, status, cause)
    await rig.dialer.drain()
    assert rig.task(wrong.id).status == rig.task(last.id).status == "unreachable"
    assert rig.task(wrong.id).last_outcome == "invalid_number"
    assert {a["detail"]["task_id"] for a in rig.alarms("task_unreachable")} == {wrong.id,
                                                                               last.id}


async def test_a_number_nobody_can_dial_is_unreachable_without_ringing_anyone(rig: Rig
                                                                               ) -> None:
    rig.login("1001")
    task = rig.add("anonymous")  # e.g. a withheld caller ID written by another writer
    await rig.dialer.tick()
    await rig.dialer.drain()
    assert rig.ami.actions == [] and rig.state("1001") is AgentState.READY
    after = rig.task(task.id)
    assert (after.status, after.last_outcome) == ("unreachable", "invalid_number")
    assert [a["detail"]["task_id"] for a in rig.alarms("task_unreachable")] == [task.id]


async def test_a_task_due_outside_contact_hours_waits_for_them_to_open(rig: Rig) -> None:
    rig.clock.advance(12 * 3600)  # Monday 22:00 in Shanghai: the window closed at 21:00
    rig.login("1001")
    task = rig.add()  # due now, straight from a writer that ignored the window
    await rig.dialer.tick()
    rig.clock.advance(10 * 3600)  # Tuesday 08:00
    await rig.dialer.tick()
    assert rig.ami.originates() == [] and rig.task(task.id).status == "pending"
    assert not rig.dialer.holds_agent("1001")
    rig.clock.advance(3600)  # 09:00: the window opens (STD-085)
    await rig.dialer.tick()
    assert [f["Exten"] for f in rig.ami.originates()] == [NUMBER]
    assert rig.task(task.id).status == "dialing"


# --- bad paths: nothing lost ---------------------------------------------------------------


@pytest.mark.parametrize("error", [AmiLinkDown("AMI link lost"),
                                   AmiActionFailed("AMI Originate failed: Permission denied")])
async def test_a_refused_originate_releases_the_claim(rig: Rig, error: Exception) -> None:
    rig.login("1001")
    task = rig.add()
    rig.ami.fail = error
    await rig.dialer.tick()
    await rig.dialer.drain()
    after = rig.task(task.id)
    # counted on the retry ladder (issue 16): a refusal that repeats cannot spin the dialer
    assert (after.status, after.attempts, after.claimed_by) == ("pending", 1, None)
    spacing = timedelta(minutes=rig.dialer.policy.outbound.retry_spacing_min)
    assert after.due_at == rig.clock.wall() + spacing
    assert rig.history(task.id) == [("not_dialled", None)]
    assert rig.state("1001") is AgentState.READY
    rig.ami.fail = None
    rig.clock.advance(spacing.total_seconds())
    await rig.dialer.tick()
    assert len(rig.ami.originates()) == 2  # tried again, as a fresh claim


async def test_no_outbound_route_counts_the_attempt_and_alarms_at_once(rig: Rig) -> None:
    rig.login("1001")
    task = rig.add()
    await rig.dialer.tick()
    attempt = rig.attempt_of("1001")
    rig.feed(frame("Newstate", Uniqueid=attempt, ChannelStateDesc="Up"),
             frame("OriginateResponse", Uniqueid=attempt, Response="Success", Reason="4"),
             frame("Hangup", Uniqueid=attempt, Cause="3"))  # "not in service", no Dial
    await rig.dialer.drain()
    after = rig.task(task.id)
    assert (after.status, after.attempts, after.last_outcome) == ("pending", 1, "no_route")
    assert rig.history(task.id) == [("no_route", 3)]
    assert [(a["detail"]["task_id"], a["std"]) for a in rig.alarms("no_route")] == [
        (task.id, "STD-081")]


async def test_an_unconfirmed_originate_waits_for_its_events(rig: Rig) -> None:
    rig.login("1001")
    task = rig.add()
    rig.ami.fail = AmiActionTimeout("no response")
    await rig.dialer.tick()
    attempt = rig.attempt_of("1001")
    assert rig.task(task.id).status == "dialing"  # it may be ringing: never dial it twice
    rig.agent_answers(attempt)
    assert rig.state("1001") is AgentState.ON_CALL


async def test_nothing_is_dialled_while_the_link_is_down(rig: Rig) -> None:
    rig.login("1001")
    rig.add()
    rig.ami.up = False
    await rig.dialer.tick()
    assert rig.ami.actions == [] and not rig.dialer.holds_agent("1001")
    with pytest.raises(StateError, match="ami_down"):
        await rig.dialer.dial(1, "1001")


async def test_an_agent_not_picking_up_is_not_a_customer_attempt(rig: Rig) -> None:
    rig.login("1001")
    task = rig.add()
    await rig.dialer.tick()
    attempt = rig.attempt_of("1001")
    rig.feed(frame("Newchannel", Uniqueid=attempt, Channel="PJSIP/agent1001-00000001"),
             frame("OriginateResponse", Uniqueid=attempt, Response="Failure", Reason="3"))
    assert rig.state("1001") is AgentState.RINGING  # its Hangup, with the cause, follows
    rig.feed(frame("Hangup", Uniqueid=attempt, Cause="19"))
    await rig.dialer.drain()
    after = rig.task(task.id)
    assert (after.status, after.attempts) == ("pending", 0)
    assert rig.history(task.id) == [("agent_no_answer", 19)]
    agent = rig.runtime.agents["1001"]
    assert (agent.state, agent.reason) == (AgentState.NOT_READY, "ring_no_answer")  # STD-008
    assert not any(k == "call" for k, _ in rig.persisted)


async def test_a_softphone_refusing_calls_does_not_burn_the_task_list(rig: Rig) -> None:
    rig.login("1001")
    first = rig.add("13900000001")
    second = rig.add("13900000002")
    await rig.dialer.tick()
    attempt = rig.attempt_of("1001")
    rig.feed(frame("Newchannel", Uniqueid=attempt),  # e.g. no common codec: 488, cause 58
             frame("OriginateResponse", Uniqueid=attempt, Response="Failure", Reason="0"),
             frame("Hangup", Uniqueid=attempt, Cause="58"))
    await rig.dialer.drain()
    assert rig.state("1001") is AgentState.READY
    await rig.dialer.tick()
    await rig.dialer.tick()
    assert len(rig.ami.originates()) == 1  # the agent is rested, the other task kept
    assert [(a["detail"]["agent_id"], a["detail"]["cause"])
            for a in rig.alarms("outbound_agent_leg_failed")] == [("1001", 58)]
    assert rig.task(first.id).attempts == rig.task(second.id).attempts == 0
    assert rig.history(first.id) == [("agent_no_answer", 58)]
    rig.clock.advance(rig.dialer.policy.outbound.agent_failure_backoff_s)
    await rig.dialer.tick()
    assert len(rig.ami.originates()) == 2


async def test_a_lost_link_closes_an_attempt_whose_channel_is_gone(rig: Rig) -> None:
    rig.login("1001")
    task = rig.add()
    await rig.dialer.tick()
    attempt = rig.attempt_of("1001")
    rig.agent_answers(attempt)
    rig.runtime.stats.resyncs += 1  # the AMI link came back; the end was never seen
    rig.ami.channels = []
    await rig.dialer.tick()
    await rig.dialer.drain()
    after = rig.task(task.id)
    assert (after.status, after.attempts, after.last_outcome) == ("pending", 1, "unknown")
    assert rig.state("1001") is AgentState.ACW
    assert rig.dialer.stats["vanished"] == 1


async def test_a_silent_attempt_still_up_is_kept(rig: Rig) -> None:
    rig.login("1001")
    rig.add()
    await rig.dialer.tick()
    attempt = rig.attempt_of("1001")
    rig.ami.channels = [attempt]
    rig.clock.advance(rig.dialer.ring_budget_s + 60)
    await rig.dialer.tick()
    assert attempt in rig.dialer.attempts
    rig.ami.channels = []
    rig.clock.advance(rig.dialer.ring_budget_s + 60)
    await rig.dialer.tick()
    await rig.dialer.drain()
    assert attempt not in rig.dialer.attempts and rig.state("1001") is AgentState.READY


async def test_one_number_is_never_dialled_twice_at_once(rig: Rig) -> None:  # STD-090
    rig.login("1001", "1002")
    first = rig.add(kind="callback")
    second = rig.add(kind="manual")  # same number, another purpose
    await rig.dialer.tick()
    await rig.dialer.tick()
    assert [f["Exten"] for f in rig.ami.originates()] == [NUMBER]
    assert rig.task(second.id).status == "pending"
    attempt = rig.attempt_of("1001")
    rig.agent_answers(attempt)
    rig.customer_ends(attempt, "BUSY", "17")
    await rig.dialer.drain()
    await rig.dialer.tick()
    assert [f["Exten"] for f in rig.ami.originates()] == [NUMBER, NUMBER]
    assert rig.ami.originates()[1]["Channel"] == "PJSIP/agent1002"
    assert rig.task(first.id).status == "pending" and rig.task(second.id).status == "dialing"


async def test_pool_tasks_wait_while_an_inbound_caller_waits(rig: Rig) -> None:
    rig.login("1001", "1002")
    rig.add("13900000009")
    rig.add(owner="1002", kind="dropped_call")
    rig.runtime.call_entered("1700000000.5", "PJSIP/caller-1", "13800000000", "100")
    await rig.dialer.tick()
    assert [f["Channel"] for f in rig.ami.originates()] == ["PJSIP/agent1002"]


async def test_an_agent_with_a_due_callback_is_held_from_inbound(rig: Rig) -> None:
    rig.runtime.hold_agents(rig.dialer.holds_agent)  # as OutboundFeature.start does
    rig.login("1001")
    rig.runtime.agent_event("1001", RequestState(AgentState.BUSY, "restroom"))
    rig.add(owner="1001", kind="dropped_call")
    await rig.dialer.tick()
    assert rig.dialer.holds_agent("1001") and rig.ami.actions == []
    rig.runtime.agent_event("1001", RequestState(AgentState.READY))  # the only free agent
    rig.runtime.call_entered("1700000000.7", "PJSIP/caller-7", "13800000000", "100")
    assert rig.runtime.choose_agent("1700000000.7") is None  # STD-069: the callback first
    await rig.dialer.tick()
    assert rig.state("1001") is AgentState.RINGING
    assert [f["Channel"] for f in rig.ami.originates()] == ["PJSIP/agent1001"]


async def test_tasks_of_an_agent_who_logged_out_go_to_the_pool(rig: Rig) -> None:
    rig.login("1001")
    due = rig.clock.wall()
    dropped = rig.add(owner="1001", kind="dropped_call", due=due)
    named = rig.add("13900000002", owner="1001", kind="named_agent", due=due)
    rig.runtime.agent_event("1001", RequestState(AgentState.BUSY, "meeting"))
    rig.runtime.agent_event("1001", LogOut())
    await rig.dialer.tick()
    assert rig.task(dropped.id).owner_agent_id == "1001"  # within the grace
    rig.clock.advance(rig.policy.outbound.owner_absent_grace_min * 60 + 1)
    await rig.dialer.tick()
    await rig.dialer.tick()
    moved = rig.task(dropped.id)
    assert moved.owner_agent_id is None and "agent 1001 not logged in" in moved.note
    assert rig.task(named.id).owner_agent_id == "1001"  # STD-072: the named agent's
    assert [a["detail"]["task_id"] for a in rig.alarms("callback_owner_absent")] == [named.id]
    audit = rig.store.read(lambda s: list(s.scalars(select(AuditEntry))))
    assert [(e.action, e.target) for e in audit] == [("task_to_pool", f"task:{dropped.id}")]
    assert rig.tasks_published("agent:1001")[-1]["task"]["owner_agent_id"] is None


# --- desktops and preview --------------------------------------------------------------------


async def test_desktops_hear_of_tasks_whoever_wrote_them(rig: Rig) -> None:
    task = rig.add(owner="1001", kind="dropped_call")
    await rig.dialer.tick()
    told = rig.tasks_published("agent:1001")
    assert [(p["change"], p["task"]["id"], p["task"]["kind"]) for p in told] == [
        ("created", task.id, "dropped_call")]
    assert len(rig.tasks_published("board")) == 1
    await rig.dialer.tick()
    assert len(rig.tasks_published("agent:1001")) == 1  # unchanged: not repeated
    rig.store.run(repo.cancel_task, task.id)
    await rig.dialer.tick()
    assert rig.tasks_published("agent:1001")[-1]["task"]["status"] == "cancelled"


@pytest.mark.std("STD-082")
async def test_preview_shows_the_task_and_dials_when_the_agent_presses_dial(
        sqlite_store: Store) -> None:
    rig = Rig(sqlite_store, open_policy(dial_mode="preview"))
    rig.login("1001")
    task = rig.add()  # a pool task: given to the free agent to preview (STD-082)
    await rig.dialer.tick()
    assert rig.ami.actions == []
    preview = [p for p in rig.tasks_published("agent:1001") if p["change"] == "preview"]
    assert [p["task"]["id"] for p in preview] == [task.id]
    assert rig.task(task.id).owner_agent_id == "1001"
    await rig.dialer.tick()
    assert len([p for p in rig.tasks_published("agent:1001") if p["change"] == "preview"]) == 1
    attempt = await rig.dialer.dial(task.id, "1001")
    assert rig.attempt_of("1001") == attempt and rig.state("1001") is AgentState.RINGING
    with pytest.raises(StateError, match="agent_not_ready"):
        await rig.dialer.dial(task.id, "1001")
    rig.login("1002")
    with pytest.raises(StateError, match="task_not_pending"):
        await rig.dialer.dial(task.id, "1002")


# --- creating tasks ---------------------------------------------------------------------------


def test_create_callback_rules(sqlite_store: Store) -> None:
    Rig(sqlite_store, Policy.defaults())  # agents in the store
    now = MONDAY_10
    later = now + timedelta(hours=3)
    task, created = create_callback(sqlite_store, "callback", "139-0000-0001", None, later,
                                    now=now)
    assert created and task.number == NUMBER and task.due_at == later
    again, created = create_callback(sqlite_store, "callback", NUMBER, None, later, now=now)
    assert (again.id, created) == (task.id, False)
    earlier, created = create_callback(sqlite_store, "callback", NUMBER, None, now, now=now)
    assert (earlier.id, created, earlier.due_at) == (task.id, False, now)  # C-11
    follow, _ = create_callback(sqlite_store, "follow_up", NUMBER, "1001", now=now)
    assert follow.id != task.id and follow.due_at.astimezone(SHANGHAI).day == 6
    for bad in ("+86139", "anonymous", ""):
        with pytest.raises(StateError, match="invalid_number"):
            create_callback(sqlite_store, "callback", bad, now=now)
    with pytest.raises(StateError, match="owner_required"):
        create_callback(sqlite_store, "named_agent", "13900000005", None, now=now)
