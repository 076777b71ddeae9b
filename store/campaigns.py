"""Campaign lists, the do-not-call list and wrap-up forms in the database (issue 16).

The rules are the core's (``engine/campaigns.py``, ``agents/state.py``); these are the
reads and writes, each inside the caller's transaction like ``store/repo.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from callflow.errors import StateError

from . import repo
from .models import (
    DO_NOT_CALL,
    CallbackTask,
    Campaign,
    DoNotCall,
    TaskAttempt,
    Wrapup,
    utcnow,
)
from .prepared import Executor, Prepared

logger = logging.getLogger(__name__)

#: Campaign columns a supervisor sets (create) or the API shows.
CAMPAIGN_FIELDS = ("name", "agents", "queue", "days", "window_start", "window_end",
                   "max_attempts", "retry_spacing_min", "caller_id_key")


def add_campaign(s: Session, *, created_by: str, **fields: Any) -> Campaign:
    """A new campaign (active); ``duplicate_campaign`` when the name is taken."""
    unknown = set(fields) - set(CAMPAIGN_FIELDS)
    if unknown:
        raise StateError("invalid_campaign", f"unknown fields {sorted(unknown)}")
    campaign = Campaign(created_by=created_by, status="active", **fields)
    try:
        with s.begin_nested():
            s.add(campaign)
            s.flush()
    except IntegrityError:
        raise StateError("duplicate_campaign",
                         f"a campaign named {fields.get('name')!r} exists") from None
    return campaign


def get_campaign(s: Session, campaign_id: int) -> Campaign | None:
    return s.get(Campaign, campaign_id, populate_existing=True)


def list_campaigns(s: Session) -> list[Campaign]:
    return list(s.scalars(select(Campaign).order_by(Campaign.id)))


def set_campaign_status(s: Session, campaign_id: int, status: str) -> Campaign:
    campaign = get_campaign(s, campaign_id)
    if campaign is None:
        raise StateError("not_found", f"no campaign {campaign_id}")
    campaign.status = status
    s.flush()
    return campaign


def campaign_tasks(s: Session, campaign_id: int) -> list[CallbackTask]:
    return list(s.scalars(select(CallbackTask).where(CallbackTask.campaign_id == campaign_id)
                          .order_by(CallbackTask.id)))


def last_dispositions(s: Session, task_ids: list[int]) -> dict[int, str]:
    """The latest wrap-up disposition of each task (by its attempts' call ids)."""
    if not task_ids:
        return {}
    rows = s.execute(select(TaskAttempt.task_id, Wrapup.disposition)
                     .join(Wrapup, Wrapup.call_uniqueid == TaskAttempt.call_uniqueid)
                     .where(TaskAttempt.task_id.in_(task_ids))
                     .order_by(Wrapup.submitted_at, Wrapup.id)).all()
    return {task_id: disposition for task_id, disposition in rows}


def add_campaign_number(s: Session, campaign: Campaign, number: str, due_at: datetime, *,
                        note: str, on_dnc: bool) -> tuple[CallbackTask, bool]:
    """One campaign number as a task of the dialer. A number on the do-not-call list is
    created closed (``cancelled``, outcome ``do_not_call``): listed, never dialled.
    Returns ``(task, created)``; an open task of the same number (any campaign or a
    manual task, STD-090) is returned with created False and left as it is."""
    if on_dnc:
        task = CallbackTask(kind="manual", number=number, due_at=due_at, status="cancelled",
                            attempts=0, max_attempts=campaign.max_attempts, note=note,
                            last_outcome=DO_NOT_CALL, campaign_id=campaign.id)
        s.add(task)
        s.flush()
        return task, True
    task, created = repo.add_task(s, "manual", number, due_at,
                                  max_attempts=campaign.max_attempts, note=note)
    if created:
        task.campaign_id = campaign.id
        s.flush()
    return task, created


# --- do-not-call -----------------------------------------------------------------------------


def dnc_numbers(s: Session, numbers: Iterable[str]) -> set[str]:
    """Which of ``numbers`` are on the do-not-call list."""
    wanted = sorted(set(numbers))
    found: set[str] = set()
    for i in range(0, len(wanted), 500):
        found |= set(s.scalars(select(DoNotCall.number)
                               .where(DoNotCall.number.in_(wanted[i:i + 500]))))
    return found


def add_dnc(s: Session, number: str, *, note: str = "", by: str = "",
            at: datetime | None = None) -> tuple[DoNotCall, bool, list[CallbackTask]]:
    """Put a normalised number on the list (again: unchanged) and close its pending tasks
    with outcome ``do_not_call``. Returns the row, whether it is new, the closed tasks."""
    row = s.get(DoNotCall, number)
    created = row is None
    if row is None:
        row = DoNotCall(number=number, note=note, added_by=by, added_at=at or utcnow())
        try:
            with s.begin_nested():
                s.add(row)
                s.flush()
        except IntegrityError:  # added at the same moment elsewhere: the same outcome
            created = False
            row = s.get(DoNotCall, number)
            assert row is not None
    return row, created, close_dnc_tasks(s, number)


def close_dnc_tasks(s: Session, number: str | None = None) -> list[CallbackTask]:
    """Close pending tasks whose number is on the list (one number, or all): cancelled,
    outcome ``do_not_call``. A task being dialled right now finishes its attempt (it
    was claimed before the number was listed); it is never claimed again."""
    listed = select(DoNotCall.number)
    if number is not None:
        listed = listed.where(DoNotCall.number == number)
    tasks = list(s.scalars(
        update(CallbackTask)
        .where(CallbackTask.status == "pending", CallbackTask.number.in_(listed))
        .values(status="cancelled", last_outcome=DO_NOT_CALL, updated_at=utcnow())
        .returning(CallbackTask),
        execution_options={"populate_existing": True, "synchronize_session": False}))
    if tasks:
        logger.info("store: closed %d task(s) of do-not-call numbers: %s", len(tasks),
                    [t.id for t in tasks])
    return tasks


def remove_dnc(s: Session, number: str) -> bool:
    row = s.get(DoNotCall, number)
    if row is None:
        return False
    s.delete(row)
    s.flush()
    return True


def list_dnc(s: Session, *, limit: int = 1000, offset: int = 0) -> tuple[list[DoNotCall], int]:
    total = s.scalar(select(func.count()).select_from(DoNotCall)) or 0
    rows = list(s.scalars(select(DoNotCall).order_by(DoNotCall.number)
                          .limit(limit).offset(offset)))
    return rows, total


# --- wrap-up forms ---------------------------------------------------------------------------


_WRAPUPS: Table = cast(Table, Wrapup.__table__)
_ATTEMPTS: Table = cast(Table, TaskAttempt.__table__)
_ADD_WRAPUP = Prepared(_WRAPUPS.insert().values(
    call_uniqueid=bindparam("v_call"), agent_id=bindparam("v_agent"),
    task_id=select(_ATTEMPTS.c.task_id).where(_ATTEMPTS.c.call_uniqueid == bindparam("v_call"))
    .limit(1).scalar_subquery(),
    disposition=bindparam("v_disposition"), notes=bindparam("v_notes"),
    submitted_by=bindparam("v_by"), submitted_at=bindparam("v_at")).returning(_WRAPUPS.c.id))


def add_wrapup(s: Executor, call_uniqueid: str, agent_id: str, disposition: str, *,
               notes: str, by: str, at: datetime) -> int:
    """Store one wrap-up form, tied to its task if the call is an outbound attempt; the
    form's id. One prepared insert on the DBAPI cursor (the writer stores one a call,
    issue 20; store/prepared.py)."""
    row = _ADD_WRAPUP.one(s, {"v_call": call_uniqueid, "v_agent": agent_id,
                              "v_disposition": disposition, "v_notes": notes, "v_by": by,
                              "v_at": at})
    return int(row[0])


def wrapups_for_call(s: Session, call_uniqueid: str) -> list[Wrapup]:
    return list(s.scalars(select(Wrapup).where(Wrapup.call_uniqueid == call_uniqueid)
                          .order_by(Wrapup.id)))
