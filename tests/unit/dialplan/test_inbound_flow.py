"""The inbound flow over real FastAGI TCP against a scripted Asterisk: every branch,
bad input, and the caller hanging up at each step.

The real server, runtime, agent machine and prompt library run; only Asterisk is a
script (what it would answer). The Policy is shortened so the waits take tenths of a
second; the waiting plan itself is tested with a fake clock in test_waiting.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, ClassVar

import pytest
from agi_peer import answer_env_check

from callflow.agents.roster import Roster, RosterAgent
from callflow.agents.state import AgentState, LogIn
from callflow.ami.frames import AmiFrameParser, AmiMessage
from callflow.dialplan.inbound import FlowContext, run_inbound
from callflow.dialplan.server import FastAgiServer
from callflow.engine.calls import OfferResult, Outcome, Phase
from callflow.engine.clock import RealClock
from callflow.engine.policy import Policy, parse_policy
from callflow.errors import AmiLinkDown
from callflow.pbx.prompts import LanguagePack, PromptLibrary
from callflow.pbx.render import INBOUND_FLOW_CONTEXT
from callflow.runtime.core import Runtime
from callflow.service import edge_adapters

STEP = 5.0
CALL_ID = "1795737291.7"
SHORT = {"waiting": {"announcement_interval_s": 0.3, "callback_offer_s": 0.5}}


@dataclass
class Rig:
    runtime: Runtime
    port: int
    records: list[tuple[str, dict[str, Any]]]
    published: list[tuple[str, dict[str, Any]]]

    def log_in(self, *agent_ids: str) -> None:
        for agent_id in agent_ids:
            self.runtime.agent_event(agent_id, LogIn())


@pytest.fixture(scope="module")
def prompts_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("prompts")  # generated once for the module


class AmiUp:
    """A PBX port whose AMI link is up: the runtime then waits for AMI's word (the test
    feeds captured frames itself); actions are not needed here."""

    up = True

    @property
    def stats(self) -> dict[str, float]:
        return {}

    async def send(self, action: Any) -> Any:
        raise AmiLinkDown("not wired in this test")

    async def query(self, query: Any) -> Any:
        raise AmiLinkDown("not wired in this test")


async def start_rig(prompts_dir: Path, policy: Policy,
                    pbx: AmiUp | None = None) -> AsyncIterator[Rig]:
    roster = Roster(tuple(RosterAgent(a, f"Agent {a}", f"agent{a}", queues=("main",))
                          for a in ("1001", "1002")))
    records: list[tuple[str, dict[str, Any]]] = []
    published: list[tuple[str, dict[str, Any]]] = []
    runtime = Runtime(policy, RealClock(), roster, edge_adapters(RealClock(),
        persist=lambda k, d: records.append((k, d)),
        publish=lambda t, p: published.append((t, p)), pbx=pbx))
    runtime.agi_hangup_grace_s = 0  # no AMI here: the flow's report is the only one
    library = PromptLibrary(LanguagePack.load("zh"), prompts_dir,
                            {"centre": policy.greetings.centre_name})
    ctx = FlowContext(runtime=runtime, policy=policy, prompts=library, clock=RealClock(),
                      today=lambda: date(2026, 3, 3), history=lambda number: ())
    server = FastAgiServer("127.0.0.1", 0, {"inbound": lambda s: run_inbound(s, ctx)},
                           refused_routes={INBOUND_FLOW_CONTEXT: "inbound"})
    await server.start()
    try:
        yield Rig(runtime, server.port, records, published)
    finally:
        await server.stop()
        for ast in Asterisk.opened:
            ast.writer.close()
            with contextlib.suppress(OSError):
                await ast.writer.wait_closed()
        Asterisk.opened.clear()


@pytest.fixture
async def rig(prompts_dir: Path) -> AsyncIterator[Rig]:
    async for r in start_rig(prompts_dir, parse_policy(SHORT)):
        yield r


class Asterisk:
    """Asterisk's side of the AGI session, as a script."""

    opened: ClassVar[list[Asterisk]] = []  # closed after each test

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.commands: list[str] = []
        Asterisk.opened.append(self)

    @classmethod
    async def call(cls, port: int, did: str = "100", caller: str = "13800000000",
                   identity: dict[str, str] | None = None,
                   call_id: str = CALL_ID) -> Asterisk:
        """A call into the flow; with ``identity``, the server is expected to refuse the
        environment (``caller`` carried a newline) and ask for the channel's identity,
        answered from it."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        env = {"agi_network": "yes", "agi_network_script": "inbound",
               "agi_channel": "PJSIP/caller-00000007", "agi_uniqueid": call_id,
               "agi_callerid": caller, "agi_extension": did, "agi_arg_1": did}
        writer.write(("".join(f"{k}: {v}\n" for k, v in env.items()) + "\n").encode())
        await writer.drain()
        await answer_env_check(reader, writer)
        ast = cls(reader, writer)
        for name, value in (identity or {}).items():
            await ast.answer(f"GET VARIABLE {name}", f"200 result=1 ({value})")
        return ast

    async def command(self) -> str:
        async with asyncio.timeout(STEP):
            line = (await self.reader.readline()).decode().rstrip("\n")
        assert line, "the flow closed the session"
        self.commands.append(line)
        return line

    async def answer(self, starts: str, *reply: str) -> str:
        line = await self.command()
        assert line.startswith(starts), f"expected {starts!r}, the flow sent {line!r}"
        self.writer.write("".join(r + "\n" for r in (reply or ("200 result=0",))).encode())
        await self.writer.drain()
        return line

    async def until(self, starts: str, reply: str = "200 result=0") -> str:
        """Answer every command (music, announcements) until one starting with ``starts``."""
        while True:
            line = await self.command()
            if line.startswith(starts):
                self.writer.write((reply + "\n").encode())
                await self.writer.drain()
                return line
            self.writer.write(b"200 result=0\n")
            await self.writer.drain()

    async def closed(self) -> bytes:
        async with asyncio.timeout(STEP):
            return await self.reader.read()

    async def hang_up_during(self, starts: str) -> None:
        """The caller hangs up while ``starts`` runs: result -1, then Asterisk's HANGUP."""
        await self.until(starts, "200 result=-1")
        self.writer.write(b"HANGUP\n")
        await self.writer.drain()
        while True:  # a dead channel still answers GET VARIABLE; anything else is refused
            async with asyncio.timeout(STEP):
                raw = await self.reader.readline()
            if not raw:
                return
            line = raw.decode().rstrip("\n")
            self.commands.append(line)
            reply = "200 result=0" if line.startswith("GET VARIABLE") else \
                "511 Command Not Permitted on a dead channel or intercept routine"
            self.writer.write((reply + "\n").encode())
            await self.writer.drain()


