"""Campaign lists and the do-not-call list: their rules, pure (STD-081, STD-085, STD-090).

A campaign is a list of numbers the existing dialer dials (``outbound/dialer.py``): each
number becomes one task (kind ``manual``, ``campaign_id`` set) and goes through the
same claim, attempt machine and retry ladder as every other task. What a campaign adds
is decided here, with wall times passed in (no clock, no store):

* **Contact window** (STD-085): the campaign's own days and hours, in the centre's time
  zone (``calendar.timezone``), *inside* the Policy's calling window and calling days
  (``engine/outbound.py``: holidays and the 09:00-21:00 window always hold). A due task
  of a campaign whose window is closed, or that a supervisor paused, is simply not
  claimed (the dialer passes such campaigns to the claim as skipped); it stays due and
  is dialled when the window opens.
* **Attempts per number** (STD-081 ASSUMPTION): the campaign's ``max_attempts`` is the
  task's ``max_attempts``: the core's ``decide`` never lets a task go past it.
* **Retry spacing**: after ``decide`` says "again at t", a campaign task is due at the
  later of t and ``now + retry_spacing_min``, moved into the campaign's window
  (``campaign_retry_at``). ``decide`` itself is not changed.
* **Do-not-call**: a number on the list is never claimed (the claim query skips it), a
  pending task of it is closed ``cancelled`` with outcome ``do_not_call``, and an
  imported row for it is created closed the same way, so the list shows why.
* **CSV import** (``parse_numbers_csv``): documented columns, one line per bad row with
  its row number and reason, duplicates folded into the first row, numbers checked by
  ``normalize_number``; the good rows are imported, nothing silently dropped.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta

from callflow.engine import outbound
from callflow.engine.policy import WEEKDAYS, Policy
from callflow.engine.rules import enforces
from callflow.errors import PolicyError, StateError

#: CSV columns: ``number`` is required, the others optional (docs/campaigns.md).
CSV_COLUMNS = ("number", "name", "note")
MAX_NOTE_CHARS = 500
_MAX_DAYS_AHEAD = 370


@dataclass(frozen=True)
class CampaignRules:
    """What the dialer needs of one campaign (``store.models.Campaign`` as values)."""

    campaign_id: int
    days: tuple[str, ...]  # weekdays "mon".."sun"; empty = every calling day
    window_start: time
    window_end: time
    max_attempts: int
    retry_spacing_min: float
    agents: tuple[str, ...] = ()  # empty = any free agent
    active: bool = True
    queue: str = ""  # only agents serving this queue (roster queues); empty = any
    #: which presented number (a key of ``outbound.caller_ids`` or of the outbound trunk's
    #: per-kind numbers) the customer sees; empty = the task kind's
    caller_id_key: str = ""


def parse_clock(value: str, what: str) -> time:
    """``HH:MM`` -> time; a clear ``StateError('invalid_campaign')`` otherwise."""
    try:
        return time.fromisoformat(value)
    except (TypeError, ValueError):
        raise StateError("invalid_campaign", f"{what} must be HH:MM, got {value!r}") from None


def check_rules(days: Sequence[str], window_start: str, window_end: str, max_attempts: int,
                retry_spacing_min: float) -> None:
    """Refuse a campaign that could never be dialled or makes no sense, in words."""
    unknown = sorted(set(days) - set(WEEKDAYS))
    if unknown:
        raise StateError("invalid_campaign", f"unknown days {', '.join(unknown)}; use "
                         + ", ".join(WEEKDAYS))
    if parse_clock(window_end, "window_end") <= parse_clock(window_start, "window_start"):
        raise StateError("invalid_campaign", "window_end must be after window_start")
    if max_attempts < 1:
        raise StateError("invalid_campaign", "max_attempts must be at least 1")
    if retry_spacing_min < 0:
        raise StateError("invalid_campaign", "retry_spacing_min must be >= 0")


def _weekday(day: datetime) -> str:
    return WEEKDAYS[day.weekday()]


def _bounds(day: datetime, rules: CampaignRules, policy: Policy
            ) -> tuple[datetime, datetime] | None:
    """The campaign's window on the local calendar day of ``day``, cut to STD-085's."""
    local_day = day.date()
    if rules.days and WEEKDAYS[local_day.weekday()] not in rules.days:
        return None
    if not outbound.is_calling_day(local_day, policy):
        return None
    tz = day.tzinfo
    start = max(rules.window_start, policy.outbound.calling_window_start)
    end = min(rules.window_end, policy.outbound.calling_window_end)
    if end <= start:
        return None
    return datetime.combine(local_day, start, tzinfo=tz), datetime.combine(local_day, end,
                                                                           tzinfo=tz)


@enforces("STD-085", policy=("outbound.calling_window_start", "outbound.calling_window_end"))
def is_open(t: datetime, rules: CampaignRules, policy: Policy) -> bool:
    """May the campaign's numbers be dialled at ``t``? Active, its day, its hours, and the
    Policy's calling window (STD-085)."""
    if not rules.active:
        return False
    local = t.astimezone(outbound.zone(policy))
    bounds = _bounds(local, rules, policy)
    return bounds is not None and bounds[0] <= local < bounds[1]


