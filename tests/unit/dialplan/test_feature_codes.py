"""Feature codes from the softphone: the code's meaning, whose agent, the prompt answered.

The rules run against the real Runtime; the AGI route runs in the real FastAGI server,
spoken to over TCP by a client playing Asterisk's side of ``AGI(agi://.../feature,*21)``
line by line, answering what the route asks of the channel (its endpoint and context).
The prompts are really generated (espeak-ng, sox).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from agi_peer import answer_env_check

from callflow.agents.events import AgentState, CallAnswered, CallEnded, CallOffered
from callflow.agents.roster import Roster, RosterAgent
from callflow.dialplan.agi import AgiSession
from callflow.dialplan.feature_codes import (
    FeatureCodeContext,
    apply_feature_code,
    run_feature_code,
)
from callflow.dialplan.server import FastAgiServer
from callflow.engine.clock import RealClock
from callflow.engine.policy import Policy, parse_policy
from callflow.pbx.prompts import LanguagePack, PromptLibrary
from callflow.runtime.core import Runtime
from callflow.service import edge_adapters

S = AgentState
STEP_TIMEOUT = 10.0  # the first use of a prompt generates it


@pytest.fixture(scope="session")
def prompt_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("feature-prompts")


def context(prompt_dir: Path, policy: Policy | None = None) -> FeatureCodeContext:
    policy = policy or Policy.defaults()
    roster = Roster(tuple(RosterAgent(a, f"Agent {a}", f"agent{a}")
                          for a in ("1001", "1002", "1003")))
    published: list[tuple[str, dict[str, Any]]] = []
    runtime = Runtime(policy, RealClock(), roster, edge_adapters(RealClock(),
        persist=lambda kind, data: None, publish=lambda t, p: published.append((t, p))))
    prompts = PromptLibrary(LanguagePack.load("zh"), prompt_dir, {"centre": "callflow"})
    return FeatureCodeContext(runtime, policy, prompts)


async def test_codes_change_the_state_of_the_agent_at_that_softphone(prompt_dir: Path) -> None:
    ctx = context(prompt_dir)
    rt = ctx.runtime
    codes = ctx.policy.agents.feature_codes
    rt.log_in("1001")
    assert apply_feature_code(ctx, codes.not_ready, "agent1001") == "feature_not_ready"
    agent = rt.agents["1001"]
    assert (agent.state, agent.reason) == (S.NOT_READY, codes.not_ready_reason)
    assert apply_feature_code(ctx, codes.busy, "agent1001") == "feature_busy"
    assert (rt.agents["1001"].state, rt.agents["1001"].reason) == (S.BUSY, codes.busy_reason)
    assert apply_feature_code(ctx, codes.ready, "agent1001") == "feature_ready"
    assert rt.agents["1001"].state is S.READY
    rt.agent_event("1001", CallOffered("c1"))
    rt.agent_event("1001", CallAnswered("c1"))
    assert apply_feature_code(ctx, codes.not_ready, "agent1001") == "feature_refused"  # on_call
    rt.agent_event("1001", CallEnded("c1"))
    assert apply_feature_code(ctx, codes.end_acw, "agent1001") == "feature_ready"
    assert rt.agents["1001"].state is S.READY


async def test_refusals_leave_everything_as_it_was(prompt_dir: Path) -> None:
    ctx = context(prompt_dir)
    rt = ctx.runtime
    codes = ctx.policy.agents.feature_codes
    rt.log_in("1001")
    before = dict(rt.agents)
    assert apply_feature_code(ctx, "*29", "agent1001") == "feature_refused"  # not a code
    assert apply_feature_code(ctx, codes.ready, "agent1001") == "feature_refused"  # no_change
    assert apply_feature_code(ctx, codes.end_acw, "agent1001") == "feature_refused"
    assert apply_feature_code(ctx, codes.ready, "agent1002") == "feature_refused"  # logged out
    assert apply_feature_code(ctx, codes.ready, "caller") == "feature_refused"  # no agent's
    assert rt.agents == before


async def test_a_hot_desked_agent_is_the_one_the_desk_speaks_for(prompt_dir: Path) -> None:
    ctx = context(prompt_dir)
    rt = ctx.runtime
    rt.log_in("1002", "agent1003")
    assert apply_feature_code(ctx, "*21", "agent1003") == "feature_not_ready"
    assert rt.agents["1002"].state is S.NOT_READY
    assert rt.agents["1003"].state is S.LOGGED_OUT


async def test_the_codes_are_the_policys(prompt_dir: Path) -> None:
    policy = parse_policy({"agents": {"feature_codes": {
        "not_ready": "*25", "ready": "*26", "busy": "*27", "end_acw": "*28",
        "not_ready_reason": "training"}}})
    ctx = context(prompt_dir, policy)
    ctx.runtime.log_in("1001")
    assert apply_feature_code(ctx, "*21", "agent1001") == "feature_refused"
    assert apply_feature_code(ctx, "*25", "agent1001") == "feature_not_ready"
    assert ctx.runtime.agents["1001"].reason == "training"


# --- the AGI route over TCP -----------------------------------------------------------------


@pytest.fixture
async def server(prompt_dir: Path) -> AsyncIterator[tuple[FastAgiServer, FeatureCodeContext]]:
    ctx = context(prompt_dir)

    async def route(session: AgiSession) -> None:
        await run_feature_code(session, ctx)

    agi = FastAgiServer("127.0.0.1", 0, {"feature": route})
    await agi.start()
    yield agi, ctx
    await agi.stop()


async def asterisk_dials(port: int, code: str, endpoint: str, context: str = "agents",
                         **env_lines: str) -> list[str]:
    """Asterisk's side of the AGI() of a channel on ``endpoint`` in ``context``; the
    commands the route sent after the ones asking who the channel is."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    env = {"agi_network": "yes", "agi_network_script": "feature",
           "agi_request": f"agi://127.0.0.1:{port}/feature", "agi_channel":
           f"PJSIP/{endpoint}-00000003", "agi_uniqueid": "1795737291.9",
           "agi_callerid": "1001", "agi_extension": code, "agi_arg_1": code, **env_lines}
    writer.write("".join(f"{k}: {v}\n" for k, v in env.items()).encode() + b"\n")
    await writer.drain()
    await answer_env_check(reader, writer)
    answers = {'GET VARIABLE "CHANNEL(endpoint)"': f"200 result=1 ({endpoint})",
               "GET VARIABLE CONTEXT": f"200 result=1 ({context})"}
    commands = []
    try:
        while True:
            async with asyncio.timeout(STEP_TIMEOUT):
                line = await reader.readline()
            if not line:
                break
            command = line.decode().rstrip("\n")
            if command.startswith("GET VARIABLE"):
                reply = answers[command]
            else:
                commands.append(command)
                reply = "200 result=0 endpos=8000" if command.startswith("STREAM") \
                    else "200 result=0"
            writer.write(reply.encode() + b"\n")
            await writer.drain()
    finally:
        writer.close()
    return commands


