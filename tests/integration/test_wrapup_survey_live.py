"""Issue 18 on a real Asterisk: the post-call survey and the wrap-up of an inbound call.

An inbound call is answered by a SIPp agent who hangs up first: Dial's ``g`` hands the
caller back to our flow, which asks the survey question (1-5) instead of falling into
the dialplan's fallback queue; the caller presses 4 by RFC 4733 DTMF and 4 is stored
with the call and the agent. The agent hands in no wrap-up form: at the ACW limit the
agent is ready again and the call is flagged ``wrapup_missing``. A second call: the
caller hangs up during the survey (no response), and the agent's "follow-up needed"
disposition makes the follow-up task with the due time of engine/outbound.py's rule.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from dtmf import keys_scenario
from product import Product, running_product

from callflow.agents.state import AgentState, LogIn, SubmitWrapup
from callflow.engine import outbound
from callflow.engine.calls import Phase
from callflow.engine.policy import parse_policy
from callflow.outbound.feature import OutboundFeature
from callflow.service import ServiceOptions
from callflow.store import repo

if TYPE_CHECKING:
    from conftest import PbxHandle
    from sippctl import SippControl

CALLER = "13700000018"
AGI_START_S = 0.5  # the caller's INVITE to our flow's Answer
RING_MS = 500  # the agent's phone rings this long, then answers
AGENT_TALK_S = 2.0  # uas_answer_bye.xml: the agent hangs up 2 s after answering
ACW_S = 4.0


def prompt_seconds(product: Product, name: str) -> float:
    wav = Path(str(product.service.prompts.path(name)) + ".wav")
    return (wav.stat().st_size - 44) / 16000  # 8 kHz, 16-bit mono


def ended(product: Product, call_id: str) -> bool:
    call = product.runtime.calls.get(call_id)
    return call is not None and call.phase is Phase.ENDED


def agent_state(product: Product) -> AgentState:
    """On the loop (``wait_for`` runs its predicate there)."""
    return product.runtime.agents["1001"].state


@pytest.mark.std("STD-120", "STD-092", "STD-086")
def test_survey_score_no_response_missing_form_and_follow_up(
        asterisk: PbxHandle, asterisk_root: Path, sipp: SippControl, tmp_path: Path) -> None:
    policy = parse_policy({
        "survey": {"enabled": True, "questions": ["service"], "answer_timeout_s": 6},
        "agents": {"acw_limit_s": ACW_S},
    })
    options = ServiceOptions(features=[OutboundFeature()])
    with running_product(asterisk, asterisk_root, tmp_path, policy, ["1001"],
                         options) as product:
        intro = prompt_seconds(product, "survey_intro")
        question = prompt_seconds(product, "survey_service")
        sipp.softphone("1001", "uas_answer_bye.xml", ring_ms=RING_MS)
        product.call(lambda: product.runtime.agent_event("1001", LogIn()))
        bye_at = AGI_START_S + RING_MS / 1000 + AGENT_TALK_S  # after the caller's answer

        # 1. the agent hangs up first; the caller hears the survey and presses 4
        press = bye_at + 0.5 + intro + question + 1.0  # just after the question
        scenario = keys_scenario(tmp_path / "press4.xml", [(press, "4")])
        t0 = asterisk.tap.mark()
        caller = sipp.caller("100", str(scenario), caller_id=CALLER, timeout_s=60)
        start = asterisk.tap.wait_event("AGIExecStart", 5, since=t0)
        first = start["Uniqueid"]
        assert caller.wait(45) == 0, caller.diagnostics()  # Asterisk hung up after thanks
        product.wait_for(lambda: ended(product, first), 5, "the first call to end")
        commands = [e["Command"] for e in asterisk.tap.events_since(t0, "AGIExecStart")
                    if e["Uniqueid"] == first]
        assert any("survey_service-" in c for c in commands), commands
        assert any("survey_thanks-" in c for c in commands), commands
        assert not any(c.startswith("Queue") for c in commands)  # never the fallback
        agent_bye = asterisk.tap.wait_event("HangupRequest", 1, since=t0,
                                            Uniqueid=asterisk.tap.wait_event(
                                                "DialBegin", 1, since=t0)["DestUniqueid"])
        caller_out = asterisk.tap.wait_event("Hangup", 5, since=t0, Uniqueid=first)
        survey_s = float(caller_out["Timestamp"]) - float(agent_bye["Timestamp"])

        # the agent hands in no form: auto-ready at the ACW limit, the call flagged
        product.wait_for(lambda: agent_state(product) is AgentState.READY, ACW_S + 3,
                         "auto-ready at the ACW limit")
        product.flush()
        after = product.store.read(repo.call_aftercare, first)
        assert [(a["agent_id"], a["question"], a["score"], a["how"])
                for a in after["survey"]] == [("1001", "service", 4, "answered")]
        assert after["wrapup_missing"] is True and after["wrapups"] == []
        call = product.store.read(repo.get_call, first)
        assert call is not None and call.outcome == "answered" and call.agent_id == "1001"
        assert call.released_by == "agent"  # one outcome: the agent's release stands

        # 2. the caller hangs up during the survey; the agent wants a follow-up
        t1 = asterisk.tap.mark()
        hang_up_ms = int((bye_at + 0.5 + intro + 0.5) * 1000)  # during the question
        caller = sipp.caller("100", "uac_call.xml", caller_id=CALLER, talk_ms=hang_up_ms)
        second = asterisk.tap.wait_event("AGIExecStart", 5, since=t1)["Uniqueid"]
        # the agent's ACW runs while the caller is in the survey: the form comes in then
        product.wait_for(lambda: agent_state(product) is AgentState.ACW
                         and product.runtime.agents["1001"].call_id == second, 10, "ACW")
        submitted_at = datetime.now(UTC)
        product.call(lambda: product.runtime.agent_event(
            "1001", SubmitWrapup(second, "follow_up", "wants the invoice explained")))
        assert caller.wait(30) == 0, caller.diagnostics()
        product.wait_for(lambda: ended(product, second), 5, "the second call to end")
        deadline = time.monotonic() + 5
        tasks: list = []
        while time.monotonic() < deadline and not tasks:
            product.flush()
            tasks = [t for t in product.store.read(repo.list_open_tasks)
                     if t.kind == "follow_up"]
            time.sleep(0.1)
        [task] = tasks
        second_row = product.store.read(repo.get_call, second)
        assert second_row is not None
        assert (task.number, task.owner_agent_id, task.created_from_call_id) == (
            CALLER, "1001", second_row.id)
        expected = outbound.plan_due("follow_up", submitted_at, policy)
        assert abs((task.due_at - expected.due_at).total_seconds()) < 60
        product.wait_for(lambda: agent_state(product) is AgentState.READY, ACW_S + 3,
                         "ready after the ACW")
        product.flush()
        after = product.store.read(repo.call_aftercare, second)
        assert [(a["score"], a["how"]) for a in after["survey"]] == [(None, "hangup")]
        assert after["wrapup_missing"] is False and after["disposition"] == "follow_up"
        assert [w["disposition"] for w in after["wrapups"]] == ["follow_up"]
        print(f"survey: agent BYE to caller released {survey_s:.2f}s "
              f"(intro {intro:.2f}s + question {question:.2f}s + thanks); "
              f"follow-up due {task.due_at.isoformat()}")
