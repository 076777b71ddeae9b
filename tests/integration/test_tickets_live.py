"""Tickets on the real Asterisk with SIPp (issue 19): a ticket opened during a live call
links the call, the caller, the agent and the recording; its escalation reaches the
board's websocket once, and not again after an engine restart.

A caller (SIPp) reaches agent 1001's softphone (SIPp answering) and talks for 13.5 s.
While they talk, the agent opens a simple complaint over the API from the call's id. The
Policy gives a simple complaint's promised answer 7.2 s (0.002 h) and checks every
0.5 s, so the answer clock runs out during the test: the shift lead's step is an alarm
on the board stream (and a notice on the agent's own topic), recorded in the ticket's
history, and assigned to the shift lead of the agent's team, whose own websocket topic
``user:<login>`` carries it (the other team's lead gets nothing and may not subscribe to
the first lead's topic). The engine then stops and a new one starts on the same
database: it announces nothing again (the level is stored, the steps are derived from it).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from product import Product, running_product
from wsclient import EventStream

from callflow.agents.state import LogIn
from callflow.engine.calls import Phase
from callflow.engine.policy import Policy
from callflow.recordings.feature import RecordingsFeature
from callflow.service import ServiceOptions
from callflow.store import repo
from callflow.store import tickets as store_tickets
from callflow.tickets.feature import ESCALATION_ALARM, TicketsFeature, user_topic

if TYPE_CHECKING:
    from conftest import PbxHandle
    from sippctl import SippControl

pytestmark = pytest.mark.integration
AGENTS = ["1001"]
CALLER = "13900000019"
ANSWER_H = 0.002  # 7.2 s: the simple complaint's promised answer, short for the test
# no daily check: the first step comes at the missed answer (seconds, not the next
# 09:30); the steps at the daily checks are unit-tested on a fake clock
POLICY = Policy.model_validate({"tickets": {"complaint_simple_answer_h": ANSWER_H,
                                            "escalation_interval_h": 24,
                                            "daily_check_at": "off",
                                            "check_interval_s": 0.5}})


def options() -> ServiceOptions:
    return ServiceOptions(features=[TicketsFeature(), RecordingsFeature(purge=False)])


def http(product: Product, method: str, path: str, token: str,
         body: dict[str, Any] | None = None) -> tuple[int, Any]:
    return product.rest(method, f"/api/v1/tickets{path}", token, body)


def escalations(stream: EventStream, ticket_id: int) -> list[dict[str, Any]]:
    return [p for p in stream.payloads("alarms")
            if p.get("type") == "alarm" and p.get("kind") == ESCALATION_ALARM
            and p["detail"].get("ticket_id") == ticket_id]


def feature_of(product: Product) -> TicketsFeature:
    found = [f for f in product.service.options.features if isinstance(f, TicketsFeature)]
    return found[0]


@pytest.mark.std("STD-125", "STD-123")
def test_ticket_from_a_live_call_links_it_and_escalates_once_across_a_restart(
        asterisk: PbxHandle, sipp: SippControl, asterisk_root: Path, tmp_path: Path) -> None:
    t_start = time.monotonic()
    with running_product(asterisk, asterisk_root, tmp_path, POLICY, AGENTS,
                         options()) as product:
        ticket = _first_engine(product, sipp)
    # an engine restart on the same database: nothing is announced again
    with running_product(asterisk, asterisk_root, tmp_path, POLICY, AGENTS,
                         options()) as again:
        token = again.session("boss", "supervisor")
        board2 = EventStream(again.settings.ports.api, token, topics="board,alarms")
        snapshot = board2.wait(lambda f: f.get("type") == "snapshot", 5, "snapshot")
        feature = feature_of(again)
        again.wait_for(lambda: bool(feature.backlog.get("items")), 10, "the backlog")
        time.sleep(4 * POLICY.tickets.check_interval_s)
        assert escalations(board2, ticket["id"]) == []
        assert feature.announced == []
        [item] = feature.backlog["items"]
        assert (item["id"], item["escalation_level"]) == (ticket["id"], 1)
        assert snapshot["state"]["tickets"]["open"] == 1
        history = again.store.read(store_tickets.history, ticket["id"])
        assert [h.action for h in history] == ["created", "escalated"]
        alarms = [a for a in again.store.read(repo.recent_alarms)
                  if a.kind == ESCALATION_ALARM]
        assert len(alarms) == 1
        board2.close()
    print(f"whole test {time.monotonic() - t_start:.1f} s")


def _first_engine(product: Product, sipp: SippControl) -> dict[str, Any]:
    """The call, the ticket opened during it and its one escalation (the first engine)."""
    supervisor = product.session("boss", "supervisor")
    board = EventStream(product.settings.ports.api, supervisor, topics="board,alarms")
    agent = product.session("1001", "agent", "1001")
    own = EventStream(product.settings.ports.api, agent, topics="agent:1001")
    # the escalation chain's people: agent 1001 is in team red, with its shift lead
    product.store.run(repo.upsert_agent, "1001", team="red")
    for lead, team in (("lead_red", "red"), ("lead_blue", "blue")):
        product.store.run(repo.set_user, lead, "shift_lead", "x", team=team)
    api = product.settings.ports.api
    lead_red = EventStream(api, product.session("lead_red", "shift_lead"),
                           topics=user_topic("lead_red"))
    lead_blue_token = product.session("lead_blue", "shift_lead")
    lead_blue = EventStream(api, lead_blue_token, topics=user_topic("lead_blue"))
    with pytest.raises(AssertionError, match="snapshot"):  # refused: no snapshot comes
        EventStream(api, lead_blue_token, topics=user_topic("lead_red"))
    sipp.softphone("1001", "uas_answer.xml", ring_ms=500)
    product.call(lambda: product.runtime.agent_event("1001", LogIn()))
    caller = sipp.caller("100", "uac_call_speaking.xml", caller_id=CALLER)

    def answered() -> str | None:
        for call in product.runtime.calls.values():
            if call.agent_id == "1001" and call.answered_at is not None \
                    and call.ended_at is None:
                return str(call.call_id)
        return None

    product.wait_for(lambda: answered() is not None, 30, "the agent to answer")
    call_id = product.call(answered)
    assert call_id is not None

    # during the call: the agent opens a complaint from the call's id
    status, made = http(product, "POST", "", agent, {
        "type": "complaint_simple", "call_id": call_id,
        "description": "<b>billing</b> wrong twice"})
    created_at = time.monotonic()
    assert status == 201, made
    ticket = made["ticket"]
    assert product.call(lambda: product.runtime.calls[call_id].ended_at) is None  # still on
    assert (ticket["call_id"], ticket["caller_number"], ticket["agent_id"],
            ticket["owner_id"]) == (call_id, CALLER, "1001", "1001")
    assert ticket["description"] == "<b>billing</b> wrong twice"

    # the answer clock runs out: the shift lead's step on the board and the agent's topic
    board.wait(lambda f: f.get("type") == "event" and f["payload"].get("kind")
               == ESCALATION_ALARM, 20, "the escalation alarm")
    alarmed_at = time.monotonic()
    own.wait(lambda f: f.get("type") == "event"
             and f["payload"].get("type") == ESCALATION_ALARM, 5, "the owner's notice")
    step = lead_red.wait(lambda f: f.get("type") == "event"
                         and f["payload"].get("type") == ESCALATION_ALARM, 5,
                         "the step on the shift lead's own topic")
    led_at = time.monotonic()
    assert (step["payload"]["ticket_id"], step["payload"]["to"], step["payload"]["level"]) \
        == (ticket["id"], "lead_red", 1)
    assert caller.wait(60) == 0, caller.diagnostics()
    product.wait_for(lambda: product.runtime.calls[call_id].phase is Phase.ENDED, 10,
                     "the call to end")
    recordings = next(f for f in product.service.options.features
                  if isinstance(f, RecordingsFeature))
    product.wait_for(lambda: bool(recordings.finished), 20, "the recording")
    product.flush()
    time.sleep(2 * POLICY.tickets.check_interval_s + 0.5)  # passes that must add nothing
    [alarm] = escalations(board, ticket["id"])
    assert (alarm["detail"]["level"], alarm["detail"]["role"], alarm["std"]) == \
        (1, "shift_lead", "STD-125")
    assert alarm["detail"]["reason"] == "overdue:answer"

    # the recording, written at the end of the call, is the ticket's
    rec = product.store.read(repo.recording_for_call, call_id)
    assert rec is not None
    status, got = http(product, "GET", f"/{ticket['id']}", supervisor)
    assert status == 200 and got["ticket"]["recording_id"] == rec.id
    assert [h["action"] for h in got["history"]] == ["created", "escalated"]
    assert got["ticket"]["escalated_to"] == "lead_red"
    assert [p for p in lead_red.payloads(user_topic("lead_red"))
            if p.get("type") == ESCALATION_ALARM] == [step["payload"]]  # once
    assert lead_blue.payloads(user_topic("lead_blue")) == []
    status, theirs = http(product, "GET", "", product.session("lead_red", "shift_lead"))
    assert status == 200 and [t["id"] for t in theirs["tickets"]] == [ticket["id"]]
    status, _ = http(product, "GET", f"/{ticket['id']}", lead_blue_token)
    assert status == 404  # another team's lead learns nothing of it
    board.close()
    own.close()
    lead_red.close()
    lead_blue.close()
    print(f"\nshift lead's frame {led_at - created_at:.2f} s after the ticket")
    print(f"\nescalation alarm {alarmed_at - created_at:.2f} s after the ticket "
          f"(deadline {ANSWER_H * 3600:.1f} s, checked every "
          f"{POLICY.tickets.check_interval_s} s)")

    return dict(ticket)