async def test_the_route_applies_the_code_then_answers_with_the_prompt(
        server: tuple[FastAgiServer, FeatureCodeContext]) -> None:
    agi, ctx = server
    ctx.runtime.log_in("1001")
    commands = await asterisk_dials(agi.port, "*21", "agent1001")
    assert ctx.runtime.agents["1001"].state is S.NOT_READY
    assert commands[0] == "ANSWER"
    assert commands[1].startswith("STREAM FILE ") and "feature_not_ready-" in commands[1]
    played = Path(commands[1].split(" ")[2])
    assert played.with_suffix(".wav").stat().st_size > 1000  # a real 8 kHz WAV
    refused = await asterisk_dials(agi.port, "*21", "agent1001")  # no_change now
    assert "feature_refused-" in refused[1]
    assert ctx.runtime.agents["1001"].state is S.NOT_READY


async def test_only_the_channels_own_endpoint_and_context_decide(
        server: tuple[FastAgiServer, FeatureCodeContext]) -> None:
    """Issue 15: an argument or environment line naming another desk changes nothing (the
    channel's endpoint, as Asterisk answers it, is whose code it is), and a channel
    outside the agents' context (an external caller) changes nobody."""
    agi, ctx = server
    ctx.runtime.log_in("1001")
    ctx.runtime.log_in("1002")
    await asterisk_dials(agi.port, "*21", "agent1002", agi_arg_2="agent1001",
                         agi_channel="PJSIP/agent1001-00000003")
    assert (ctx.runtime.agents["1001"].state, ctx.runtime.agents["1002"].state) == (
        S.READY, S.NOT_READY)
    commands = await asterisk_dials(agi.port, "*21", "agent1001", context="callflow-inbound")
    assert ctx.runtime.agents["1001"].state is S.READY
    assert "feature_refused-" in commands[1]
