"""Every ending the call machine can give is a record the store takes (issue 13: a 486
from a phone once made every call-record write fail ``ck_call_offers_result``; 850
records went to the dead-letter file and the caller's call never closed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from callflow.engine import calls
from callflow.engine.calls import Offer, OfferResult, Outcome, Phase
from callflow.store import records, repo
from callflow.store.db import Store
from callflow.store.models import CALL_OUTCOMES, OFFER_RESULTS, RELEASED_BY

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC).timestamp()
RULES = calls.CallRules(ring_cycle_s=5.0, apology_after_s=15.0, short_abandon_s=5.0,
                        dropped_call_causes=frozenset({38}))


def test_the_store_names_every_result_outcome_and_releaser_the_engine_gives() -> None:
    assert {r.value for r in OfferResult} <= set(OFFER_RESULTS)
    assert {o.value for o in Outcome} <= set(CALL_OUTCOMES)
    assert {"caller", "agent", "system", "pbx"} <= set(RELEASED_BY)


@pytest.mark.parametrize("result", list(OfferResult))
def test_each_offer_result_is_written_and_read_back(store: Store, result: OfferResult) -> None:
    store.run(repo.upsert_agent, "1001", name="A", extension="agent1001")
    uid = f"call-{result.value}"
    offer = Offer("1001", "PJSIP/agent1001-1", T0 + 1, ended_at=T0 + 3, result=result,
                  left_at=T0 + 9 if result is OfferResult.ANSWERED else None)
    call = calls.InboundCall(
        uid, "PJSIP/caller-1", "13800000001", "100", "main", T0, phase=Phase.ENDED,
        offers=(offer,), answered_at=T0 + 3 if result is OfferResult.ANSWERED else None,
        ended_at=T0 + 9, outcome=Outcome.PBX_FAILURE, released_by="pbx", transfer_count=1,
        incomplete="ended while Asterisk's events were not seen")
    records.write(store, "call", calls.call_record(call, RULES))
    with store.session() as s:
        row = repo.get_call(s, uid)
        assert row is not None
        assert (row.outcome, row.released_by, row.ending, row.transfer_count) == (
            "pbx_failure", "pbx", "pbx_failure", 1)
        assert row.incomplete_reason == "ended while Asterisk's events were not seen"
        [stored] = repo.offers_for_call(s, uid)
        assert stored.result == result.value
        if result is OfferResult.ANSWERED:
            assert stored.left_at == datetime.fromtimestamp(T0 + 9, UTC)


def test_a_transferred_call_keeps_each_agents_part(store: Store) -> None:
    for agent in ("1001", "1002"):
        store.run(repo.upsert_agent, agent, name=agent, extension=f"agent{agent}")
    call, _ = calls.start(calls.CallEntered("t1", "PJSIP/caller-1", "139", "100", "main",
                                            T0), RULES)
    for event in (calls.OfferStarted("t1", "1001", "PJSIP/agent1001-1", T0 + 1),
                  calls.OfferEnded("t1", "1001", "ANSWER", T0 + 3),
                  calls.TransferStarted("t1", "1001", "1002", T0 + 30),
                  calls.OfferStarted("t1", "1002", "PJSIP/agent1002-2", T0 + 30.5),
                  calls.OfferEnded("t1", "1002", "ANSWER", T0 + 33),
                  calls.CallReleased("t1", T0 + 90, by="caller")):
        call, _ = calls.step(call, event, RULES)
        records.write(store, "call", calls.call_record(call, RULES))
    with store.session() as s:
        first, second = repo.offers_for_call(s, "t1")
        assert first.left_at - first.ended_at == timedelta(seconds=27)  # 1001 talked 27 s
        assert second.left_at - second.ended_at == timedelta(seconds=57)  # 1002 talked 57 s
        row = repo.get_call(s, "t1")
        assert row is not None and (row.agent_id, row.transfer_count, row.ending) == (
            "1002", 1, "caller_released")


def test_the_ring_start_is_asterisks_not_the_flows(store: Store) -> None:
    """The flow records an offer just before its Dial; Asterisk's stamp of the agent leg
    then confirms it. The store kept the flow's time (live: 1-22 ms early, the AGI round
    trip; more on a loaded machine), and ring_s with it."""
    store.run(repo.upsert_agent, "1001", name="A", extension="agent1001")
    call, _ = calls.start(calls.CallEntered("r1", "PJSIP/caller-1", "139", "100", "main",
                                            T0), RULES)
    for event in (calls.OfferStarted("r1", "1001", "", T0 + 1.0, from_pbx=False),
                  calls.OfferStarted("r1", "1001", "PJSIP/agent1001-1", T0 + 1.25),
                  calls.OfferEnded("r1", "1001", "ANSWER", T0 + 3.0)):
        call, effects = calls.step(call, event, RULES)
        assert [type(e).__name__ for e in effects] == ["CallChanged"]
        records.write(store, "call", calls.call_record(call, RULES))
    with store.session() as s:
        [offer] = repo.offers_for_call(s, "r1")
        assert offer.started_at == datetime.fromtimestamp(T0 + 1.25, UTC)
        assert offer.ring_s == pytest.approx(1.75)
        row = repo.get_call(s, "r1")
        assert row is not None and row.ring_started_at == offer.started_at
