"""The demo carrier's settings, its dialplan and the pages' DEMO marker (issue 16).

The carrier's behaviour on a real Asterisk is proven in
tests/integration/test_demo_live.py; here: which configuration turns it on, what a bad
value says, and that the rendered dialplan routes to it only when no trunk is set."""

from __future__ import annotations

from pathlib import Path

import pytest

from callflow.api.demo_marker import MARKER_ID, marker_script
from callflow.demo.config import demo_carrier_from_env
from callflow.errors import PbxConfigError, SettingsError
from callflow.pbx.demo_carrier import DEMO_CARRIER_CONTEXT, DemoCarrier
from callflow.pbx.render import CONF_DIR, AgentEndpoint, PbxConfig, render


def _config(**overrides: object) -> PbxConfig:
    values: dict[str, object] = dict(
        ami_port=15038, ami_username="callflow", ami_secret="s3cret-generated", sip_port=15060,
        rtp_start=16000, rtp_end=16999, agi_host="127.0.0.1", agi_port=15573,
        agents=[AgentEndpoint("1002", password="generated-pw-1")])
    values.update(overrides)
    return PbxConfig(**values)  # type: ignore[arg-type]


def _render(tmp_path: Path, cfg: PbxConfig) -> dict[str, str]:
    stock = tmp_path / "stock"
    stock.mkdir(parents=True)
    (stock / "indications.conf").write_text("[general]\ncountry=us\n\n[cn]\n")
    written = render(CONF_DIR, tmp_path / "etc", cfg, stock)
    return {p.name: p.read_text() for p in written}


def test_auto_turns_the_carrier_on_exactly_when_no_trunk_is_configured() -> None:
    carrier = demo_carrier_from_env(5.0, trunk_configured=False, env={})
    assert carrier == DemoCarrier(ring_s=5.0)
    assert carrier.answer_after_s == 10.0  # 2 rings at cn cadence
    assert demo_carrier_from_env(5.0, trunk_configured=True, env={}) is None
    assert demo_carrier_from_env(5.0, trunk_configured=False,
                                 env={"CALLFLOW_DEMO_CARRIER": "off"}) is None


def test_every_number_and_count_is_settable() -> None:
    carrier = demo_carrier_from_env(6.0, trunk_configured=False, env={
        "CALLFLOW_DEMO_CARRIER": "on", "CALLFLOW_DEMO_NUMBERS": "901, 902,903,904,905",
        "CALLFLOW_DEMO_ANSWER_RINGS": "3", "CALLFLOW_DEMO_TALK_S": "30",
        "CALLFLOW_DEMO_DROP_AFTER_S": "7", "CALLFLOW_DEMO_DROP_CAUSE": "16"})
    assert carrier is not None
    assert carrier.numbers_in_order() == ("901", "902", "903", "904", "905")
    assert (carrier.answer_after_s, carrier.talk_s, carrier.drop_after_s,
            carrier.drop_cause) == (18.0, 30, 7, 16)


@pytest.mark.parametrize("env, says", [
    ({"CALLFLOW_DEMO_CARRIER": "maybe"}, "CALLFLOW_DEMO_CARRIER must be one of"),
    ({"CALLFLOW_DEMO_NUMBERS": "1,2"}, "must list five numbers"),
    ({"CALLFLOW_DEMO_NUMBERS": "901,902,903,904,9x5"}, "3-20 digits"),
    ({"CALLFLOW_DEMO_NUMBERS": "901,901,903,904,905"}, "must differ"),
    ({"CALLFLOW_DEMO_ANSWER_RINGS": "two"}, "CALLFLOW_DEMO_ANSWER_RINGS must be an integer"),
    ({"CALLFLOW_DEMO_DROP_CAUSE": "300"}, "Q.850 cause 1-127"),
    ({"CALLFLOW_DEMO_TALK_S": "0"}, "talk_s must be 1-3600"),
])
def test_a_bad_value_is_one_clear_error(env: dict[str, str], says: str) -> None:
    with pytest.raises(SettingsError, match=says):
        demo_carrier_from_env(5.0, trunk_configured=False, env=env)


def test_on_beside_a_real_trunk_is_refused() -> None:
    with pytest.raises(SettingsError, match="outbound trunk is configured"):
        demo_carrier_from_env(5.0, trunk_configured=True, env={"CALLFLOW_DEMO_CARRIER": "on"})
    with pytest.raises(PbxConfigError, match="demo carrier"):
        _config(customer_contact="sip:customer@127.0.0.1:5080",
                demo_carrier=DemoCarrier()).validate()


def test_the_outbound_route_dials_the_demo_carrier_only_when_it_is_on(tmp_path: Path) -> None:
    on = _render(tmp_path / "on", _config(demo_carrier=DemoCarrier(answer_rings=1, ring_s=5.0)))
    outbound = on["extensions.conf"].split("[callflow-outbound]")[1].split("\n[")[0]
    assert (f"Dial(Local/${{EXTEN}}@{DEMO_CARRIER_CONTEXT}/n,${{CALLFLOW_RING_S}},"
            "${CALLFLOW_DIAL_OPTIONS})") in outbound
    assert "ss-noservice" not in outbound
    assert "#include extensions-demo.conf" in on["extensions.conf"]
    carrier = on["extensions-demo.conf"]
    assert f"[{DEMO_CARRIER_CONTEXT}]" in carrier
    assert "exten => 5550101,1,Ringing()\n same => n,Wait(5.0)\n same => n,Answer()" in carrier
    assert "exten => 5550102,1,Hangup(17)" in carrier
    assert "exten => 5550104,1,Ringing()" in carrier and "Hangup(38)" in carrier
    assert "exten => 5550105,1,Hangup(1)" in carrier

    off = _render(tmp_path / "off", _config())
    outbound = off["extensions.conf"].split("[callflow-outbound]")[1].split("\n[")[0]
    assert "Playback(ss-noservice)" in outbound and "Dial(Local/" not in outbound
    assert "extensions-demo" not in off["extensions.conf"]
    assert f"[{DEMO_CARRIER_CONTEXT}]" not in off["extensions-demo.conf"]  # comments only

    trunk = _render(tmp_path / "trunk", _config(customer_contact="sip:customer@127.0.0.1:5080"))
    assert "PJSIP/${EXTEN}@customer" in trunk["extensions.conf"]
    assert "extensions-demo" not in trunk["extensions.conf"]


def test_the_marker_script_shows_a_banner_only_in_a_demo() -> None:
    assert MARKER_ID not in marker_script(None)
    script = marker_script('demo carrier "quoted"')
    assert MARKER_ID in script
    assert 'var text = "DEMO - demo carrier \\"quoted\\" - not a real' in script  # JSON-quoted
