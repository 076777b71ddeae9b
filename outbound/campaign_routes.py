"""Campaign lists and the do-not-call list over REST (issue 16; STD-081, STD-085, STD-090).

Supervisors and admins act; QA reads. A campaign's numbers are tasks of the existing
dialer (``campaign_id`` set): the tasks API shows them too. CSV uploads are the body
of the request (``Content-Type: text/csv``), columns ``number[,name,note]`` with a
header line (docs/campaigns.md). The answer lists every bad row on one line with its
row number and reason; the good rows are imported, duplicates are folded into their
first row, a number already on an open task is reported and left alone, and a number
on the do-not-call list is imported closed (``do_not_call``), never dialled.
"""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from callflow.api.credentials import require
from callflow.api.errors import api_error
from callflow.engine import campaigns, outbound
from callflow.engine.policy import Weekday
from callflow.errors import PolicyError, StateError
from callflow.outbound import store_access
from callflow.outbound.dialer import rules_of
from callflow.outbound.store_access import service_of
from callflow.store import campaigns as campaign_store
from callflow.store import repo
from callflow.store.models import CallbackTask, Campaign, DoNotCall

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from callflow.outbound.feature import OutboundFeature

ACTING = ("supervisor", "admin")
READING = ("supervisor", "admin", "qa")
_STATUS = {"not_found": 404, "invalid_number": 422, "invalid_campaign": 422,
           "invalid_csv": 422, "duplicate_campaign": 409}
CampaignId = Path(ge=1, le=2**63 - 1)
#: Bytes a CSV row may take on average before the upload is refused unread.
CSV_BYTES_PER_ROW = 256


class CampaignCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128)
    agents: list[str] = Field(default_factory=list, max_length=500,
                              description="Agents (work numbers) who dial it; [] = any")
    queue: str = Field("", max_length=64, description="Only agents serving this queue (the "
                                                       "roster's queues) dial it; '' = any")
    days: list[Weekday] = Field(default_factory=list,
                                description="Contact days (centre time); [] = every "
                                            "calling day")
    window_start: str = Field("09:00", description="HH:MM, centre time (STD-085)")
    window_end: str = Field("21:00", description="HH:MM, centre time (STD-085)")
    max_attempts: int | None = Field(None, ge=1, le=20,
                                     description="Counted attempts per number; default "
                                                 "outbound.max_attempts")
    retry_spacing_min: float | None = Field(None, ge=0, le=60 * 24 * 30,
                                            description="Minutes between attempts; default "
                                                        "outbound.retry_spacing_min")
    caller_id_key: str = Field("", max_length=64,
                               description="Which presented number the customer sees: a "
                                           "name in outbound.list_caller_ids; '' = the "
                                           "task kind's")


class DncAdd(BaseModel):
    model_config = ConfigDict(extra="forbid")

    number: str = Field(max_length=64)
    note: str = Field("", max_length=500)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def campaign_payload(c: Campaign) -> dict[str, Any]:
    return {"id": c.id, "name": c.name, "status": c.status, "agents": list(c.agents),
            "queue": c.queue, "days": list(c.days), "window_start": c.window_start,
            "window_end": c.window_end, "max_attempts": c.max_attempts,
            "retry_spacing_min": c.retry_spacing_min, "caller_id_key": c.caller_id_key,
            "created_by": c.created_by, "created_at": _iso(c.created_at)}


def number_progress(task: CallbackTask, disposition: str | None) -> dict[str, Any]:
    """One number of a campaign: attempts, last outcome, status, the agent's disposition."""
    return {"task_id": task.id, "number": task.number, "status": task.status,
            "attempts": task.attempts, "max_attempts": task.max_attempts,
            "last_outcome": task.last_outcome, "due_at": _iso(task.due_at),
            "disposition": disposition, "note": task.note}