async def dial(ast: Asterisk, status: str, talked_s: int = 0) -> str:
    line = await ast.until("EXEC Dial")
    await ast.answer("GET VARIABLE DIALSTATUS", f"200 result=1 ({status})")
    if status == "ANSWER":
        await ast.answer("GET VARIABLE ANSWEREDTIME", f"200 result=1 ({talked_s})")
    return line


def call(rig: Rig) -> Any:
    return rig.runtime.calls[CALL_ID]


async def agent_hangs_up(ast: Asterisk) -> None:
    """Dial (with ``g``) returned on an answered call: the agent hung up first. The flow
    says goodbye, marks the call done and releases the caller."""
    await ast.answer("STREAM FILE", "200 result=0 endpos=8000")
    await ast.answer("SET VARIABLE CALLFLOW_DONE 1", "200 result=1")
    await ast.answer("HANGUP", "200 result=1")


async def test_a_free_agent_is_dialled_with_the_ring_limit_and_the_opening(rig: Rig) -> None:
    rig.log_in("1001")
    ast = await Asterisk.call(rig.port)
    await ast.answer("ANSWER")
    line = await dial(ast, "ANSWER")
    assert line.startswith('EXEC Dial "PJSIP/agent1001,15,A(:') and "opening-" in line
    # g: Dial returns to the flow when the agent hangs up; t: the agent's leg may be
    # transferred (the desktop's warm transfer, AMI Atxfer); b(): the agent's leg carries
    # the mid-call PIN feature (callflow/pbx/midcall_pin.py)
    assert line.endswith('gtb(callflow-agent-leg^s^1)"')
    await agent_hangs_up(ast)
    await ast.closed()
    # no AMI here: the flow's own reports carry the call, flagged as such
    assert call(rig).phase is Phase.ENDED and call(rig).released_by == "agent"
    assert "AMI" in call(rig).incomplete
    assert call(rig).offers[0].from_pbx is False
    assert call(rig).answered_at >= call(rig).offers[0].started_at


