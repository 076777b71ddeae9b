"""A campaign on the real Asterisk with SIPp: the do-not-call number is never dialled and
the agent hands in the wrap-up form before the next number (issue 16, STD-092, STD-085).

A supervisor creates a campaign and uploads three numbers over REST, one of them on the
do-not-call list. The dialer rings the agent's softphone (SIPp UAS), then the customer
(SIPp UAS: rings, answers, talks 2 s, hangs up). After each call the agent's desktop
(the real /ws/desktop websocket) owes the wrap-up form: the ACW limit (3 s here) passes,
the agent stays in ACW with a ``wrapup_missing`` alarm and is given no call; the agent
submits the form over the websocket as the desktop page does, and only then the next
number is dialled. What Asterisk dialled is read from its own AMI events (DialBegin's
DialString) and from the customer's SIPp log, not from our database.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from product import Product, make_roster, make_settings
from test_agents_live import LiveDesk
from test_outbound_live import customer, softphone, ticks

from callflow.desktop.feature import AgentDesktop
from callflow.engine.policy import Policy
from callflow.outbound.feature import OutboundFeature
from callflow.service import ServiceOptions
from callflow.store import campaigns as campaign_store
from callflow.store import repo

if TYPE_CHECKING:
    from conftest import PbxHandle
    from sippctl import SippControl

AGENT = "1001"
NUMBERS = ["13900000001", "13900000002", "13900000003"]
BLOCKED = "13900000002"
ACW_LIMIT_S = 3.0


@pytest.fixture
def product(asterisk: PbxHandle, asterisk_root: Path, tmp_path: Path) -> Iterator[Product]:
    policy = Policy.model_validate({
        "outbound": {"calling_window_start": "00:00", "calling_window_end": "23:59",
                     "calling_days": "all_but_holidays", "caller_id": "4008001234",
                     "wrapup_required": True},
        "agents": {"acw_limit_s": ACW_LIMIT_S, "acw_auto_ready": True}})
    running = Product(make_settings(tmp_path, asterisk, asterisk_root), policy,
                      make_roster([AGENT], asterisk.agent_port),
                      ServiceOptions(features=[OutboundFeature(tick_s=0.2), AgentDesktop()]))
    running.start()
    try:
        yield running
    finally:
        running.stop()


def dial_strings(asterisk: PbxHandle, since: float) -> list[str]:
    """What Asterisk's dialplan dialled toward customers (AMI DialBegin, DialString)."""
    return [e.get("DialString", "") for e in asterisk.tap.events_since(since, "DialBegin")
            if e.get("DestChannel", "").startswith("PJSIP/customer-")]


def wait_until(what: str, timeout: float, check: object) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


