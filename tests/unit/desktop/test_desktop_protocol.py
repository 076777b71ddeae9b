"""Agent desktop protocol v1 without a socket: client frames, server frames, the schema."""

from __future__ import annotations

import json
import re
from datetime import date
from typing import Any

import pytest
from agent_protocol_schema import CLIENT_FRAME, DOC, errors, frame_errors

from callflow.agents.events import AgentState, EndAcw, LogOut, RequestState
from callflow.desktop.protocol import (
    DesktopRequest,
    ack_frame,
    agent_event,
    error_frame,
    hello_frame,
    opening_text,
    parse_desktop_frame,
)
from callflow.engine.policy import Policy, parse_policy
from callflow.pbx.prompts import LanguagePack
from callflow.stream.protocol import MAX_CLIENT_FRAME_BYTES, ClientFrameError, Ping

DEFAULTS = Policy.defaults()


def hello(policy: Policy = DEFAULTS, language: str = "zh", day: date = date(2026, 3, 2),
          **kw: Any) -> dict[str, Any]:
    frame: dict[str, Any] = json.loads(hello_frame(
        policy=policy, language=language, agent_id="1001", agent_name="Li Lei",
        username="1001", role="agent",
        apology_text=LanguagePack.load(language).text("greeting_apology"), day=day,
        last_seq=7, server_time=1795739635.4221, **kw))
    return frame


# --- client frames --------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "expected"), [
    ('{"type":"login","extension":"1003","id":1}', DesktopRequest("login", 1, extension="1003")),
    ('{"type":"ready"}', DesktopRequest("ready")),
    ('{"type":"busy","reason":"meal","id":"b"}', DesktopRequest("busy", "b", reason="meal")),
    ('{"type":"not_ready","reason":"break"}', DesktopRequest("not_ready", reason="break")),
    ('{"type":"not_ready"}', DesktopRequest("not_ready")),  # the machine says reason_required
    ('{"type":"end_acw","extra":[1,2]}', DesktopRequest("end_acw")),  # unknown fields ignored
    ('{"type":"logout"}', DesktopRequest("logout")),
    ('{"type":"ping","id":"x"}', Ping("x")),
])
def test_client_frames(raw: str, expected: Any) -> None:
    assert parse_desktop_frame(raw) == expected
    assert errors(json.loads(raw), CLIENT_FRAME) == []


@pytest.mark.parametrize(("raw", "error"), [
    ("not json", "bad_json"),
    ("[" * 50000, "bad_json"),
    ('["ready"]', "bad_frame"),
    ('{"type":"login"}', "bad_frame"),
    ('{"type":"login","extension":""}', "bad_frame"),
    ('{"type":"login","extension":5}', "bad_frame"),
    ('{"type":"busy","reason":["meal"]}', "bad_frame"),
    ('{"type":"ready","id":true}', "bad_frame"),
    ('{"type":"ready","id":9007199254740993}', "bad_frame"),
    ('{"type":"subscribe","topic":"agent:1002"}', "unknown_type"),
    ('{"kind":"ready"}', "unknown_type"),
    (b'{"type":"ready"}', "binary_not_supported"),
])
def test_bad_client_frames_are_refused_with_a_code(raw: str | bytes, error: str) -> None:
    with pytest.raises(ClientFrameError) as refused:
        parse_desktop_frame(raw)
    assert refused.value.error == error
    assert refused.value.close_code is None


def test_an_oversized_frame_closes_with_1009() -> None:
    raw = json.dumps({"type": "ready", "pad": "x" * MAX_CLIENT_FRAME_BYTES})
    with pytest.raises(ClientFrameError) as refused:
        parse_desktop_frame(raw)
    assert (refused.value.error, refused.value.close_code) == ("frame_too_large", 1009)


@pytest.mark.parametrize(("request_", "by", "event"), [
    (DesktopRequest("ready"), "agent", RequestState(AgentState.READY, by="agent")),
    (DesktopRequest("busy", reason="meal"), "agent",
     RequestState(AgentState.BUSY, "meal", by="agent")),
    (DesktopRequest("not_ready", reason="break"), "supervisor",
     RequestState(AgentState.NOT_READY, "break", by="supervisor")),
    (DesktopRequest("end_acw"), "agent", EndAcw(by="agent")),
    (DesktopRequest("logout"), "agent", LogOut(by="agent")),
    (DesktopRequest("logout"), "supervisor", LogOut(by="supervisor", reason="supervisor")),
])
def test_requests_become_events_of_the_one_state_machine(request_: DesktopRequest, by: str,
                                                          event: Any) -> None:
    assert agent_event(request_, by) == event