async def test_an_unregistered_endpoint_is_skipped_for_the_next_agent(rig: Rig) -> None:
    rig.log_in("1001", "1002")
    ast = await Asterisk.call(rig.port)
    await ast.answer("ANSWER")
    first = await dial(ast, "CHANUNAVAIL")
    second = await dial(ast, "ANSWER")
    assert "agent1001" in first and "agent1002" in second
    assert not rig.runtime.agents["1001"].softphone_reachable  # not offered again
    await agent_hangs_up(ast)


async def test_no_answer_in_the_ring_limit_sets_rona_and_moves_on(rig: Rig) -> None:
    rig.log_in("1001", "1002")
    ast = await Asterisk.call(rig.port)
    await ast.answer("ANSWER")
    await dial(ast, "NOANSWER")
    await dial(ast, "ANSWER")
    await agent_hangs_up(ast)
    agent = rig.runtime.agents["1001"]
    assert agent.state is AgentState.NOT_READY and agent.reason == "ring_no_answer"
    assert [o.result.value for o in call(rig).offers] == ["no_answer", "answered"]


async def test_waiting_callers_hear_music_and_announcements_until_an_agent_frees_up(
        rig: Rig) -> None:
    ast = await Asterisk.call(rig.port)
    await ast.answer("ANSWER")
    await ast.answer("SET MUSIC ON default")
    await ast.answer("SET MUSIC OFF")
    announce = await ast.answer("STREAM FILE")
    assert "wait_progress-" in announce
    await ast.answer("SET MUSIC ON default")
    rig.log_in("1001")  # an agent frees up: the flow stops the music and dials at once
    await ast.answer("SET MUSIC OFF")
    await dial(ast, "ANSWER")


async def test_dtmf_garbage_at_the_callback_offer_keeps_the_caller_waiting(rig: Rig) -> None:
    ast = await Asterisk.call(rig.port, caller="anonymous")
    await ast.answer("ANSWER")
    await ast.until("GET DATA", "200 result=9")  # neither 1 nor 2
    offer = await ast.until("GET DATA", "200 result=2")  # next offer: 2 = call me back
    assert "callback_offer-" in offer
    # no usable caller ID: the caller keys a number; garbage, then a real one, confirmed
    await ast.answer("GET DATA", "200 result=12#")
    await ast.answer("GET DATA", "200 result=13912345678#")
    confirm = await ast.answer("GET DATA", "200 result=1")
    assert "callback_confirm-" in confirm
    await ast.answer("STREAM FILE")  # "we will contact you"
    await ast.answer("SET VARIABLE CALLFLOW_DONE 1", "200 result=1")
    await ast.answer("HANGUP", "200 result=1")
    tasks = [d for k, d in rig.records if k == "task"]
    assert [(t["kind"], t["number"]) for t in tasks] == [("callback", "13912345678")]
    assert call(rig).outcome is Outcome.CALLBACK


