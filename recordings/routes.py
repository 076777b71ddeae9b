"""Recordings over HTTP: list, detail, play, review, sample, totals, digest — all audited.

Security rule (STD-078): recordings need a supervisor-level role (supervisor, qa,
admin); agents never. Every access — list, detail, play, review, sample, totals, digest,
and every refused attempt whose principal is known — is written to ``audit_log`` with
the actor, the action (``recording.<what>`` or ``recording.denied``), the target
``recording:<id>`` (``recording:*`` for a list, a sample run, totals or a digest) and a
detail. The audit row is written before the answer is sent, so no access goes
unrecorded.

Routes under ``/api/v1/recordings``:

* ``GET ""`` ``?agent_id&number&since&until&qa=all|selected|reviewed&limit<=500``
* ``GET /scoring-sheet`` — criteria and penalties (STD-116, STD-119)
* ``GET /{id}`` — the item, its reviews and its access trail
* ``GET /{id}/audio`` — the WAV; 410 once retention purged it
* ``POST /{id}/review`` ``{"scores": {code: int}, "penalties": [{"code", "count"}],
  "notes"}`` — roles qa and supervisor
* ``POST /sample?month=YYYY-MM`` — the month's QA sample (STD-115)
* ``GET /qa-totals?month=YYYY-MM`` — the month's totals per agent (STD-117) against the
  monitoring minimum (STD-115)
* ``GET /digest?day=YYYY-MM-DD&team&format=json|csv`` — the day's flagged calls and QA
  findings (STD-121); the day defaults to yesterday in the centre's time zone

Errors: ``{"detail": {"error": reason, "message": ...}}``.
"""

from __future__ import annotations

import calendar
import re
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Body, Request
from fastapi.responses import FileResponse, PlainTextResponse

from callflow.api.auth import Principal
from callflow.api.credentials import require
from callflow.api.errors import api_error
from callflow.api.privacy import RECORDING_ROLES
from callflow.recordings import digest
from callflow.recordings.digest import Finding, FlaggedCall, build_digest
from callflow.recordings.sampling import Candidate, SampleRules, select_month
from callflow.recordings.scoring import (
    MonthRecording,
    MonthReview,
    ReviewError,
    Sheet,
    agent_month_totals,
    score_review,
)
from callflow.store import repo
from callflow.store.db import Store
from callflow.store.models import QaReview, Recording
from callflow.store.verdicts import breached_calls

if TYPE_CHECKING:
    from callflow.feature import FeatureServices
    from callflow.recordings.feature import RecordingsFeature

#: The page (a plain page in ``static/``, served by ``callflow.api.pages``): log-in through
#: ``POST /api/v1/session``, then this API with the bearer token; the audio is fetched with
#: the token into a blob URL, so no token ever appears in a URL.
PAGE_PATH = "/recordings"
STATIC_DIR = Path(__file__).resolve().parent / "static"
VIEW_ROLES = RECORDING_ROLES  # the one list (api/privacy.py)
REVIEW_ROLES = ("qa", "supervisor")
MAX_LIMIT = 500
QA_FILTERS = ("all", "selected", "reviewed")
MONTH = re.compile(r"\d{4}-\d{2}")
DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def item(rec: Recording, reviewed: bool, outcome: str | None) -> dict[str, Any]:
    return {"id": rec.id, "call_id": rec.call_uniqueid, "direction": rec.direction,
            "agent_id": rec.agent_id, "number": rec.number,
            "started_at": _iso(rec.started_at), "ended_at": _iso(rec.ended_at),
            "duration_s": rec.duration_s, "bytes": rec.bytes, "flags": list(rec.flags or []),
            "qa_selected": rec.qa_selected, "qa_reason": rec.qa_reason, "reviewed": reviewed,
            "outcome": outcome, "purged": rec.purged_at is not None}


def review_view(review: QaReview) -> dict[str, Any]:
    return {"id": review.id, "recording_id": review.recording_id,
            "reviewer": review.reviewer, "at": _iso(review.at), "scores": review.scores,
            "penalties": review.penalties, "total": review.total,
            "unqualified": review.unqualified, "notes": review.notes}


