"""The identity gate on a real Asterisk (issue 18, STD-077/STD-078).

Two known customers call at once, each with a PIN on record (made through the API):

* the first keys the right PIN by RFC 4733 DTMF before routing: the call is
  ``verified:pin`` before the agent answers, and the agent may reveal the personal
  fields (audited);
* the second keys a wrong PIN, then ``*#``, then nine digits (too long), then nothing
  (timeout): after the Policy's four entries the call is ``failed``; a reveal is refused
  (409, audited as refused); the agent verifies by questions, then the reveal works.
  The other agent may not look at this call (403).

Then the PIN digits are looked for everywhere they must not be: every log record of the
engine (all loggers at DEBUG), every frame of the live stream, every byte of the
engine's state directory (database, journal), every file Asterisk wrote in its work
directory (console log, queue log, CDR/CEL).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from dtmf import HEAD, KEY, key_pcap
from product import Product, running_product
from secretscan import leaks
from wsclient import EventStream

from callflow.agents.state import LogIn
from callflow.desktop.feature import AgentDesktop
from callflow.engine.calls import Phase
from callflow.engine.policy import parse_policy
from callflow.service import ServiceOptions
from callflow.store import repo

if TYPE_CHECKING:
    from conftest import PbxHandle
    from sippctl import SippControl

pytestmark = pytest.mark.integration

RIGHT_PIN = "582904"
WRONG_PIN = "111111"
TOO_LONG = "739184625"
CALLERS = {"right": "13700000771", "wrong": "13700000772"}
POLICY = {"identity": {"pin_attempts": 4, "pin_digit_timeout_ms": 3000}}

BYE = """  <pause milliseconds="{pause_ms}"/>
  <send retrans="500">
    <![CDATA[
      BYE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "caller" <sip:[from_user]@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Contact: <sip:[from_user]@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" crlf="true"/>
</scenario>
"""


def pin_caller(folder: Path, presses: list[tuple[float, str]], bye_at: float) -> Path:
    """A caller that keys each entry at its time after the answer, then hangs up at
    ``bye_at`` (seconds after the answer)."""
    folder.mkdir(parents=True, exist_ok=True)
    parts = [HEAD.format(ending="hang up")]
    elapsed, n = 0.0, 0
    for at, keys in presses:
        for i, key in enumerate(keys):
            start = at + i * 0.4
            parts.append(KEY.format(pause_ms=round((start - elapsed) * 1000), key=key,
                                    pcap=key_pcap(folder, key, n)))
            elapsed, n = start, n + 1
    parts.append(BYE.format(pause_ms=round((bye_at - elapsed) * 1000)))
    path = folder / "caller.xml"
    path.write_text("".join(parts), encoding="iso-8859-1")
    return path


def api(product: Product, method: str, path: str, token: str,
        body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    status, reply = product.rest(method, path, token, body)
    return status, reply


@pytest.mark.std("STD-077", "STD-078", "STD-079")
def test_pin_by_dtmf_verifies_wrong_pins_fail_and_no_digit_is_kept(
        asterisk: PbxHandle, asterisk_root: Path, sipp: SippControl, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    engine_dir = tmp_path / "engine"
    engine_dir.mkdir()
    desk = AgentDesktop()
    options = ServiceOptions(features=[desk])
    with running_product(asterisk, asterisk_root, engine_dir, parse_policy(POLICY),
                         ["1001", "1002"], options) as product:
        boss = product.session("boss", "supervisor")
        tokens = {a: product.session(a, "agent", a) for a in ("1001", "1002")}
        # the customer records, through the API (bad input first: one clear error each)
        assert api(product, "POST", "/api/v1/customers", boss,
                   {"surname": "王", "numbers": ["1"]})[1]["detail"]["error"] == "bad_number"
        assert api(product, "POST", "/api/v1/customers", boss,
                   {"surname": "王", "pin": "12ab"})[1]["detail"]["error"] == "bad_pin"
        assert api(product, "POST", "/api/v1/customers", tokens["1001"],
                   {"surname": "王"})[0] == 403
        ids = {}
        for kind, surname in (("right", "王"), ("wrong", "李")):
            code, made = api(product, "POST", "/api/v1/customers", boss, {
                "surname": surname, "title": "先生", "given_name": "伟",
                "account": f"6222-{kind}", "address": "杭州市 1 号", "id_tail": "4321",
                "numbers": [CALLERS[kind]], "pin": RIGHT_PIN})
            assert code == 201, made
            assert "pin" not in made and "pin_hash" not in made and made["has_pin"]
            ids[kind] = made["customer_id"]
        assert api(product, "POST", "/api/v1/customers", boss, {
            "surname": "赵", "numbers": [CALLERS["right"]]})[1]["detail"]["error"] == \
            "number_taken"

        edits = product.store.read(repo.audit_entries, action="customer.create")
        assert sorted((e.actor, e.target) for e in edits) == [
            ("boss", f"customer:{ids['right']}"), ("boss", f"customer:{ids['wrong']}")]
        board = EventStream(product.settings.ports.api, product.settings.api_token,
                            "board,alarms,agent:1001,agent:1002")
        phones = [sipp.softphone(a, "uas_answer.xml", ring_ms=500, wait=False)
                  for a in ("1001", "1002")]
        sipp.wait_ready(*phones)
        for agent_id in ("1001", "1002"):
            product.call(lambda a=agent_id: product.runtime.agent_event(a, LogIn()))

        right = pin_caller(tmp_path / "sipp-right", [(1.5, RIGHT_PIN + "#")], bye_at=30)
        wrong = pin_caller(tmp_path / "sipp-wrong", [
            (1.5, WRONG_PIN + "#"),    # a wrong PIN
            (5.5, "*#"),               # garbage
            (7.5, TOO_LONG),           # longer than pin_max_digits: no # needed
        ], bye_at=42)                  # then silence: the fourth entry times out
        t0 = asterisk.tap.mark()
        callers = {"right": sipp.caller("100", str(right), caller_id=CALLERS["right"],
                                        timeout_s=90),
                   "wrong": sipp.caller("100", str(wrong), caller_id=CALLERS["wrong"],
                                        timeout_s=90)}
        starts = {e["Uniqueid"] for e in [asterisk.tap.wait_event("AGIExecStart", 10, since=t0)]}
        call_ids: dict[str, str] = {}

        def by_caller() -> bool:
            for call in product.runtime.calls.values():
                for kind, number in CALLERS.items():
                    if call.caller == number:
                        call_ids[kind] = call.call_id
            return len(call_ids) == 2

        product.wait_for(by_caller, 10, "both calls in the engine")
        assert starts & set(call_ids.values())

        def connected(kind: str) -> Any:
            return lambda: product.runtime.calls[call_ids[kind]].phase is Phase.CONNECTED

        # --- the right PIN: verified before the agent answers --------------------------
        product.wait_for(connected("right"), 25, "the verified caller to reach an agent")
        call_id = call_ids["right"]
        agent = product.call(lambda: product.runtime.calls[call_id].agent_id)
        # the PIN step is IVR time, not waiting: the caller's wait (t_in) starts after it
        entered, routed = product.call(lambda: (product.runtime.calls[call_id].entered_at,
                                                product.runtime.calls[call_id].routed_at))
        assert routed is not None and routed - entered > 1.0, (entered, routed)
        other = "1002" if agent == "1001" else "1001"
        code, view = api(product, "GET", f"/api/v1/identity/calls/{call_id}", tokens[agent])
        assert code == 200, view
        assert view["status"] == "verified:pin" and view["pin_attempts"] == 1
        assert view["customer"]["surname"] == "王" and view["customer"]["title"] == "先生"
        assert "account" not in view["customer"] and view["hidden"] == [
            "account", "address", "id_tail"]
        assert product.call(lambda: desk.identity_status(call_id)) == "verified:pin"
        code, shown = api(product, "POST", f"/api/v1/identity/calls/{call_id}/reveal",
                          tokens[agent], {"fields": ["account"]})
        assert code == 200 and shown["fields"] == {"account": "6222-right"}, shown
        assert api(product, "POST", f"/api/v1/identity/calls/{call_id}/reveal",
                   tokens[other], {})[0] == 403  # not their call

        # --- wrong, garbage, too long, silence: failed, then verified by questions ------
        product.wait_for(connected("wrong"), 45, "the unverified caller to reach an agent")
        call_id = call_ids["wrong"]
        agent = product.call(lambda: product.runtime.calls[call_id].agent_id)
        code, view = api(product, "GET", f"/api/v1/identity/calls/{call_id}", tokens[agent])
        assert (view["status"], view["pin_attempts"]) == ("failed", 4), view
        code, refused = api(product, "POST", f"/api/v1/identity/calls/{call_id}/reveal",
                            tokens[agent], {"fields": ["address"]})
        assert (code, refused["detail"]["error"]) == (409, "not_verified")
        assert api(product, "POST", f"/api/v1/identity/calls/{call_id}/verify",
                   tokens[agent], {"method": "pin"})[0] == 422
        code, vouched = api(product, "POST", f"/api/v1/identity/calls/{call_id}/verify",
                            tokens[agent], {"method": "questions"})
        assert code == 200 and vouched["status"] == "verified:questions"
        assert vouched["by"] == agent
        code, shown = api(product, "POST", f"/api/v1/identity/calls/{call_id}/reveal",
                          tokens[agent], {})
        assert code == 200 and shown["fields"] == {
            "account": "6222-wrong", "address": "杭州市 1 号", "id_tail": "4321"}

        # --- the audit, as supervisors see it -------------------------------------------
        assert api(product, "GET", "/api/v1/identity/reveals", tokens[agent])[0] == 403
        code, audit = api(product, "GET", "/api/v1/identity/reveals", boss)
        assert code == 200
        seen = [(r["action"], r["call_id"], r["customer_id"], r["fields"], r["actor"])
                for r in reversed(audit["reveals"])]
        assert [s[:4] for s in seen] == [
            ("identity.reveal", call_ids["right"], ids["right"], ["account"]),
            ("identity.reveal_refused", call_ids["wrong"], ids["wrong"], ["address"]),
            ("identity.reveal", call_ids["wrong"], ids["wrong"],
             ["account", "address", "id_tail"])]

        for kind, caller in callers.items():
            assert caller.wait(60) == 0, (kind, caller.diagnostics())
        for kind in CALLERS:
            product.wait_for(lambda k=kind: product.runtime.calls[call_ids[k]].phase
                             is Phase.ENDED, 10, f"the {kind} call to end")
        product.flush()
        events = {kind: [(e.kind, e.payload.get("status"))
                         for e in product.store.read(repo.read_events, uniqueid=call_ids[kind])
                         if e.kind.startswith("identity")] for kind in CALLERS}
        assert events == {"right": [("identity_pin", "verified:pin")],
                          "wrong": [("identity_pin", "failed"),
                                    ("identity_verified", "verified:questions")]}
        board.close()
        # the caller did key the digits (the test's own AMI tap sees Asterisk's DTMF
        # events): what follows looks for something that existed
        keyed = "".join(e["Digit"] for e in asterisk.tap.events_since(t0, "DTMFEnd")
                        if e.get("Uniqueid") == call_ids["right"]
                        and e.get("Direction") == "Received")
        assert RIGHT_PIN in keyed, keyed

    # --- the digits are nowhere ------------------------------------------------------------
    secrets = (RIGHT_PIN, WRONG_PIN, TOO_LONG)
    logged = [r.getMessage() for r in caplog.records]
    assert len(logged) > 100  # the engine did log at DEBUG: the scan means something
    assert not [m for m in logged if any(s in m for s in secrets)]
    frames = json.dumps(board.frames, ensure_ascii=False)
    assert "verified:pin" in frames  # the desktop was told, without the digits
    assert not [s for s in secrets if s in frames]
    assert not leaks(engine_dir, secrets)
    assert not leaks(asterisk.workdir, secrets)