def next_open(t: datetime, rules: CampaignRules, policy: Policy) -> datetime:
    """The earliest instant >= ``t`` inside the campaign's window (paused or not)."""
    local = t.astimezone(outbound.zone(policy))
    for offset in range(_MAX_DAYS_AHEAD):
        bounds = _bounds(local + timedelta(days=offset), rules, policy)
        if bounds is None:
            continue
        opens, closes = bounds
        if offset == 0:
            if local >= closes:
                continue
            if local >= opens:
                return t
        return opens.astimezone(t.tzinfo)
    raise PolicyError(f"campaign {rules.campaign_id}: its days and hours never meet the "
                      "calling window within a year")


def campaign_retry_at(retry_at: datetime, now: datetime, rules: CampaignRules,
                      policy: Policy) -> datetime:
    """The next attempt of a campaign number: the ladder's time, no sooner than the
    campaign's spacing, inside the campaign's window."""
    spaced = now + timedelta(minutes=rules.retry_spacing_min)
    return next_open(max(retry_at, spaced), rules, policy)


def skipped_for(agent_id: str | None, campaigns: list[CampaignRules], now: datetime,
                policy: Policy, agent_queues: Sequence[str] = ()) -> frozenset[int]:
    """Campaigns whose tasks must not be claimed now (for ``agent_id``, who serves
    ``agent_queues``, or for anyone): paused, outside their window, or dialled by other
    agents only (named agents, or the campaign's queue)."""
    return frozenset(c.campaign_id for c in campaigns
                     if not is_open(now, c, policy)
                     or (agent_id is not None and not _dials(c, agent_id, agent_queues)))


def _dials(campaign: CampaignRules, agent_id: str, agent_queues: Sequence[str]) -> bool:
    if campaign.agents and agent_id not in campaign.agents:
        return False
    return not campaign.queue or campaign.queue in agent_queues


# --- CSV import -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportRow:
    """One good row: its row number in the file (the header is row 1)."""

    row: int
    number: str
    name: str = ""
    note: str = ""


@dataclass(frozen=True)
class RowProblem:
    row: int
    reason: str

    def line(self) -> str:
        return f"row {self.row}: {self.reason}"


@dataclass
class ImportPlan:
    """What a CSV file holds: good rows, bad rows (one reason each), duplicates folded."""

    rows: list[ImportRow] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)
    duplicates: list[RowProblem] = field(default_factory=list)


def parse_numbers_csv(text: str, *, max_rows: int) -> ImportPlan:
    """Read a campaign's (or the do-not-call list's) CSV.

    The first line is the header; it must name a ``number`` column (``name`` and
    ``note`` are optional; other columns are refused so a wrong file is not half read).
    Each later non-empty line is a row, numbered as the file's line (header = 1).
    Raises ``StateError('invalid_csv')`` for a file that cannot be read as a whole
    (no header, no number column, unknown columns, more than ``max_rows`` rows).
    """
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    try:
        header = next(reader)
    except StopIteration:
        raise StateError("invalid_csv", "the file is empty: the first line must be a "
                                        "header naming the columns (number[,name,note])"
                         ) from None
    except csv.Error as exc:
        raise StateError("invalid_csv", f"line 1: {exc}") from None
    columns = [c.strip().lower() for c in header]
    if "number" not in columns:
        raise StateError("invalid_csv", "the header (line 1) must name a 'number' column; "
                                        f"found {', '.join(columns) or 'nothing'}")
    unknown = [c for c in columns if c not in CSV_COLUMNS]
    if unknown or len(set(columns)) != len(columns):
        raise StateError("invalid_csv", f"header columns must be distinct and among "
                                        f"{', '.join(CSV_COLUMNS)}; found {', '.join(columns)}")
    plan = ImportPlan()
    first_row: dict[str, int] = {}
    try:
        for cells in reader:
            row = reader.line_num
            if not any(c.strip() for c in cells):
                continue
            if len(plan.rows) + len(plan.problems) + len(plan.duplicates) >= max_rows:
                raise StateError("invalid_csv", f"more than {max_rows} rows: split the file")
            if len(cells) != len(columns):
                plan.problems.append(RowProblem(row, f"{len(cells)} cells, the header has "
                                                     f"{len(columns)}"))
                continue
            values = {c: v.strip() for c, v in zip(columns, cells, strict=True)}
            try:
                number = outbound.normalize_number(values["number"])
            except StateError as exc:
                plan.problems.append(RowProblem(row, exc.detail or "invalid number"))
                continue
            note = values.get("note", "")
            if len(note) > MAX_NOTE_CHARS or len(values.get("name", "")) > MAX_NOTE_CHARS:
                plan.problems.append(RowProblem(row, f"name or note longer than "
                                                     f"{MAX_NOTE_CHARS} characters"))
                continue
            if number in first_row:
                plan.duplicates.append(RowProblem(
                    row, f"{number} duplicates row {first_row[number]}; imported once"))
                continue
            first_row[number] = row
            plan.rows.append(ImportRow(row, number, values.get("name", ""), note))
    except csv.Error as exc:
        raise StateError("invalid_csv", f"line {reader.line_num}: {exc}") from None
    return plan
