"""Issue 19: the daily report file, built from a real store, carries the tickets logged
in its period (and not those of another day)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from callflow.board import reports
from callflow.engine import tickets as core
from callflow.engine.policy import Policy
from callflow.store import tickets as store_tickets
from callflow.store.db import Store

DAY = date(2027, 1, 5)


@pytest.mark.std("STD-133")
def test_the_daily_report_reads_the_periods_tickets_from_the_store(store: Store) -> None:
    policy = Policy()
    noon = datetime(2027, 1, 5, 4, 0, tzinfo=UTC)  # 12:00 in the centre's zone (UTC+8)

    def add(s: object, ticket: core.Ticket, n: int) -> None:
        store_tickets.create(s, ticket, actor="1001", owner_kind="agent",  # type: ignore[arg-type]
                             owner_id="1001", number_of=lambda i: f"T{n}-{i}")

    store.run(add, core.Ticket("complaint_simple", noon, replied_at=noon + timedelta(hours=1)),
              1)
    store.run(add, core.Ticket("enquiry", noon), 2)
    store.run(add, core.Ticket("enquiry", noon - timedelta(days=3)), 3)  # another day
    report = reports.load_and_build(store, policy, "daily", "queue", DAY,
                                    noon + timedelta(days=1))
    assert report.tickets is not None
    assert (report.tickets.logged, report.tickets.complaints) == (2, 1)
    assert report.tickets.reply_rate == 0.5 and report.tickets.reply_rate_met is False
    assert "STD-133,reply rate,%,>= 100,50,fail" in reports.to_csv(report)
