"""The store as the outbound routes reach it: one way for the tasks and the campaigns
routers to answer a service still starting, a refused change and a failing store."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fastapi import HTTPException
from sqlalchemy import select
from sqlalchemy.orm import Session

from callflow.api.errors import api_error
from callflow.errors import StateError, StoreError
from callflow.store.models import Call, CallbackTask, TaskAttempt

if TYPE_CHECKING:
    from callflow.outbound.feature import OutboundFeature


def customer_number_of(s: Session, call_uniqueid: str) -> str:
    """The customer's number of a call: an inbound call's caller, or the number an outbound
    attempt dialled (its task's); "" when the store has neither."""
    number = s.scalar(select(Call.caller_number).where(Call.uniqueid == call_uniqueid))
    if number:
        return str(number)
    dialled = s.scalar(select(CallbackTask.number).join(
        TaskAttempt, TaskAttempt.task_id == CallbackTask.id)
        .where(TaskAttempt.call_uniqueid == call_uniqueid).limit(1))
    return str(dialled or "")


def state_error(exc: StateError, statuses: Mapping[str, int]) -> HTTPException:
    """A refused change as the API says it: the reason's status (409 by default)."""
    return api_error(statuses.get(exc.reason, 409), exc.reason, exc.detail or exc.reason)


def service_of(feature: OutboundFeature) -> Any:
    """The running service, or 503 while it starts (no store yet)."""
    if feature.service is None or feature.service.store is None:
        raise api_error(503, "not_ready", "the service is starting")
    return feature.service


async def store_call(feature: OutboundFeature, statuses: Mapping[str, int], fn: Any, /,
                     *args: Any, write: bool = False, **kwargs: Any) -> Any:
    """``fn`` on the store off the loop (``run`` when it writes, else ``read``): a
    StateError is its status (``statuses``), a failing store 503. Positional-only: the
    store functions take keywords of their own (``statuses=``)."""
    store = service_of(feature).store
    try:
        return await asyncio.to_thread(store.run if write else store.read, fn, *args, **kwargs)
    except StateError as exc:
        raise state_error(exc, statuses) from None
    except StoreError as exc:
        raise api_error(503, "store_error", str(exc)) from None
