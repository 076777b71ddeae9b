"""The morning digest (STD-121): the previous day's flagged calls and QA findings.

Each morning team leads go through the errors of the previous day's inbound and outbound
calls. The digest puts the two sources of "errors" side by side: the recordings of the
day that the store flagged (late answer, hold breach, release violation, special call,
transfer: why QA should listen) and the QA reviews written that day, with the
unqualified ones and every penalty. Pure: plain rows in, a ``Digest`` out, shown as
JSON or as one flat CSV a spreadsheet opens (a ``kind`` column says which list a row
belongs to). Times in the CSV are the centre's local time, as the team leads read them.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from callflow.engine.rules import enforces
from callflow.recordings.scoring import UNQUALIFYING, ZERO_SCORE


@dataclass(frozen=True)
class FlaggedCall:
    """A recording of the day with at least one flag, and what became of the call."""

    recording_id: int
    call_id: str
    direction: str
    agent_id: str | None
    number: str
    started_at: datetime
    duration_s: float
    flags: tuple[str, ...]
    outcome: str | None = None
    team: str | None = None
    qa_selected: bool = False


@dataclass(frozen=True)
class Finding:
    """A QA review written on the day, with the call it judged."""

    review_id: int
    recording_id: int
    reviewer: str
    at: datetime
    total: int
    unqualified: bool
    penalties: Sequence[Mapping[str, Any]] = ()
    notes: str = ""
    agent_id: str | None = None
    team: str | None = None
    number: str = ""
    direction: str = ""
    call_id: str = ""
    call_started_at: datetime | None = None

    @property
    def unqualified_because(self) -> tuple[str, ...]:
        """Why unqualified, from the stored penalties (the review keeps only the flag)."""
        codes = {str(p.get("code", "")) for p in self.penalties}
        return tuple(sorted(codes & (UNQUALIFYING | {ZERO_SCORE})))


@dataclass(frozen=True)
class Digest:
    day: date
    flagged: tuple[FlaggedCall, ...]
    findings: tuple[Finding, ...]
    team: str | None = None
    by_flag: dict[str, int] = field(default_factory=dict)
    by_penalty: dict[str, int] = field(default_factory=dict)

    @property
    def unqualified(self) -> tuple[Finding, ...]:
        """The unqualifying reviews (each finding is shown to the team lead)."""
        return tuple(f for f in self.findings if f.unqualified)

    @property
    def unqualified_calls(self) -> int:
        """Unqualified calls, counted per call (a call reviewed twice is one call, judged by
        its latest review of the day): the KPI, not the number of reviews."""
        latest: dict[int, bool] = {}
        for f in self.findings:
            latest[f.recording_id] = f.unqualified
        return sum(latest.values())


@enforces("STD-121")
def build_digest(day: date, flagged: Iterable[FlaggedCall], findings: Iterable[Finding],
                 *, team: str | None = None) -> Digest:
    """The day's digest; unflagged recordings are dropped, ``team`` keeps one team's calls.

    Calls in start order, findings in the order they were written; ``by_flag`` and
    ``by_penalty`` count flags and penalty occurrences, the lines a team lead starts from."""
    calls = sorted((c for c in flagged if c.flags and (team is None or c.team == team)),
                   key=lambda c: (c.started_at, c.recording_id))
    found = sorted((f for f in findings if team is None or f.team == team),
                   key=lambda f: (f.at, f.review_id))
    by_flag: dict[str, int] = {}
    for call in calls:
        for flag in call.flags:
            by_flag[flag] = by_flag.get(flag, 0) + 1
    by_penalty: dict[str, int] = {}
    for finding in found:
        for penalty in finding.penalties:
            code = str(penalty.get("code", ""))
            by_penalty[code] = by_penalty.get(code, 0) + int(penalty.get("count", 1) or 0)
    return Digest(day, tuple(calls), tuple(found), team, dict(sorted(by_flag.items())),
                  dict(sorted(by_penalty.items())))


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def _penalties(finding: Finding) -> list[dict[str, Any]]:
    return [dict(p) for p in finding.penalties]


def as_dict(digest: Digest) -> dict[str, Any]:
    """The digest as the API answers it (instants in UTC, like every other route)."""
    return {
        "day": digest.day.isoformat(), "team": digest.team,
        "flagged": [{"recording_id": c.recording_id, "call_id": c.call_id,
                     "direction": c.direction, "agent_id": c.agent_id, "team": c.team,
                     "number": c.number, "started_at": _iso(c.started_at),
                     "duration_s": c.duration_s, "flags": list(c.flags),
                     "outcome": c.outcome, "qa_selected": c.qa_selected}
                    for c in digest.flagged],
        "reviews": [{"review_id": f.review_id, "recording_id": f.recording_id,
                     "reviewer": f.reviewer, "at": _iso(f.at), "agent_id": f.agent_id,
                     "team": f.team, "number": f.number, "direction": f.direction,
                     "call_id": f.call_id, "call_started_at": _iso(f.call_started_at),
                     "total": f.total, "unqualified": f.unqualified,
                     "unqualified_because": list(f.unqualified_because),
                     "penalties": _penalties(f), "notes": f.notes}
                    for f in digest.findings],
        "unqualified": [f.review_id for f in digest.unqualified],
        "counts": {"flagged": len(digest.flagged), "reviews": len(digest.findings),
                   "unqualified": digest.unqualified_calls, "by_flag": digest.by_flag,
                   "by_penalty": digest.by_penalty},
    }


CSV_COLUMNS = ("kind", "day", "recording_id", "call_id", "direction", "agent_id", "team",
               "number", "call_started", "duration_s", "outcome", "flags", "review_id",
               "reviewer", "reviewed_at", "total", "unqualified", "penalties", "notes")


def to_csv(digest: Digest, zone: ZoneInfo) -> str:
    """One flat table: ``kind`` = flagged (a flagged call) or review (a QA finding).

    Penalties read ``code x count (-points)`` joined by ``; ``; times are local ISO."""
    def local(value: datetime | None) -> str:
        return "" if value is None else value.astimezone(zone).isoformat(timespec="seconds")

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    day = digest.day.isoformat()
    for c in digest.flagged:
        writer.writerow(["flagged", day, c.recording_id, c.call_id, c.direction,
                         c.agent_id or "", c.team or "", c.number, local(c.started_at),
                         f"{c.duration_s:.1f}", c.outcome or "", " ".join(c.flags),
                         "", "", "", "", "", "", ""])
    for f in digest.findings:
        penalties = "; ".join(
            f"{p.get('code', '')} x{p.get('count', 1)} (-{p.get('deducted', 0)})"
            for p in f.penalties)
        writer.writerow(["review", day, f.recording_id, f.call_id, f.direction, f.agent_id or "",
                         f.team or "", f.number, local(f.call_started_at), "", "", "",
                         f.review_id, f.reviewer, local(f.at), f.total,
                         "yes" if f.unqualified else "no", penalties, f.notes])
    return out.getvalue()


def file_name(digest: Digest) -> str:
    team = f"-{digest.team}" if digest.team else ""
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in team)
    return f"qa-digest-{digest.day.isoformat()}{safe}.csv"
