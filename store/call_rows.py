"""The call record's rows written with prepared Core statements: the writer's hot path.

A finished or changed call is the record the engine writes most (issue 20: the ORM
round trips of these upserts were most of the engine's CPU). The same rules as the
ORM functions in store/repo.py (``upsert_call``, ``add_offer``, ``finish_offer``,
``retime_offer``, ``leave_offer``), but each statement is built once per set of
columns and reused: no ORM objects, no identity map, no per-record statement
construction or cache-key walk, and each runs on the DBAPI cursor of the session's
connection (store/prepared.py). ``store/records.py`` ``write_call`` is the one caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite

from callflow.errors import StoreError
from callflow.store.models import Call, CallOffer, utcnow
from callflow.store.prepared import Executor, Prepared, connection_of
from callflow.store.repo import CALL_FIELDS

CALLS: Table = cast(Table, Call.__table__)
OFFERS: Table = cast(Table, CallOffer.__table__)


@lru_cache(maxsize=256)
def _call_update(keys: tuple[str, ...]) -> Prepared:
    return Prepared(update(CALLS).where(CALLS.c.uniqueid == bindparam("k_uniqueid"))
                    .values({k: bindparam(f"v_{k}") for k in (*keys, "updated_at")})
                    .returning(CALLS.c.id))


@lru_cache(maxsize=256)
def _call_insert(keys: tuple[str, ...], dialect: str) -> Prepared:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    values: dict[str, Any] = {"uniqueid": bindparam("k_uniqueid"),
              **{k: bindparam(f"v_{k}") for k in (*keys, "updated_at")}}
    return Prepared(insert(CALLS).values(values)
                    .on_conflict_do_nothing(index_elements=["uniqueid"])
                    .returning(CALLS.c.id))


def upsert_call(s: Executor, uniqueid: str, fields: dict[str, Any]) -> int:
    """Create the call or change only ``fields``; the call's row id.

    UPDATE first (a partial update of an existing row never trips an INSERT's NOT NULL
    checks), then INSERT ... ON CONFLICT DO NOTHING, then UPDATE again if another
    writer created the row in between (PostgreSQL)."""
    unknown = sorted(set(fields) - CALL_FIELDS)
    if unknown:
        raise StoreError(f"unknown call field(s) {', '.join(unknown)}")
    keys = tuple(sorted(fields))
    params = {f"v_{k}": v for k, v in fields.items()}
    params["v_updated_at"] = utcnow()
    params["k_uniqueid"] = uniqueid
    conn = connection_of(s)  # the session's connection: no ORM step per statement
    row = _call_update(keys).first(conn, params)
    if row is None:
        row = _call_insert(keys, conn.dialect.name).first(conn, params)
    if row is None:
        row = _call_update(keys).one(conn, params)
    return int(row[0])


_OFFERS_OF_CALL = Prepared(
    select(OFFERS.c.id, OFFERS.c.started_at, OFFERS.c.ended_at, OFFERS.c.left_at)
    .where(OFFERS.c.call_id == bindparam("k_call_id"))
    .order_by(OFFERS.c.started_at, OFFERS.c.id))
_ADD_OFFER = Prepared(OFFERS.insert().values(
    call_id=bindparam("v_call_id"), agent_id=bindparam("v_agent_id"),
    started_at=bindparam("v_started_at"), ended_at=bindparam("v_ended_at"),
    result=bindparam("v_result"), ring_s=bindparam("v_ring_s"), left_at=bindparam("v_left_at")))


@lru_cache(maxsize=32)
def _offer_update(keys: tuple[str, ...]) -> Prepared:
    return Prepared(update(OFFERS).where(OFFERS.c.id == bindparam("k_id"))
                    .values({k: bindparam(f"v_{k}") for k in keys}))


def _seconds(end: datetime | None, start: datetime) -> float | None:
    return None if end is None else (end - start).total_seconds()


def write_offers(s: Executor, call_id: int, offers: Sequence[dict[str, Any]]) -> None:
    """The call's offers (STD-008), matched to the stored ones by their order: a new one
    is added (possibly finished at once), a stored one gets Asterisk's ring start, its
    end and result, and when its agent left. Times are parsed already. The new ones go
    in with one ``executemany`` after the changes (they follow every stored one)."""
    if not offers:
        return
    conn = connection_of(s)
    stored = _OFFERS_OF_CALL.rows(conn, {"k_call_id": call_id})
    added: list[dict[str, Any]] = []
    for i, offer in enumerate(offers):
        started, ended, left = offer["started_at"], offer["ended_at"], offer["left_at"]
        if i >= len(stored):
            result = offer.get("result") if ended is not None else None
            if ended is not None and result is None:
                raise StoreError("a finished offer needs both ended_at and result")
            if started is None:
                raise StoreError("a new offer needs started_at")
            added.append({"v_call_id": call_id, "v_agent_id": offer["agent_id"],
                          "v_started_at": started, "v_ended_at": ended, "v_result": result,
                          "v_ring_s": _seconds(ended, started), "v_left_at": left})
            continue
        row_id, start, row_ended, row_left = stored[i]
        change: dict[str, Any] = {}
        if started is not None and start != started:  # Asterisk's stamp replaced the flow's
            start = change["started_at"] = started
            if row_ended is not None:
                change["ring_s"] = _seconds(row_ended, start)
        if row_ended is None and ended is not None:
            if offer.get("result") is None:
                raise StoreError("a finished offer needs both ended_at and result")
            change.update(ended_at=ended, result=offer["result"], ring_s=_seconds(ended, start))
        if left is not None and row_left is None:
            change["left_at"] = left
        if change:
            keys = tuple(sorted(change))
            _offer_update(keys).execute(
                conn, {"k_id": row_id, **{f"v_{k}": v for k, v in change.items()}})
    _ADD_OFFER.executemany(conn, added)