def _dnc_payload(row: DoNotCall) -> dict[str, Any]:
    return {"number": row.number, "note": row.note, "added_by": row.added_by,
            "added_at": _iso(row.added_at)}


def campaigns_router(feature: OutboundFeature) -> APIRouter:
    router = APIRouter(tags=["campaigns"])

    service = partial(service_of, feature)
    store_call = partial(store_access.store_call, feature, _STATUS)

    def told(tasks: list[CallbackTask]) -> None:
        if feature.dialer is not None:
            for task in tasks:
                feature.dialer.tell(task)

    async def csv_text(request: Request) -> tuple[str, int]:
        max_rows = service().settings.csv_max_rows
        limit = max_rows * CSV_BYTES_PER_ROW
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise api_error(413, "too_large", f"a CSV upload is at most {limit} bytes "
                                                  f"({max_rows} rows, CALLFLOW_CSV_MAX_ROWS)")
        try:
            return body.decode("utf-8"), max_rows
        except UnicodeDecodeError as exc:
            raise api_error(422, "invalid_csv", f"the file is not UTF-8 text (byte "
                                                f"{exc.start})") from None

    def parse(text: str, max_rows: int) -> campaigns.ImportPlan:
        try:
            return campaigns.parse_numbers_csv(text, max_rows=max_rows)
        except StateError as exc:
            raise api_error(422, exc.reason, exc.detail) from None

    # --- campaigns ------------------------------------------------------------------------

    @router.post("/api/v1/campaigns", status_code=201, summary="Create a campaign")
    async def create(request: Request, body: CampaignCreate) -> dict[str, Any]:
        principal = require(request, *ACTING)
        svc = service()
        out = svc.policy.outbound
        unknown = [a for a in body.agents if svc.roster.by_id(a) is None]
        if unknown:
            raise api_error(422, "unknown_agent", f"not in the roster: {', '.join(unknown)}")
        if body.queue and not any(body.queue in a.queues for a in svc.roster.agents):
            raise api_error(422, "unknown_queue", f"no agent in the roster serves queue "
                                                  f"{body.queue!r}: nobody would dial it")
        keys = outbound.presented_keys(svc.policy)
        if body.caller_id_key and body.caller_id_key not in keys:
            raise api_error(422, "unknown_caller_id_key",
                            f"{body.caller_id_key!r} names no number in outbound."
                            f"list_caller_ids: {', '.join(sorted(keys)) or 'none configured'}")
        fields = body.model_dump()
        fields["max_attempts"] = body.max_attempts or out.max_attempts
        fields["retry_spacing_min"] = (out.retry_spacing_min if body.retry_spacing_min is None
                                       else body.retry_spacing_min)
        try:
            campaigns.check_rules(body.days, body.window_start, body.window_end,
                                  fields["max_attempts"], fields["retry_spacing_min"])
        except StateError as exc:
            raise api_error(422, exc.reason, exc.detail) from None
        campaign = await store_call(campaign_store.add_campaign, write=True,
                                    created_by=principal.name, **fields)
        try:  # a window that never meets the calling window is refused, not kept idle
            campaigns.next_open(svc.clock.wall(), rules_of(campaign), svc.policy)
        except PolicyError as exc:
            await store_call(_delete_campaign, campaign.id, write=True)
            raise api_error(422, "invalid_campaign", str(exc)) from None
        return {"campaign": campaign_payload(campaign)}

    @router.get("/api/v1/campaigns", summary="List campaigns")
    async def list_all(request: Request) -> dict[str, Any]:
        require(request, *READING)
        rows = await store_call(campaign_store.list_campaigns)
        return {"campaigns": [campaign_payload(c) for c in rows]}

    @router.get("/api/v1/campaigns/{campaign_id}", summary="A campaign and its progress")
    async def progress(request: Request, campaign_id: int = CampaignId) -> dict[str, Any]:
        """Per number: attempts, last outcome, status and the last wrap-up disposition;
        plus counts per status."""
        require(request, *READING)
        campaign, tasks, dispositions = await store_call(_progress, campaign_id)
        counts: dict[str, int] = {}
        for task in tasks:
            key = task.last_outcome if task.last_outcome == "do_not_call" else task.status
            counts[key] = counts.get(key, 0) + 1
        svc = service()
        rules = rules_of(campaign)
        return {"campaign": campaign_payload(campaign),
                "open_now": campaigns.is_open(svc.clock.wall(), rules, svc.policy),
                "counts": counts,
                "numbers": [number_progress(t, dispositions.get(t.id)) for t in tasks]}

    @router.post("/api/v1/campaigns/{campaign_id}/numbers", summary="Import numbers (CSV)")
    async def import_numbers(request: Request, campaign_id: int = CampaignId
                             ) -> dict[str, Any]:
        """CSV body, header ``number[,name,note]``. Bad rows come back one line each
        (``row N: reason``); everything else is imported in one transaction."""
        principal = require(request, *ACTING)
        text, max_rows = await csv_text(request)
        plan = parse(text, max_rows)
        svc = service()
        report: dict[str, Any] = await store_call(_import, campaign_id, plan,
                                                  svc.clock.wall(), svc.policy, write=True)
        told(report.pop("tasks"))
        await store_call(repo.audit, principal.name, "campaign_import", svc.clock.wall(),
                         target=f"campaign:{campaign_id}", write=True,
                         detail={"imported": report["imported"],
                                 "bad_rows": len(report["bad_rows"])})
        return report

    @router.post("/api/v1/campaigns/{campaign_id}/{action}", summary="Pause or resume")
    async def pause_resume(request: Request, action: Literal["pause", "resume"],
                           campaign_id: int = CampaignId) -> dict[str, Any]:
        """Paused: none of its numbers is claimed (one being dialled finishes its attempt)."""
        principal = require(request, *ACTING)
        status = "paused" if action == "pause" else "active"
        campaign = await store_call(campaign_store.set_campaign_status, campaign_id, status,
                                    write=True)
        await store_call(repo.audit, principal.name, f"campaign_{action}",
                         service().clock.wall(), target=f"campaign:{campaign_id}", write=True)
        return {"campaign": campaign_payload(campaign)}

    # --- do-not-call ----------------------------------------------------------------------

    @router.get("/api/v1/dnc", summary="The do-not-call list")
    async def dnc_list(request: Request, limit: int = 1000, offset: int = 0
                       ) -> dict[str, Any]:
        require(request, *READING)
        if not (1 <= limit <= 5000 and offset >= 0):
            raise api_error(422, "bad_page", "limit 1..5000, offset >= 0")
        rows, total = await store_call(campaign_store.list_dnc, limit=limit, offset=offset)
        return {"total": total, "numbers": [_dnc_payload(r) for r in rows]}

    @router.post("/api/v1/dnc", status_code=201, summary="Add a number to the list")
    async def dnc_add(request: Request, body: DncAdd) -> dict[str, Any]:
        """The number is never dialled again; its pending tasks are closed ``do_not_call``."""
        principal = require(request, *ACTING)
        try:
            number = outbound.normalize_number(body.number)
        except StateError as exc:
            raise api_error(422, exc.reason, exc.detail) from None
        row, created, closed = await store_call(
            campaign_store.add_dnc, number, note=body.note, by=principal.name,
            at=service().clock.wall(), write=True)
        told(closed)
        await store_call(repo.audit, principal.name, "dnc_add", service().clock.wall(),
                         target=f"number:{number}", write=True)
        return {"number": _dnc_payload(row), "created": created,
                "closed_tasks": [t.id for t in closed]}

    @router.post("/api/v1/dnc/import", summary="Add numbers to the list (CSV)")
    async def dnc_import(request: Request) -> dict[str, Any]:
        principal = require(request, *ACTING)
        text, max_rows = await csv_text(request)
        plan = parse(text, max_rows)
        added, closed = await store_call(_dnc_import, plan, principal.name,
                                         service().clock.wall(), write=True)
        told(closed)
        await store_call(repo.audit, principal.name, "dnc_import", service().clock.wall(),
                         target="dnc", write=True, detail={"added": added})
        return {"added": added, "rows": len(plan.rows),
                "bad_rows": [p.line() for p in plan.problems],
                "duplicates": [p.line() for p in plan.duplicates],
                "closed_tasks": [t.id for t in closed]}

    @router.delete("/api/v1/dnc/{number}", summary="Take a number off the list")
    async def dnc_remove(request: Request, number: str = Path(max_length=64)
                         ) -> dict[str, Any]:
        """Closed tasks stay closed; new tasks for the number may be dialled again."""
        principal = require(request, *ACTING)
        try:
            digits = outbound.normalize_number(number)
        except StateError as exc:
            raise api_error(422, exc.reason, exc.detail) from None
        removed = await store_call(campaign_store.remove_dnc, digits, write=True)
        if not removed:
            raise api_error(404, "not_found", f"{digits} is not on the do-not-call list")
        await store_call(repo.audit, principal.name, "dnc_remove", service().clock.wall(),
                         target=f"number:{digits}", write=True)
        return {"removed": digits}

    return router