def test_login_is_not_a_plain_event() -> None:
    with pytest.raises(ValueError):
        agent_event(DesktopRequest("login", extension="1003"), "agent")


# --- server frames --------------------------------------------------------------------


def test_hello_carries_policy_reasons_labels_and_scripts() -> None:
    frame = hello()
    assert frame_errors(frame) == []
    busy = [r["code"] for r in frame["reasons"]["busy"]]
    assert busy == [r.code for r in DEFAULTS.agents.busy_reasons]
    not_ready = [r["code"] for r in frame["reasons"]["not_ready"]]
    assert "ring_no_answer" not in not_ready and "unreachable" not in not_ready  # engine-only
    assert not_ready == [r.code for r in DEFAULTS.agents.not_ready_reasons if not r.system]
    assert frame["labels"]["acw"] == {"zh": "话后处理", "en": "After-call work"}
    scripts = frame["scripts"]
    assert "1001号为您服务" in scripts["normal"]  # STD-014: the agent's number
    assert scripts["holiday"] is None
    assert scripts["apology"].startswith("對不起,剛才因為線路忙")  # STD-009
    assert frame["timers"]["acw_limit_s"] == DEFAULTS.agents.acw_limit_s
    assert frame["timers"]["hold_reminder_s"] == DEFAULTS.hold.reminder_s
    assert frame["feature_codes"]["*21"] == "not_ready"
    assert frame["server_time"] == 1795739635.422


@pytest.mark.std("STD-017")
def test_hello_on_a_holiday_and_in_english() -> None:
    frame = hello(language="en", day=date(2027, 1, 1))
    assert frame_errors(frame) == []
    assert frame["scripts"]["holiday"] == "Happy New Year, how may I help you?"  # STD-017
    assert "agent number 1001" in frame["scripts"]["normal"]


@pytest.mark.std("STD-014", "STD-016")
def test_opening_follows_the_agent_identity_setting() -> None:
    by_name = parse_policy({"greetings": {"agent_identity": "name"}})
    assert "Li Lei" in opening_text(by_name, "zh", "1001", "Li Lei")


@pytest.mark.std("STD-015")
def test_opening_names_the_department_where_the_template_asks() -> None:
    """STD-015: organisation and department in the opening, both from the Policy."""
    policy = parse_policy({"greetings": {
        "department": "客服部",
        "opening_template": "您好,{centre}{department} {agent_no}号为您服务"}})
    assert opening_text(policy, "zh", "1001", "Li Lei") == "您好,callflow客服部 1001号为您服务"


def test_ack_and_error_frames_conform() -> None:
    request = DesktopRequest("busy", 3, reason="meal")
    ack = json.loads(ack_frame(request, "busy", "meal", 12))
    assert ack == {"v": 1, "type": "ack", "request": "busy", "state": "busy", "reason": "meal",
                   "seq": 12, "id": 3}
    refused = json.loads(error_frame("on_call", "agent 1001 is on_call", request))
    assert refused["request"] == "busy" and refused["id"] == 3
    plain = json.loads(error_frame("bad_json", "not valid JSON"))
    assert "request" not in plain and "id" not in plain
    for frame in (ack, refused, plain):
        assert frame_errors(frame) == [], frame


def test_the_schema_checker_rejects_what_the_protocol_forbids() -> None:
    good = {"v": 1, "type": "event", "seq": 3, "topic": "agent:1001",
            "payload": {"type": "hold_limit", "agent_id": "1001", "limit_s": 30,
                        "call_id": "c1", "std": "STD-040", "held_s": 30.0}}
    assert frame_errors(good) == []
    bad_frames = [
        {**good, "v": 2}, {**good, "topic": "board"}, {**good, "extra": 1},
        {**good, "payload": {**good["payload"], "std": "STD-041"}},
        {**good, "payload": {"type": "unknown"}},
        {"v": 1, "type": "ack", "request": "dance", "state": "ready", "reason": "", "seq": 1},
        {"v": 1, "type": "snapshot", "seq": 1, "reason": "initial",
         "state": {"agents": [{}, {}], "desks": {}}},
    ]
    for bad in bad_frames:
        assert frame_errors(bad), bad


def test_every_example_in_the_document_is_valid_json() -> None:
    """Whole blocks, or (the client frames block) one frame per line."""
    text = DOC.read_text(encoding="utf-8")
    blocks = re.findall(r"```json\n(.*?)```", text, flags=re.DOTALL)
    # hello, snapshot, event, ack, error, client, 3 schemas, the repeat-caller view
    assert len(blocks) == 10
    for block in blocks:
        try:
            json.loads(block)
        except json.JSONDecodeError:
            for line in block.splitlines():
                if line.strip():
                    assert errors(json.loads(line), CLIENT_FRAME) == [], line
