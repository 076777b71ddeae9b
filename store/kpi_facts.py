"""The KPI facts of a period, read from the store: rows in, ``engine/kpi.py``'s facts out.

``engine/kpi.py`` computes every KPI from plain facts (calls with their offers and
holds, agent state spans) and must not read the database itself (the pure core does
no I/O). This is the thin loader that does: the board, the KPI API and the reports
call it in a worker thread and hand what it returns to the KPI functions.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from callflow.engine.kpi import CallFact, HoldFact, OfferFact, Period, StateSpan, SurveyFact
from callflow.store import repo
from callflow.store.db import Store
from callflow.store.models import AgentState, Call, CallEvent, CallHold, CallOffer

#: ACW of a call at the end of a period runs into the next one; load this much more.
ACW_LOOKAHEAD = timedelta(hours=2)


def load_survey_facts(store: Store, period: Period) -> list[SurveyFact]:
    """The survey questions asked in the period (STD-120), for engine/kpi.py."""
    with store.session(readonly=True) as s:
        return [SurveyFact(a.agent_id, a.queue, a.score, a.question)
                for a in repo.survey_answers(s, since=period.start, until=period.end)]


def load_facts(store: Store, period: Period) -> tuple[list[CallFact], list[StateSpan]]:
    """Calls that reached routing in the period, and the state spans that overlap it (plus
    the ACW look-ahead). Runs in a worker thread (it queries the store)."""
    with store.session(readonly=True) as s:
        calls = repo.calls_entered_between(s, period.start, period.end)
        ids = [c.id for c in calls]
        offers = repo.offers_for_calls(s, ids)
        holds = repo.holds_for_calls(s, ids)
        pins = pin_steps_for_calls(s, [c.uniqueid for c in calls])
        states = repo.agent_states_between(s, period.start, period.end + ACW_LOOKAHEAD)
    return facts_from_rows(calls, offers, holds, pins), spans_from_rows(states)


#: The event-log kind of a PIN step's outcome (desktop/identity.py, dialplan/inbound.py).
PIN_RECORD = "identity_pin"


def pin_steps_for_calls(s: Session, uniqueids: list[str]
                        ) -> dict[str, list[tuple[datetime, datetime]]]:
    """The mid-call PIN steps of these calls (their ``identity_pin`` records with
    ``midcall``, ``pin_started`` and ``pin_s``), by call uniqueid."""
    out: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
    for chunk in range(0, len(uniqueids), 500):
        rows = s.scalars(select(CallEvent).where(
            CallEvent.kind == PIN_RECORD,
            CallEvent.uniqueid.in_(uniqueids[chunk:chunk + 500])))
        for row in rows:
            payload = row.payload or {}
            started, length = payload.get("pin_started"), payload.get("pin_s")
            if not payload.get("midcall") or not isinstance(started, int | float) \
                    or not isinstance(length, int | float) or row.uniqueid is None:
                continue
            begin = datetime.fromtimestamp(float(started), UTC)
            out[row.uniqueid].append((begin, begin + timedelta(seconds=float(length))))
    return out


def facts_from_rows(calls: Iterable[Call], offers: Iterable[CallOffer],
                    holds: Iterable[CallHold],
                    pins: dict[str, list[tuple[datetime, datetime]]] | None = None
                    ) -> list[CallFact]:
    """Store rows (calls, call_offers, call_holds; mid-call PIN steps) -> CallFacts."""
    offers_by: dict[int, list[OfferFact]] = defaultdict(list)
    for o in offers:
        offers_by[o.call_id].append(OfferFact(o.agent_id, o.started_at, o.ended_at, o.result,
                                              o.left_at))
    holds_by: dict[int, list[HoldFact]] = defaultdict(list)
    for h in holds:
        holds_by[h.call_id].append(HoldFact(h.started_at, h.ended_at, h.agent_id))
    out = []
    for c in calls:
        if c.entered_at is None or c.direction != "inbound":
            continue
        out.append(CallFact(
            uniqueid=c.uniqueid, queue=c.queue or "main", entered_at=c.entered_at,
            answered_at=c.answered_at, ended_at=c.ended_at, agent_id=c.agent_id,
            outcome=c.outcome, ring_started_at=c.ring_started_at,
            offers=tuple(sorted(offers_by.get(c.id, ()), key=lambda o: o.started_at)),
            holds=tuple(sorted(holds_by.get(c.id, ()), key=lambda h: h.started_at)),
            hold_total_s=c.hold_total_s or 0.0, transfer_count=c.transfer_count or 0,
            released_by=c.released_by, release_compliant=c.release_compliant,
            release_procedure=c.release_procedure, disposition=c.disposition,
            caller=c.caller_number or "", routed_at=c.routed_at, menu=bool(c.menu),
            pin_steps=tuple(sorted((pins or {}).get(c.uniqueid, ())))))
    return out


def spans_from_rows(rows: Iterable[AgentState]) -> list[StateSpan]:
    """Store rows (agent_states) -> StateSpans."""
    return [StateSpan(r.agent_id, r.state, r.started_at, r.ended_at, r.reason, r.call_uniqueid)
            for r in rows]