def _delete_campaign(s: Session, campaign_id: int) -> None:
    campaign = campaign_store.get_campaign(s, campaign_id)
    if campaign is not None:
        s.delete(campaign)


def _progress(s: Session, campaign_id: int
              ) -> tuple[Campaign, list[CallbackTask], dict[int, str]]:
    campaign = campaign_store.get_campaign(s, campaign_id)
    if campaign is None:
        raise StateError("not_found", f"no campaign {campaign_id}")
    tasks = campaign_store.campaign_tasks(s, campaign_id)
    return campaign, tasks, campaign_store.last_dispositions(s, [t.id for t in tasks])


def _import(s: Session, campaign_id: int, plan: campaigns.ImportPlan, now: datetime,
            policy: Any) -> dict[str, Any]:
    """The good rows as tasks, in one transaction: all or (on a database error) none."""
    campaign = campaign_store.get_campaign(s, campaign_id)
    if campaign is None:
        raise StateError("not_found", f"no campaign {campaign_id}")
    due = campaigns.next_open(now, rules_of(campaign), policy)
    listed = campaign_store.dnc_numbers(s, (r.number for r in plan.rows))
    tasks: list[CallbackTask] = []
    already: list[str] = []
    dnc: list[str] = []
    for row in plan.rows:
        note = " ".join(x for x in (row.name, row.note) if x)
        task, created = campaign_store.add_campaign_number(
            s, campaign, row.number, due, note=note, on_dnc=row.number in listed)
        if not created:
            already.append(f"row {row.row}: {row.number} already has an open task "
                           f"#{task.id}; not added")
            continue
        tasks.append(task)
        if row.number in listed:
            dnc.append(f"row {row.row}: {row.number} is on the do-not-call list; "
                       "imported closed, never dialled")
    return {"imported": len(tasks), "rows": len(plan.rows) + len(plan.problems)
            + len(plan.duplicates),
            "bad_rows": [p.line() for p in plan.problems] + already,
            "duplicates": [p.line() for p in plan.duplicates], "do_not_call": dnc,
            "due_at": due.isoformat(), "tasks": tasks,
            "task_ids": [t.id for t in tasks]}


def _dnc_import(s: Session, plan: campaigns.ImportPlan, by: str, now: datetime
                ) -> tuple[int, list[CallbackTask]]:
    added = 0
    closed: list[CallbackTask] = []
    for row in plan.rows:
        _, created, tasks = campaign_store.add_dnc(s, row.number, note=row.note or row.name,
                                                   by=by, at=now)
        added += created
        closed += tasks
    return added, closed
