"""The repeat-caller view's selection (STD-073) and the follow-up close (STD-134): pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from callflow.engine import repeat_caller as rc
from callflow.engine import tickets as core
from callflow.engine.policy import Policy
from callflow.engine.ticket_followup import answer_of_followup

NOW = datetime(2027, 1, 5, 2, 0, tzinfo=UTC)
AGENT = rc.Viewer(role="agent", agent_id="1001", team="red")
BOSS = rc.Viewer(role="supervisor", sees_all=True, may_play=True)


def policy(**tickets: object) -> Policy:
    return Policy.model_validate({"tickets": tickets,
                                  "routing": {"repeat_caller_lookback_days": 30}})


def ticket(tid: int, *, owner: str = "1001", team: str | None = "red", status: str = "open",
           priority: str = "normal", age_h: float = 1, overdue: bool = False,
           rec: int | None = None) -> rc.TicketLine:
    return rc.TicketLine(id=tid, number=f"T{tid}", type="complaint_simple", status=status,
                         priority=priority, opened_at=NOW - timedelta(hours=age_h),
                         owner_id=owner, agent_id=owner, created_by=owner, team=team,
                         due_at=None, overdue=overdue, recording_id=rec)


def call(cid: str, age_days: float, rec: int | None = None) -> rc.CallLine:
    return rc.CallLine(call_id=cid, entered_at=NOW - timedelta(days=age_days),
                       agent_id="1002", outcome="answered", disposition="resolved",
                       recording_id=rec)


@pytest.mark.std("STD-073")
def test_bounded_by_policy_newest_calls_and_most_urgent_tickets_first() -> None:
    tickets = [ticket(1, age_h=5), ticket(2, age_h=1), ticket(3, priority="urgent", age_h=9),
               ticket(4, overdue=True, age_h=20), ticket(5, status="closed")]
    calls = [call("old", 40), call("a", 3), call("b", 1), call("c", 2), call("ringing", 0)]
    view = rc.select_view(tickets, calls, now=NOW, current_call="ringing", viewer=AGENT,
                          policy=policy(repeat_view_tickets=3, repeat_view_calls=2))
    # overdue first, then by priority, then newest; a closed one never
    assert [t.id for t in view.tickets] == [4, 3, 2]
    assert view.more_tickets == 1
    # newest first, within the look-back, never the ringing call itself
    assert [c.call_id for c in view.calls] == ["b", "c"]
    assert view.more_calls == 1


@pytest.mark.std("STD-073")
def test_an_agent_sees_own_and_team_tickets_and_no_recordings() -> None:
    tickets = [ticket(1, rec=7), ticket(2, owner="1002", team="red"),
               ticket(3, owner="1003", team="blue")]
    calls = [call("a", 1, rec=8)]
    p = policy()
    mine = rc.select_view(tickets, calls, now=NOW, current_call=None, viewer=AGENT, policy=p)
    assert sorted(t.id for t in mine.tickets) == [1, 2]
    assert [t.recording_id for t in mine.tickets] == [None, None]
    assert [c.recording_id for c in mine.calls] == [None]
    boss = rc.select_view(tickets, calls, now=NOW, current_call=None, viewer=BOSS, policy=p)
    assert sorted(t.id for t in boss.tickets) == [1, 2, 3]
    assert {t.recording_id for t in boss.tickets} == {7, None}
    assert [c.recording_id for c in boss.calls] == [8]
    nobody = rc.Viewer(role="agent")  # an agent login with no work number
    assert rc.select_view(tickets, calls, now=NOW, current_call=None, viewer=nobody,
                          policy=p).tickets == ()


@pytest.mark.std("STD-073")
def test_zero_means_none_shown_and_lookback_reads_the_routing_window() -> None:
    p = Policy.model_validate({"tickets": {"repeat_view_tickets": 0},
                               "routing": {"repeat_caller_lookback_days": 2}})
    view = rc.select_view([ticket(1)], [call("a", 1), call("b", 3)], now=NOW,
                          current_call=None, viewer=AGENT, policy=p)
    assert view.tickets == () and view.more_tickets == 1
    assert [c.call_id for c in view.calls] == ["a"] and view.more_calls == 0


def waiting() -> core.Ticket:
    t = core.Ticket(type="complaint_simple", opened_at=NOW - timedelta(hours=3))
    return core.close(t, NOW - timedelta(hours=1), Policy())


@pytest.mark.std("STD-134")
def test_the_confirming_disposition_closes_the_ticket() -> None:
    got = answer_of_followup(waiting(), "resolved", NOW, Policy())
    assert got is not None and got.closed and got.action == "confirmed"
    assert got.ticket.status == "closed" and got.ticket.followed_up_at == NOW


@pytest.mark.std("STD-134")
def test_another_disposition_keeps_it_waiting_and_the_list_is_policy() -> None:
    before = waiting()
    got = answer_of_followup(before, "no_conversation", NOW, Policy())
    assert got is not None and not got.closed and got.action == "followup_unconfirmed"
    assert got.ticket == before and "no_conversation" in got.note
    custom = Policy.model_validate({"tickets": {
        "followup_confirm_dispositions": ["confirmed_resolved"]}})
    assert not answer_of_followup(before, "resolved", NOW, custom).closed  # type: ignore[union-attr]
    assert answer_of_followup(before, "confirmed_resolved", NOW, custom).closed  # type: ignore[union-attr]


@pytest.mark.std("STD-134")
def test_a_ticket_no_longer_waiting_is_left_alone() -> None:
    reopened = core.confirmed(waiting(), False, NOW)
    assert answer_of_followup(reopened, "resolved", NOW, Policy()) is None
