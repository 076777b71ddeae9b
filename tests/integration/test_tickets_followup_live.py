"""Closing a ticket by its follow-up call, on the real Asterisk with SIPp (issue 19,
STD-134).

Two complaints (two customers' numbers) are closed over REST: each waits for the
customer's confirmation and gets an outbound ``follow_up`` task. The dialer rings the
agent's softphone (SIPp UAS), then the customer (SIPp UAS: answers, talks 2 s, hangs
up). After each call the agent's desktop (the real /ws/desktop websocket) hands in the
wrap-up form as the page does: the first call ends ``no_conversation`` (its ticket stays
awaiting confirmation, with a history row naming the disposition), the second
``resolved`` (the Policy's confirming disposition: its ticket closes). Which ticket each
call was for is read from the task's attempt (the call Asterisk made), not assumed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from product import Product, make_roster, make_settings
from test_agents_live import LiveDesk
from test_outbound_live import customer, softphone

from callflow.desktop.feature import AgentDesktop
from callflow.engine.policy import Policy
from callflow.outbound.feature import OutboundFeature
from callflow.service import ServiceOptions
from callflow.store import repo
from callflow.store import tickets as store_tickets
from callflow.tickets.feature import TicketsFeature

if TYPE_CHECKING:
    from conftest import PbxHandle
    from sippctl import SippControl

pytestmark = pytest.mark.integration
AGENT = "1001"
NUMBERS = ["13900000134", "13900000135"]
DISPOSITIONS = ["no_conversation", "resolved"]


@pytest.fixture
def product(asterisk: PbxHandle, asterisk_root: Path, tmp_path: Path) -> Iterator[Product]:
    policy = Policy.model_validate({
        "outbound": {"calling_window_start": "00:00", "calling_window_end": "23:59",
                     "calling_days": "all_but_holidays", "caller_id": "4008001234",
                     "wrapup_required": True},
        "agents": {"acw_limit_s": 2, "acw_auto_ready": True},
        "tickets": {"followup_confirm_dispositions": ["resolved"]}})
    running = Product(make_settings(tmp_path, asterisk, asterisk_root), policy,
                      make_roster([AGENT], asterisk.agent_port),
                      ServiceOptions(features=[OutboundFeature(tick_s=0.2), AgentDesktop(),
                                               TicketsFeature()]))
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.mark.std("STD-134")
def test_the_follow_up_calls_wrap_up_closes_or_keeps_the_ticket(
        asterisk: PbxHandle, sipp: SippControl, product: Product) -> None:
    t_start = time.monotonic()
    softphone(sipp, asterisk, AGENT)
    customer(sipp, asterisk, "uas_answer_bye.xml", ring_ms=1000)  # talks 2 s
    boss = product.session("boss", "supervisor")
    tickets = []
    for number in NUMBERS:
        status, made = product.rest("POST", "/api/v1/tickets", boss, {
            "type": "complaint_simple", "description": f"complaint of {number}",
            "caller_number": number, "owner_kind": "agent", "owner_id": AGENT})
        assert status == 201, made
        status, closed = product.rest("POST", f"/api/v1/tickets/{made['ticket']['id']}/close",
                                      boss, {"version": made["ticket"]["version"]})
        assert status == 200, closed
        assert closed["ticket"]["status"] == "awaiting_confirmation"
        assert closed["ticket"]["followup_task_id"] is not None
        tickets.append(closed["ticket"])

    desk = LiveDesk(product, AGENT)
    assert desk.request("login", extension=AGENT)["state"] == "ready"
    calls: dict[str, str] = {}  # call id -> the disposition handed in
    for disposition in DISPOSITIONS:
        # the next call's form owed (an ACW frame after a form carries no call)
        _, acw, _ = desk.wait(lambda f: f["type"] == "event"
                              and f["payload"].get("type") == "agent_state"
                              and f["payload"].get("state") == "acw"
                              and f["payload"].get("wrapup_call") not in (None, "", *calls),
                              60, "the follow-up call's wrap-up form")
        call_id = acw["payload"]["wrapup_call"]
        ok = desk.request("wrapup", call_id=call_id, disposition=disposition, notes="")
        assert ok["type"] == "ack", ok
        calls[call_id] = disposition
    desk.close()

    def settled() -> bool:
        rows = [product.store.read(store_tickets.get, t["id"]) for t in tickets]
        return sorted(r.status for r in rows) == ["awaiting_confirmation", "closed"]

    product.wait_for(settled, 10, "one ticket closed, the other still waiting")
    product.flush()
    for ticket in tickets:
        [attempt] = product.store.read(repo.task_attempts, ticket["followup_task_id"])
        assert attempt.call_uniqueid in calls, (attempt.call_uniqueid, calls)
        disposition = calls[attempt.call_uniqueid]
        row = product.store.read(store_tickets.get, ticket["id"])
        last = product.store.read(store_tickets.history, ticket["id"])[-1]
        assert last.detail["call_id"] == attempt.call_uniqueid
        assert last.detail["disposition"] == disposition
        if disposition == "resolved":
            assert (row.status, last.action) == ("closed", "confirmed")
            assert row.closed_at is not None and row.followed_up_at is not None
        else:
            assert (row.status, last.action) == ("awaiting_confirmation",
                                                 "followup_unconfirmed")
            assert row.closed_at is None
        call = product.store.read(repo.get_call, attempt.call_uniqueid)
        assert call is not None and call.outcome == "answered"
    print(f"\nwhole test {time.monotonic() - t_start:.1f} s")