@pytest.mark.parametrize("step", ["ANSWER", "SET MUSIC ON", "STREAM FILE", "GET DATA"])
async def test_caller_hanging_up_at_each_waiting_step_ends_the_call_as_abandoned(
        rig: Rig, step: str) -> None:
    ast = await Asterisk.call(rig.port)
    if step != "ANSWER":
        await ast.answer("ANSWER")
    await ast.hang_up_during(step)
    assert call(rig).phase is Phase.ENDED
    assert call(rig).outcome in (Outcome.ABANDONED, Outcome.SHORT_ABANDON)
    assert not rig.runtime.waiters


async def test_caller_hanging_up_while_an_agent_rings_frees_the_agent(rig: Rig) -> None:
    rig.log_in("1001")
    ast = await Asterisk.call(rig.port)
    await ast.answer("ANSWER")
    await ast.hang_up_during("EXEC Dial")
    assert call(rig).phase is Phase.ENDED
    assert rig.runtime.agents["1001"].state is AgentState.READY


@pytest.mark.std("STD-002")
async def test_an_unknown_did_is_logged_and_routed_to_the_default_queue(
        prompts_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    policy = parse_policy({**SHORT, "routing": {"did_queues": {"100": "main"},
                                                "default_queue": "main"}})
    async for rig in start_rig(prompts_dir, policy):
        rig.log_in("1001")
        with caplog.at_level(logging.WARNING, "callflow.dialplan.inbound"):
            ast = await Asterisk.call(rig.port, did="999")
            await ast.answer("ANSWER")
            await dial(ast, "ANSWER")
        assert "DID '999' is not configured" in caplog.text
        assert call(rig).queue == "main"


async def test_named_agent_line_with_an_unknown_work_number_falls_back_to_anyone(
        prompts_dir: Path) -> None:
    policy = parse_policy({**SHORT, "routing": {"named_agent_dids": ["200"]}})
    async for rig in start_rig(prompts_dir, policy):
        rig.log_in("1002")
        ast = await Asterisk.call(rig.port, did="200")
        await ast.answer("ANSWER")
        await ast.answer("GET DATA", "200 result=*7x")
        await ast.answer("GET DATA", "200 result=9999#")
        line = await dial(ast, "ANSWER")
        assert "agent1002" in line


async def test_ended_calls_leave_memory_after_the_retention(rig: Rig) -> None:
    """A long-running engine keeps only live calls (and recent ones) in memory."""
    rig.runtime.ended_call_retention_s = 0.05
    ast = await Asterisk.call(rig.port)
    await ast.hang_up_during("ANSWER")
    assert call(rig).phase is Phase.ENDED
    await asyncio.sleep(0.2)
    assert CALL_ID not in rig.runtime.calls


async def test_a_refused_environment_is_an_ordinary_call_from_an_unknown_caller(
        prompts_dir: Path) -> None:
    """Issue 15: a caller number that wrote ``agi_network_script: feature`` and a named
    agent's DID into the environment reaches an agent all the same, on the default
    queue, as a caller whose number is unknown; supervisors get an alarm."""
    policy = parse_policy({**SHORT, "routing": {"named_agent_dids": ["200"],
                                                "did_queues": {"200": "vip"}}})
    async for rig in start_rig(prompts_dir, policy):
        rig.log_in("1001")
        ast = await Asterisk.call(
            rig.port, did="200", caller="139\r\nagi_network_script: feature\r\nagi_arg_1: *21",
            identity={"UNIQUEID": CALL_ID, "CHANNEL": "PJSIP/caller-00000007",
                      "CONTEXT": INBOUND_FLOW_CONTEXT})
        await ast.answer("ANSWER")
        line = await dial(ast, "ANSWER")  # no named-agent question first
        assert "agent1001" in line
        assert (call(rig).caller, call(rig).did, call(rig).queue) == ("", "", "main")
        alarms = [data for kind, data in rig.records if kind == "alarm"]
        assert [a["kind"] for a in alarms] == ["agi_environment_refused"]
        assert alarms[0]["detail"]["call_id"] == CALL_ID
        assert "agi_network_script written twice" in alarms[0]["detail"]["reason"]


async def test_the_agent_hanging_up_during_the_opening_is_the_agents_release(
        rig: Rig) -> None:
    """Asterisk 22's Dial returns -1 on the caller's live channel when the agent hangs up
    while the opening still plays, option g or not (tests/fixtures/ami/endings
    agent_bye_during_opening; live: the flow failed and the caller was cut off without
    the goodbye): the flow says goodbye and releases the caller like any agent release."""
    rig.log_in("1001")
    ast = await Asterisk.call(rig.port)
    await ast.answer("ANSWER")
    await ast.until("EXEC Dial", "200 result=-1")
    await ast.answer("CHANNEL STATUS", "200 result=6")  # the caller is still there
    await ast.answer("GET VARIABLE DIALSTATUS", "200 result=1 (ANSWER)")
    await ast.answer("GET VARIABLE ANSWEREDTIME", "200 result=1 ()")
    await agent_hangs_up(ast)
    await ast.closed()
    assert call(rig).phase is Phase.ENDED and call(rig).released_by == "agent"
    assert sum(c.startswith("EXEC Dial") for c in ast.commands) == 1  # offered once


ENDINGS = Path(__file__).resolve().parents[2] / "fixtures" / "ami" / "endings"


def captured(case: str) -> list[AmiMessage]:
    parsed = AmiFrameParser().feed(b"Asterisk Call Manager/11.0.0\r\n"
                                   + (ENDINGS / f"{case}.txt").read_bytes(), 0.0)
    return list(parsed.messages)


@pytest.mark.parametrize(("case", "result", "state", "reason"), [
    ("reject_480", OfferResult.UNAVAILABLE, AgentState.NOT_READY, "unreachable"),
    ("reject_603", OfferResult.DECLINED, AgentState.NOT_READY, "rejected"),
])
async def test_amis_word_on_a_refused_offer_wins_over_the_flows_dialstatus(
        prompts_dir: Path, case: str, result: OfferResult, state: AgentState,
        reason: str) -> None:
    """Dial returns after its DialEnd, but AMI's events reach the loop on their own path:
    when the flow's DIALSTATUS (NOANSWER for a 480, CHANUNAVAIL for a 603) came first it
    closed the offer, and a 480 was a ring-no-answer (live, 1 run in 5). The flow waits
    for AMI's DialEnd, read with the phone's own cause."""
    frames = captured(case)
    caller = next(f for f in frames if f.name == "Newchannel")
    leg = next(f for f in frames if f.name == "Newchannel" and "agent1001" in f.get("Channel"))
    refused = next(i for i, f in enumerate(frames) if f.name == "HangupRequest"
                   and f.get("Uniqueid") == leg.get("Uniqueid"))
    gone = next(i for i, f in enumerate(frames) if f.name == "Hangup"
                and f.get("Uniqueid") == leg.get("Uniqueid"))
    async for rig in start_rig(prompts_dir, parse_policy(SHORT), pbx=AmiUp()):
        rig.log_in("1001")
        ast = await Asterisk.call(rig.port, call_id=caller.get("Uniqueid"))
        await ast.answer("ANSWER")
        await ast.until("EXEC Dial")  # ... the phone rings, then refuses; Dial returns
        rig.runtime.on_ami_batch(frames[:refused])
        await ast.answer("GET VARIABLE DIALSTATUS", "200 result=1 (NOANSWER)"
                         if case == "reject_480" else "200 result=1 (CHANUNAVAIL)")
        await asyncio.sleep(0.1)  # AMI's events of the refusal arrive after the flow's
        rig.runtime.on_ami_batch(frames[refused:gone + 1])
        await ast.hang_up_during("SET MUSIC")  # nobody else to offer: the caller waits
        offers = rig.runtime.calls[caller.get("Uniqueid")].offers
        assert [(o.agent_id, o.result) for o in offers] == [("1001", result)]
        agent = rig.runtime.agents["1001"]
        assert (agent.state, agent.reason) == (state, reason)
        assert agent.ring_no_answer_count == 0