def recordings_router(feature: RecordingsFeature) -> APIRouter:
    router = APIRouter(prefix="/api/v1/recordings", tags=["recordings"])

    def service() -> FeatureServices:
        try:
            return feature.service
        except Exception:
            raise api_error(503, "not_ready", "the service is starting") from None

    def store() -> Store:
        return service().store

    def now() -> datetime:
        return service().clock.wall().astimezone(UTC)

    def audit(principal: Principal, action: str, target: str, **detail: Any) -> None:
        store().run(repo.audit, principal.name, action, now(), target=target, detail=detail)

    def allow(request: Request, wanted: str, target: str, roles: tuple[str, ...]) -> Principal:
        """The principal, or 401 / 403; a refused known principal is audited."""
        principal = require(request)
        if principal.role not in roles:
            audit(principal, "recording.denied", target, wanted=wanted, role=principal.role)
            raise api_error(403, "forbidden",
                         f"{principal.role} may not {wanted} recordings "
                         f"(needs {' or '.join(roles)})")
        return principal

    def zone() -> ZoneInfo:
        return ZoneInfo(service().policy.calendar.timezone)

    def parse_instant(raw: str | None, name: str, end: bool) -> datetime | None:
        """An ISO date (the centre's local day; ``until`` includes it) or date-time."""
        if raw is None or raw == "":
            return None
        try:
            if len(raw) == 10:
                day = date.fromisoformat(raw)
                start = datetime.combine(day, time(0), zone())
                return start + timedelta(days=1) if end else start
            value = datetime.fromisoformat(raw)
        except ValueError:
            raise api_error(422, "bad_date", f"{name}: not an ISO date or date-time: {raw!r}") \
                from None
        return value if value.tzinfo is not None else value.replace(tzinfo=zone())

    def month_bounds(month: str) -> tuple[datetime, datetime]:
        """``YYYY-MM`` -> the month's local midnights ``[start, end)`` (DST-safe)."""
        try:
            if not MONTH.fullmatch(month):
                raise ValueError(month)
            year, mon = int(month[:4]), int(month[5:])
            first = date(year, mon, 1)
        except ValueError:
            raise api_error(422, "bad_month", f"month must be YYYY-MM, got {month!r}") from None
        last = first + timedelta(days=calendar.monthrange(year, mon)[1])
        return datetime.combine(first, time(0), zone()), datetime.combine(last, time(0), zone())

    def local_today() -> date:
        return now().astimezone(zone()).date()

    def parse_id(raw: str) -> int:
        if not raw.isdigit() or len(raw) > 12:
            raise api_error(422, "bad_id", f"a recording id is a positive number, got {raw!r}")
        return int(raw)

    def load(recording_id: int) -> Recording:
        rec: Recording | None = store().read(repo.get_recording, recording_id)
        if rec is None:
            raise api_error(404, "not_found", f"no recording {recording_id}")
        return rec

    def items(rows: list[Recording]) -> list[dict[str, Any]]:
        ids = [r.id for r in rows]
        reviews = store().read(repo.reviews_for, ids) if ids else {}
        calls = store().read(repo.calls_by_uniqueid, [r.call_uniqueid for r in rows]) \
            if rows else {}
        return [item(r, bool(reviews.get(r.id)),
                     calls[r.call_uniqueid].outcome if r.call_uniqueid in calls else None)
                for r in rows]

    @router.get("", summary="List recordings (STD-114): by agent, number, period, QA state")
    def list_recordings(request: Request, agent_id: str | None = None,
                        number: str | None = None, since: str | None = None,
                        until: str | None = None, qa: str = "all",
                        limit: str = "100") -> dict[str, Any]:
        principal = allow(request, "list", "recording:*", VIEW_ROLES)
        if qa not in QA_FILTERS:
            raise api_error(422, "bad_qa", f"qa must be one of {', '.join(QA_FILTERS)}")
        if not limit.isdigit() or not 1 <= int(limit) <= MAX_LIMIT:
            raise api_error(422, "bad_limit", f"limit must be 1..{MAX_LIMIT}")
        start = parse_instant(since, "since", end=False)
        end = parse_instant(until, "until", end=True)
        rows = store().read(repo.list_recordings, agent_id=agent_id or None,
                            number=number or None, since=start, until=end, qa=qa,
                            limit=int(limit))
        audit(principal, "recording.list", "recording:*", count=len(rows),
              ids=[r.id for r in rows][:100],
              filters={k: v for k, v in (("agent_id", agent_id), ("number", number),
                                         ("since", since), ("until", until), ("qa", qa))
                       if v})
        return {"recordings": items(rows)}

    @router.get("/scoring-sheet", summary="The QA scoring sheet (STD-116, STD-119)")
    def scoring_sheet(request: Request) -> dict[str, Any]:
        allow(request, "see the scoring sheet of", "recording:*", VIEW_ROLES)
        return Sheet.from_policy(service().policy).as_dict()

    @router.post("/sample", summary="Select the month's QA sample (STD-115)")
    def sample(request: Request, month: str = "") -> dict[str, Any]:
        principal = allow(request, "sample", "recording:*", VIEW_ROLES)
        start, end = month_bounds(month)
        qa = service().policy.qa
        rows = store().read(repo.recordings_between, start, end)
        breached = store().read(breached_calls, [r.call_uniqueid for r in rows])
        picks = select_month(
            [Candidate(r.id, r.agent_id, r.started_at, tuple(r.flags or ()), r.qa_selected,
                       tuple(breached.get(r.call_uniqueid, ())))
             for r in rows if r.purged_at is None],
            start, end, SampleRules(qa.min_monitored_per_agent_month, qa.include_flagged))
        new = store().run(repo.select_for_qa, {p.id: p.reason for p in picks})
        audit(principal, "recording.sample", "recording:*", month=month, picked=len(picks),
              newly_selected=new)
        return {"month": month, "selected": [{"id": p.id, "agent_id": p.agent_id,
                                              "reason": p.reason} for p in picks]}

    @router.get("/qa-totals", summary="The month's QA totals per agent (STD-117, STD-115)")
    def qa_totals(request: Request, month: str = "") -> dict[str, Any]:
        principal = allow(request, "see the QA totals of", "recording:*", VIEW_ROLES)
        month = month or local_today().strftime("%Y-%m")
        start, end = month_bounds(month)
        recs = store().read(repo.recordings_between, start, end)
        pairs = store().read(repo.reviews_of_recordings_between, start, end)
        minimum = service().policy.qa.min_monitored_per_agent_month
        rows = agent_month_totals(
            [MonthRecording(r.id, r.agent_id, r.qa_selected) for r in recs],
            [MonthReview(rev.recording_id, rec.agent_id, rev.total, rev.unqualified,
                         list(rev.penalties or [])) for rev, rec in pairs],
            minimum)
        agents = {a.agent_id: a for a in store().read(repo.list_agents, active_only=False)}
        audit(principal, "recording.totals", "recording:*", month=month, agents=len(rows),
              reviews=len(pairs))
        return {"month": month, "minimum": minimum,
                "agents": [row.as_dict() | {
                    "name": agents[row.agent_id].name if row.agent_id in agents else "",
                    "team": agents[row.agent_id].team if row.agent_id in agents else None}
                    for row in rows]}

    @router.get("/digest", summary="The previous day's flags and QA findings (STD-121)")
    def morning_digest(request: Request, day: str | None = None, team: str | None = None,
                       format: str = "json") -> Any:
        principal = allow(request, "see the QA digest of", "recording:*", VIEW_ROLES)
        if format not in ("json", "csv"):
            raise api_error(422, "bad_format", "format must be json or csv")
        if not day:
            the_day = local_today() - timedelta(days=1)
        else:
            try:
                if not DAY.fullmatch(day):
                    raise ValueError(day)
                the_day = date.fromisoformat(day)
            except ValueError:
                raise api_error(422, "bad_day", f"day must be YYYY-MM-DD, got {day!r}") from None
        start = datetime.combine(the_day, time(0), zone())
        end = datetime.combine(the_day + timedelta(days=1), time(0), zone())
        recs = store().read(repo.recordings_between, start, end)
        flagged_recs = [r for r in recs if r.flags]
        calls = store().read(repo.calls_by_uniqueid, [r.call_uniqueid for r in flagged_recs]) \
            if flagged_recs else {}
        pairs = store().read(repo.reviews_written_between, start, end)
        teams = {a.agent_id: a.team for a in store().read(repo.list_agents, active_only=False)}
        built = build_digest(
            the_day,
            [FlaggedCall(recording_id=r.id, call_id=r.call_uniqueid, direction=r.direction,
                         agent_id=r.agent_id, number=r.number, started_at=r.started_at,
                         duration_s=r.duration_s, flags=tuple(r.flags or ()),
                         outcome=calls[r.call_uniqueid].outcome
                         if r.call_uniqueid in calls else None,
                         team=teams.get(r.agent_id or ""), qa_selected=r.qa_selected)
             for r in flagged_recs],
            [Finding(review_id=rev.id, recording_id=rev.recording_id, reviewer=rev.reviewer,
                     at=rev.at, total=rev.total, unqualified=rev.unqualified,
                     penalties=list(rev.penalties or []), notes=rev.notes,
                     agent_id=rec.agent_id, team=teams.get(rec.agent_id or ""),
                     number=rec.number, direction=rec.direction, call_id=rec.call_uniqueid,
                     call_started_at=rec.started_at)
             for rev, rec in pairs],
            team=team or None)
        audit(principal, "recording.digest", "recording:*", day=the_day.isoformat(),
              team=team or None, format=format, flagged=len(built.flagged),
              reviews=len(built.findings), ids=[c.recording_id for c in built.flagged][:100])
        if format == "csv":
            return PlainTextResponse(digest.to_csv(built, zone()), media_type="text/csv",
                                     headers={"Content-Disposition":
                                              f'attachment; filename="{digest.file_name(built)}"'})
        return digest.as_dict(built)

    @router.get("/{recording_id}", summary="One recording, its reviews and who accessed it")
    def detail(request: Request, recording_id: str) -> dict[str, Any]:
        rid = parse_id(recording_id)
        target = f"recording:{rid}"
        principal = allow(request, "see", target, VIEW_ROLES)
        rec = load(rid)
        audit(principal, "recording.detail", target)
        out = items([rec])[0]
        out["path"] = rec.path
        out["reviews"] = [review_view(r) for r in store().read(repo.reviews_for, [rid])[rid]]
        out["access"] = [{"at": _iso(e.at), "actor": e.actor, "action": e.action,
                          "detail": e.detail}
                         for e in store().read(repo.audit_entries, target=target, limit=200)]
        return out

    @router.get("/{recording_id}/audio", summary="The recording's WAV (audited)",
                response_class=FileResponse)
    def audio(request: Request, recording_id: str) -> FileResponse:
        rid = parse_id(recording_id)
        target = f"recording:{rid}"
        principal = allow(request, "play", target, VIEW_ROLES)
        rec = load(rid)
        if rec.purged_at is not None:
            audit(principal, "recording.play", target, refused="purged")
            raise api_error(410, "purged", f"recording {rid} was deleted by retention on "
                                        f"{rec.purged_at.date().isoformat()}")
        path = Path(rec.path)
        if not path.is_file():
            audit(principal, "recording.play", target, refused="file_missing")
            raise api_error(404, "file_missing", f"the file of recording {rid} is missing")
        audit(principal, "recording.play", target, bytes=path.stat().st_size)
        return FileResponse(path, media_type="audio/wav", filename=f"recording-{rid}.wav")

    @router.post("/{recording_id}/review", summary="Score a recording (STD-116, STD-119)")
    def review(request: Request, recording_id: str,
               body: dict[str, Any] = Body(...)) -> dict[str, Any]:  # noqa: B008
        rid = parse_id(recording_id)
        target = f"recording:{rid}"
        principal = allow(request, "review", target, REVIEW_ROLES)
        load(rid)
        scores, penalties, notes = (body.get("scores"), body.get("penalties", []),
                                    body.get("notes", ""))
        if not isinstance(scores, dict) or not isinstance(penalties, list) \
                or not all(isinstance(p, dict) for p in penalties) \
                or not isinstance(notes, str) or len(notes) > 10000 \
                or set(body) - {"scores", "penalties", "notes"}:
            raise api_error(422, "bad_review", 'body: {"scores": {code: points}, '
                                            '"penalties": [{"code", "count"}], "notes": text}')
        try:
            scored = score_review(Sheet.from_policy(service().policy), scores, penalties)
        except ReviewError as exc:
            raise api_error(422, exc.reason, exc.message) from None
        stored = store().run(repo.add_review, rid, principal.name, now(),
                             scores=scored.scores, penalties=scored.penalties_json(),
                             total=scored.total, unqualified=scored.unqualified, notes=notes)
        audit(principal, "recording.review", target, review_id=stored.id, total=scored.total,
              unqualified=scored.unqualified)
        return review_view(stored) | {"score": scored.score, "deducted": scored.deducted,
                                      "unqualified_because": list(scored.unqualified_because)}

    return router
