"""The mid-call PIN step's pure parts (issue 18, STD-077): when an agent may ask for it,
how its interval counts in the KPIs, and the wire/config shapes that carry it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from agent_protocol_schema import frame_errors

from callflow.ami.actions import encode
from callflow.desktop.protocol import identity_pin_ack_frame, parse_desktop_frame
from callflow.engine import identity, kpi
from callflow.engine.effects import PressKey
from callflow.engine.identity import FAILED, IdentityCheck
from callflow.engine.kpi import CallFact, KpiRules, OfferFact
from callflow.engine.policy import Policy, parse_policy
from callflow.errors import PbxConfigError, SettingsError
from callflow.pbx import midcall_pin
from callflow.pbx.render import CONF_DIR, PbxConfig, render
from callflow.settings import load_settings

POLICY = Policy.defaults()


def refusal(check: IdentityCheck, policy: Policy = POLICY, *, on_call: bool = True,
            has_pin: bool = True, asking: bool = False) -> str | None:
    found = identity.pin_ask_refusal(check, policy, on_call=on_call, has_pin=has_pin,
                                     asking=asking)
    return None if found is None else found.code


@pytest.mark.std("STD-077")
def test_an_agent_may_ask_for_the_pin_of_an_unverified_caller_with_one_on_record() -> None:
    assert refusal(IdentityCheck("c1")) is None
    # one wrong entry before routing leaves entries to use mid-call
    once = identity.pin_entered(IdentityCheck("c1"), False, POLICY, 1.0)
    assert refusal(once) is None


@pytest.mark.std("STD-077")
def test_each_reason_to_refuse_the_ask_has_its_own_code() -> None:
    fresh = IdentityCheck("c1")
    assert refusal(fresh, on_call=False) == "not_on_call"
    assert refusal(fresh, has_pin=False) == "no_pin"
    assert refusal(fresh, asking=True) == "pin_pending"
    verified = identity.pin_entered(fresh, True, POLICY, 1.0)
    assert refusal(verified) == "already_verified"
    vouched = identity.questions_verified(fresh, POLICY, "1001", 1.0)
    assert refusal(vouched) == "already_verified"
    spent = fresh
    for n in range(POLICY.identity.pin_attempts):
        spent = identity.pin_entered(spent, False, POLICY, float(n))
    assert spent.status == FAILED and refusal(spent) == "attempts_exhausted"
    questions_only = parse_policy({"identity": {"method": "questions"}})
    assert refusal(fresh, questions_only) == "method_not_allowed"
    # not on a call wins over everything else: no record of another call is consulted
    assert refusal(verified, on_call=False, has_pin=False) == "not_on_call"


T0 = datetime(2024, 5, 6, 2, 0, tzinfo=UTC)


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def test_a_mid_call_pin_step_is_neither_talk_nor_hold() -> None:
    call = CallFact(uniqueid="p", queue="main", entered_at=at(0), answered_at=at(5),
                    ended_at=at(65), agent_id="1001", outcome="answered",
                    ring_started_at=at(2), released_by="caller",
                    offers=(OfferFact("1001", at(2), at(5), "answered"),),
                    pin_steps=((at(20), at(32)),))
    rules = KpiRules.from_policy(POLICY)
    q = kpi.queue_kpis([call], lambda r: rules, at(1e4), [])["main"]
    assert (q.handled, q.talk_s, q.hold_s) == (1, 48.0, 0.0)
    period = kpi.Period(at(-60), at(1e4))
    mine = kpi.agent_kpis([call], [], lambda r: rules, period, at(1e4))["1001"]
    assert (mine.talk_s, mine.hold_s) == (48.0, 0.0)
    assert kpi.pin_step_s(call, at(0), at(10)) == 0.0  # a step belongs where it began


def test_the_request_the_ack_and_the_ami_action() -> None:
    request = parse_desktop_frame('{"type": "identity_pin", "id": 7, "call_id": "x"}')
    assert (request.type, request.id) == ("identity_pin", 7)  # type: ignore[union-attr]
    ack = json.loads(identity_pin_ack_frame(
        request, "on_call", {"state": "asking", "call_id": "c1", "pin_attempts": 1},  # type: ignore[arg-type]
        12))
    assert frame_errors(ack) == [], ack
    assert (ack["request"], ack["id"], ack["call_id"], ack["pin_attempts"]) == \
        ("identity_pin", 7, "c1", 1)
    assert encode(PressKey("PJSIP/agent1001-00000001", "*")) == (
        "PlayDTMF", {"Channel": "PJSIP/agent1001-00000001", "Digit": "*",
                     "Duration": "100", "Receive": "true"})


def config(**values: object) -> PbxConfig:
    return PbxConfig(ami_port=5038, ami_username="callflow", ami_secret="an-ami-s3cret",
                     sip_port=5060, rtp_start=10000, rtp_end=10999, agi_host="127.0.0.1",
                     agi_port=4573, **values)  # type: ignore[arg-type]


def test_the_feature_is_mapped_and_armed_on_agent_legs_only(tmp_path: Path) -> None:
    stock = tmp_path / "stock"
    stock.mkdir()
    (stock / "indications.conf").write_text("[general]\ncountry=us\n\n[cn]\n")
    render(CONF_DIR, tmp_path / "etc", config(pin_feature_code="*9#"), stock)
    features = (tmp_path / "etc" / "features.conf").read_text()
    assert "callflowpin => *9#,peer,AGI(agi://127.0.0.1:4573/identity-pin),default" \
        in features
    dialplan = (tmp_path / "etc" / "extensions.conf").read_text()
    assert "[callflow-agent-leg]\n" in dialplan
    assert "exten => s,1,Set(DYNAMIC_FEATURES=callflowpin)" in dialplan
    assert midcall_pin.AGENT_LEG_DIAL_OPTION == "b(callflow-agent-leg^s^1)"


@pytest.mark.parametrize("code", ["", "*8*8*", "*8;x", "a"])
def test_a_bad_feature_code_is_refused(code: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(PbxConfigError, match="pin_feature_code"):
        config(pin_feature_code=code).validate()
    monkeypatch.setenv("CALLFLOW_PIN_FEATURE_CODE", code)
    if code:
        with pytest.raises(SettingsError, match="CALLFLOW_PIN_FEATURE_CODE"):
            load_settings()