def test_a_campaign_skips_the_dnc_number_and_waits_for_each_wrap_up(
        asterisk: PbxHandle, sipp: SippControl, product: Product) -> None:
    softphone(sipp, asterisk, AGENT)
    callee = customer(sipp, asterisk, "uas_answer_bye.xml", ring_ms=1000)  # talks 2 s
    api = f"http://127.0.0.1:{product.settings.ports.api}/api/v1"
    boss = {"Authorization": f"Bearer {product.session('boss', 'supervisor')}"}
    desk = LiveDesk(product, AGENT)
    assert desk.request("login", extension=AGENT)["state"] == "ready"
    hello = next(f for _, f in desk.frames if f["type"] == "hello")
    assert "resolved" in [d["code"] for d in hello["wrapup"]["dispositions"]]
    t0 = asterisk.tap.mark()
    # the supervisor: the do-not-call entry, the campaign, its CSV (one bad row)
    assert httpx.post(f"{api}/dnc", json={"number": "139-0000-0002"},
                      headers=boss).status_code == 201
    reply = httpx.post(f"{api}/campaigns", headers=boss, json={
        "name": "winter check", "agents": [AGENT], "max_attempts": 2,
        "window_start": "00:00", "window_end": "23:59"})
    assert reply.status_code == 201, reply.text
    campaign = reply.json()["campaign"]
    csv = "number,name\n" + "\n".join(f"{n},customer {i}" for i, n in enumerate(NUMBERS)) \
        + "\nnot a number,x\n"
    report = httpx.post(f"{api}/campaigns/{campaign['id']}/numbers", content=csv.encode(),
                        headers={**boss, "Content-Type": "text/csv"}).json()
    assert report["imported"] == 3 and report["bad_rows"][0].startswith("row 5: ")
    assert report["do_not_call"][0].startswith(f"row 3: {BLOCKED} ")

    forms: list[str] = []
    for n in range(2):  # two numbers may be dialled; the third never
        _, acw, _ = desk.state_event("acw", 40, after=len(desk.frames) - 1 if n else 0)
        call_id = acw["payload"]["wrapup_call"]
        assert call_id and call_id.startswith("cfo-")
        # the ACW limit passes with no form: still ACW, alarm, and no next call
        entered = time.monotonic()
        refused = desk.request("ready")
        assert refused["type"] == "error" and refused["error"] == "wrapup_required"
        product.wait_for(lambda c=call_id: any(
            a.kind == "wrapup_missing" and a.detail.get("call_id") == c
            for a in product.store.read(repo.open_alarms)), ACW_LIMIT_S + 5,
            "the wrapup_missing alarm")
        waited = time.monotonic() - entered
        time.sleep(1.0)  # a dialer tick or five: nothing may be dialled meanwhile
        assert product.call(lambda: product.runtime.agents[AGENT].state.value) == "acw"
        assert len(dial_strings(asterisk, t0)) == n + 1
        print(f"\ncall {n + 1}: form missing {waited:.1f} s after ACW began (limit "
              f"{ACW_LIMIT_S:g} s): agent kept in ACW, wrapup_missing raised")
        bad = desk.request("wrapup", call_id=call_id, disposition="maybe", notes="")
        assert bad["error"] == "unknown_disposition"
        ok = desk.request("wrapup", call_id=call_id, disposition="resolved",
                          notes=f"customer {n}: wants a quieter line; call after 18:00")
        assert ok["type"] == "ack" and ok["state"] == "ready", ok  # past the limit: ready
        submitted = time.monotonic()
        forms.append(call_id)
        if n == 0:  # the next number is dialled only now, within a few dialer ticks
            wait_until("the next number to be dialled", 10,
                       lambda: len(dial_strings(asterisk, t0)) == 2)
            print(f"next number dialled {time.monotonic() - submitted:.2f} s after the form "
                  "was submitted")

    wait_until("both numbers to be done", 20, lambda: all(
        t.status in ("done", "cancelled")
        for t in product.store.read(campaign_store.campaign_tasks, campaign["id"])))
    time.sleep(1.0)
    dialled = dial_strings(asterisk, t0)
    assert sorted(dialled) == sorted(f"{n}@customer" for n in NUMBERS if n != BLOCKED), dialled
    assert len(ticks(callee, "INVITE")) == 2  # the customer's phone rang twice, not three
    product.flush()
    progress = httpx.get(f"{api}/campaigns/{campaign['id']}", headers=boss).json()
    by_number = {p["number"]: p for p in progress["numbers"]}
    assert by_number[BLOCKED]["status"] == "cancelled"
    assert by_number[BLOCKED]["last_outcome"] == "do_not_call"
    assert by_number[BLOCKED]["attempts"] == 0
    for number in NUMBERS:
        if number == BLOCKED:
            continue
        assert (by_number[number]["status"], by_number[number]["last_outcome"],
                by_number[number]["attempts"], by_number[number]["disposition"]) == (
            "done", "answered", 1, "resolved")
    for call_id in forms:
        [form] = product.store.read(campaign_store.wrapups_for_call, call_id)
        assert form.agent_id == AGENT and form.task_id is not None and "18:00" in form.notes
        call = product.store.read(repo.get_call, call_id)
        assert call is not None and call.outcome == "answered"
    desk.close()
