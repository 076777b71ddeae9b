"""The desktop's side of the supervisor workflows on the real Service (no Asterisk):
inactivity log-out with a short Policy (STD-102), a request for more ACW (STD-100) and
the escalate button (STD-066), each refused cleanly when it does not fit."""

from __future__ import annotations

import asyncio

import pytest
import test_desktop
from test_desktop import Start

from callflow.agents.events import AgentState, CallAnswered, CallEnded, CallOffered, ExtendAcw
from callflow.engine.policy import parse_policy

S = AgentState
# the desktop suite's fixtures: a real Service in the test's loop, no Asterisk
prompts_dir = test_desktop.prompts_dir
start = test_desktop.start
# 0.05 min = 3 s without input; a long ACW so the request can be answered in it
SHORT = parse_policy({"agents": {"inactivity_logout_min": 0.05, "acw_limit_s": 30,
                                 "acw_extension_s": 45}})


@pytest.mark.std("STD-102")
async def test_an_idle_agent_off_the_service_page_is_logged_out(start: Start) -> None:
    running = await start(SHORT)
    rt = running.runtime
    idle, kept = await running.desk("1001"), await running.desk("1002")
    for desk, ext in ((idle, "1001"), (kept, "1002")):
        await desk.request("login", extension=ext)
    assert (await idle.request("activity", service_page=False))["type"] == "ack"
    assert (await kept.request("activity", service_page=True))["type"] == "ack"
    started = asyncio.get_running_loop().time()
    event = await idle.event(state="logged_out", timeout=6)
    waited = asyncio.get_running_loop().time() - started
    assert (event["payload"]["reason"], event["payload"]["by"]) == ("inactivity", "system")
    assert 2.5 <= waited <= 4.5, waited
    # left on the service page: still logged in well past the limit
    await asyncio.sleep(1.5)
    assert rt.agents["1002"].state is S.READY
    # the page closed: no longer on the service page, and idle long enough already
    await kept.ws.close()
    for _ in range(40):
        if rt.agents["1002"].state is S.LOGGED_OUT:
            break
        await asyncio.sleep(0.1)
    assert (rt.agents["1002"].state, rt.agents["1002"].reason) == (S.LOGGED_OUT, "inactivity")
    await idle.ws.close()


@pytest.mark.std("STD-102")
async def test_a_call_is_never_cut_by_inactivity_and_its_end_restarts_the_clock(
        start: Start) -> None:
    running = await start(SHORT)
    rt = running.runtime
    desk = await running.desk("1001")
    await desk.request("login", extension="1001")
    await desk.request("activity", service_page=False)
    rt.agent_event("1001", CallOffered("c1"))
    rt.agent_event("1001", CallAnswered("c1"))
    await asyncio.sleep(3.5)
    assert rt.agents["1001"].state is S.ON_CALL
    rt.agent_event("1001", CallEnded("c1"))
    assert (await desk.request("end_acw"))["state"] == "ready"
    await asyncio.sleep(2)
    assert rt.agents["1001"].state is S.READY  # 2 s after the work ended: not yet
    await desk.event(state="logged_out", timeout=3)
    await desk.ws.close()


@pytest.mark.std("STD-100")
async def test_acw_extension_request_from_the_desktop(start: Start) -> None:
    running = await start(SHORT)
    rt = running.runtime
    desk = await running.desk("1001")
    await desk.request("login", extension="1001")
    refused = await desk.request("acw_extend_request", reason="form")
    assert (refused["type"], refused["error"]) == ("error", "not_in_acw")
    rt.agent_event("1001", CallOffered("c1"))
    rt.agent_event("1001", CallAnswered("c1"))
    rt.agent_event("1001", CallEnded("c1"))
    deadline = rt.agents["1001"].acw_deadline
    for reason in (["not", "text"], "x" * 201):  # refused whole, before the machine
        await desk.send({"type": "acw_extend_request", "reason": reason})
        bad = await desk.recv()
        while bad["type"] != "error":  # the call's events come first
            bad = await desk.recv()
        assert (bad["type"], bad["error"]) == ("error", "bad_frame")
    assert rt.agents["1001"].acw_ask == ""
    assert (await desk.request("acw_extend_request", reason="form still open"))["type"] == "ack"
    # (the agent_state event went before the ack, which request() skips to)
    assert (rt.agents["1001"].acw_ask, rt.agents["1001"].acw_ask_reason) == (
        "open", "form still open")
    again = await desk.request("acw_extend_request")
    assert again["error"] == "already_asked"
    rt.agent_event("1001", ExtendAcw(SHORT.agents.acw_extension_s))
    granted = await desk.event(cause="acw_extended")
    assert granted["payload"]["acw_extend_request"]["status"] == "granted"
    assert granted["payload"]["acw_deadline"] == pytest.approx(deadline + 45)
    await desk.ws.close()


@pytest.mark.std("STD-066")
async def test_escalate_only_on_a_live_call_raises_the_alarm(start: Start) -> None:
    running = await start(SHORT)
    rt = running.runtime
    desk = await running.desk("1001")
    await desk.request("login", extension="1001")
    refused = await desk.request("escalate", reason="abusive")
    assert (refused["type"], refused["error"]) == ("error", "not_on_call")
    rt.call_entered("c1", "PJSIP/caller-1", "13900000061", "100")
    assert rt.choose_agent("c1") is not None
    rt.agent_event("1001", CallAnswered("c1"))
    raised = []
    rt.on_event(lambda e: raised.append(e) if getattr(e, "kind", "") == "escalation" else None)
    assert (await desk.request("escalate", reason="abusive"))["type"] == "ack"
    [alarm] = raised
    assert alarm.detail["call_id"] == "c1" and alarm.detail["caller"] == "139****0061"
    assert alarm.detail["agent_id"] == "1001" and alarm.detail["reason"] == "abusive"
    await desk.ws.close()
