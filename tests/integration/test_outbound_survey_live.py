"""Issue 18 on a real Asterisk: the post-call survey on an outbound call (STD-120).

The dialer rings a SIPp agent (who answers and hangs up 2 s later: uas_answer_bye.xml),
then the SIPp customer of a callback task. ``survey.call_kinds`` names ``callback``, so
the originated channel's Dial carries ``F(callflow-survey^s^1)``: when the agent hangs
up, Asterisk sends the customer to ``[callflow-survey]`` instead of hanging them up, and
the ``outbound_survey`` AGI route asks the same question as the inbound survey.

1. the customer presses 4 (RFC 4733) after the question: 4 stored with the attempt's
   call id and the agent; the call record stays one answered call the agent released;
2. the customer hangs up during the survey: no response (``hangup``), nothing else.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from dtmf import KEY, WAIT_FOR_BYE, key_pcap
from product import Product, running_product
from test_outbound_live import add_task, customer, customer_dialled, log_in, wait_log
from test_wrapup_survey_live import prompt_seconds

from callflow.engine.policy import parse_policy
from callflow.outbound.feature import OutboundFeature
from callflow.service import ServiceOptions
from callflow.store import repo

if TYPE_CHECKING:
    from conftest import PbxHandle
    from sippctl import SippControl

AGENT_RING_MS = 300
CUSTOMER_RING_MS = 1000  # the agent's BYE (2 s after their answer) comes ~1 s after ours
SURVEY_SCENARIO = Path(__file__).parent.parent / "sipp" / "uas_answer.xml"


def customer_pressing(tmp: Path, at: float, key: str) -> Path:
    """A customer who answers (after ``-d`` ms), presses ``key`` ``at`` s after the
    answer, then waits for Asterisk's BYE (uas_answer.xml with RFC 4733 in its SDP)."""
    text = SURVEY_SCENARIO.read_text(encoding="iso-8859-1")
    text = text.replace("m=audio [media_port] RTP/AVP 0 8",
                        "m=audio [media_port] RTP/AVP 8 101")
    text = text.replace("a=rtpmap:8 PCMA/8000",
                        "a=rtpmap:8 PCMA/8000\n      a=rtpmap:101 telephone-event/8000\n"
                        "      a=fmtp:101 0-16")
    head, sep, _ = text.partition('  <recv request="BYE">')
    assert sep, "uas_answer.xml changed shape"
    press = KEY.format(pause_ms=round(at * 1000), key=key, pcap=key_pcap(tmp, key, 0))
    path = tmp / f"customer_press_{key}.xml"
    path.write_text(head + press + WAIT_FOR_BYE, encoding="iso-8859-1")
    return path


def surveyed(product: Product, attempt: str) -> list[tuple[str, str, str, int | None, str]]:
    """The attempt's stored survey rows, once the writer has them (off the loop)."""
    deadline = time.monotonic() + 5
    while True:
        product.flush()
        after = product.store.read(repo.call_aftercare, attempt)
        if after["survey"] or time.monotonic() > deadline:
            return [(a["agent_id"], a["queue"], a["question"], a["score"], a["how"])
                    for a in after["survey"]]
        time.sleep(0.2)


@pytest.mark.std("STD-120")
def test_the_customer_of_a_callback_rates_the_agent_who_hung_up_first(
        asterisk: PbxHandle, asterisk_root: Path, sipp: SippControl, tmp_path: Path) -> None:
    policy = parse_policy({
        "survey": {"enabled": True, "questions": ["service"], "answer_timeout_s": 6,
                   "call_kinds": ["inbound", "callback"]},
        "outbound": {"calling_window_start": "00:00", "calling_window_end": "23:59",
                     "calling_days": "all_but_holidays", "wrapup_required": False},
        "agents": {"acw_limit_s": 3}})
    feature = OutboundFeature(tick_s=0.2)
    with running_product(asterisk, asterisk_root, tmp_path, policy, ["1001"],
                         ServiceOptions(features=[feature])) as product:
        intro = prompt_seconds(product, "survey_intro")
        question = prompt_seconds(product, "survey_service")
        agent = sipp.start("agent1001", "uas_answer_bye.xml", asterisk.agent_port("1001"),
                           "-aa", "-d", AGENT_RING_MS)
        agent.aor = "agent1001"
        sipp.wait_ready(agent)
        log_in(product, "1001")

        # 1. the agent hangs up 2 s after answering; the customer presses 4
        press = 1.5 + intro + question + 1.0  # the agent's BYE ~1 s in, then the survey
        callee = customer(sipp, asterisk, str(customer_pressing(tmp_path, press, "4")),
                          ring_ms=CUSTOMER_RING_MS)
        t0 = asterisk.tap.mark()
        add_task(product, feature, kind="callback")
        begin = customer_dialled(asterisk, t0, 15)
        attempt, customer_leg = begin["Uniqueid"], begin["DestUniqueid"]
        wait_log(callee, "BYE-from-asterisk", 45)  # Asterisk hung up after the thanks
        commands = [e["Command"] for e in asterisk.tap.events_since(t0, "AGIExecStart")
                    if e["Uniqueid"] == customer_leg]
        assert any("survey_service-" in c for c in commands), commands
        assert any("survey_thanks-" in c for c in commands), commands
        agent_out = asterisk.tap.wait_event("Hangup", 5, since=t0, Uniqueid=attempt)
        customer_out = asterisk.tap.wait_event("Hangup", 5, since=t0, Uniqueid=customer_leg)
        assert float(customer_out["Timestamp"]) > float(agent_out["Timestamp"])
        assert surveyed(product, attempt) == [("1001", "outbound:callback", "service", 4,
                                                   "answered")]
        call = product.store.read(repo.get_call, attempt)
        assert call is not None
        assert (call.direction, call.outcome, call.released_by, call.agent_id) == (
            "outbound", "answered", "agent", "1001")
        print(f"\nsurvey after the agent's BYE: "
              f"{float(customer_out['Timestamp']) - float(agent_out['Timestamp']):.2f} s")

        # 2. the customer hangs up during the survey (uas_answer_bye: 2 s after answering)
        product.wait_for(lambda: product.runtime.agents["1001"].state.value == "ready", 10,
                         "the agent ready again")
        callee.stop()  # a UAS takes calls until stopped: the next customer on its port
        callee = customer(sipp, asterisk, "uas_answer_bye.xml", ring_ms=CUSTOMER_RING_MS)
        t1 = asterisk.tap.mark()
        add_task(product, feature, kind="callback", number="13900000002")
        begin = customer_dialled(asterisk, t1, 15)
        second = begin["Uniqueid"]
        wait_log(callee, "BYE", 20)  # the customer's own BYE
        assert surveyed(product, second) == [("1001", "outbound:callback", "service", None,
                                                 "hangup")]
        call = product.store.read(repo.get_call, second)
        assert call is not None and (call.outcome, call.agent_id) == ("answered", "1001")
