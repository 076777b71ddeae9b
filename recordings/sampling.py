"""The month's QA sample (STD-115, C-8): which recordings QA listens to, and why.

Pure and deterministic: the same recordings, month and Policy always give the same
picks, so a re-run (or a second engine) never reshuffles what QA was told to review.

* Every breached call's recording is picked first (a rule judged ``fail`` on it,
  engine/verdicts.py), reason ``breached: STD-nnn, ...``: QA hears the calls that broke
  a standard before any other. Like flagged picks they are added to the minimum.
* Every flagged recording is picked (``qa.include_flagged``), reason ``flagged: ...``.
* Each agent gets at least ``qa.min_monitored_per_agent_month`` picks (C-8: any minimum
  >= 1), spread across the month: the month is cut into that many equal slots; in each
  slot a target instant is drawn from a hash of (month, agent, slot) — fixed, but not
  the slot's middle, so an agent cannot guess which hour is listened to — and the
  agent's unpicked recording nearest to it is taken. A slot with no recording of the
  agent falls back to the agent's unpicked recording farthest (in time) from the picks
  so far, which keeps the spread as wide as the calls allow.
* Recordings already selected earlier (a previous run) stay selected and count toward
  the agent's minimum; flagged picks do not count (they are "added", STD-115).
* Recordings without an agent (none answered) are never sampled; they cannot be scored.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from callflow.engine.rules import enforces


@dataclass(frozen=True)
class Candidate:
    """What the sampler needs of one recording."""

    id: int
    agent_id: str | None
    started_at: datetime
    flags: tuple[str, ...] = ()
    selected: bool = False  # already in the sample (an earlier run)
    breached: tuple[str, ...] = ()  # the rules the call failed (its verdicts)


@dataclass(frozen=True)
class Pick:
    id: int
    agent_id: str
    reason: str


@dataclass(frozen=True)
class SampleRules:
    min_per_agent: int = 5
    include_flagged: bool = True


@dataclass
class _Agent:
    picks: list[Pick] = field(default_factory=list)
    counted: list[Candidate] = field(default_factory=list)  # toward the minimum


def _target(month_start: datetime, month_end: datetime, agent_id: str, slot: int,
            slots: int) -> tuple[datetime, datetime, datetime]:
    span = (month_end - month_start) / slots
    lo = month_start + span * slot
    digest = hashlib.sha256(f"{month_start.isoformat()}|{agent_id}|{slot}".encode()).digest()
    fraction = int.from_bytes(digest[:8], "big") / 2**64
    return lo, lo + span, lo + span * fraction


@enforces("STD-115", policy=("qa.min_monitored_per_agent_month", "qa.include_flagged"))
def select_month(candidates: Iterable[Candidate], month_start: datetime, month_end: datetime,
                 rules: SampleRules) -> list[Pick]:
    """The picks for ``[month_start, month_end)``; only candidates inside it are considered.
    Breached calls come first (``Pick`` order is by id, the reasons say why)."""
    if rules.min_per_agent < 1:
        raise ValueError("min_per_agent must be >= 1 (C-8)")
    if month_end <= month_start:
        raise ValueError("the month must end after it starts")
    month = sorted((c for c in candidates
                    if c.agent_id and month_start <= c.started_at < month_end),
                   key=lambda c: (c.started_at, c.id))
    agents: dict[str, _Agent] = {}
    taken: set[int] = set()
    for c in month:
        agent = agents.setdefault(str(c.agent_id), _Agent())
        if c.selected:
            agent.picks.append(Pick(c.id, str(c.agent_id), "selected earlier"))
            agent.counted.append(c)
            taken.add(c.id)
        elif c.breached:
            agent.picks.append(Pick(c.id, str(c.agent_id), "breached: " + ", ".join(c.breached)))
            taken.add(c.id)
        elif c.flags and rules.include_flagged:
            agent.picks.append(Pick(c.id, str(c.agent_id), "flagged: " + ", ".join(c.flags)))
            taken.add(c.id)
    for agent_id, agent in agents.items():
        pool = [c for c in month if c.agent_id == agent_id and c.id not in taken]
        _spread(agent_id, agent, pool, month_start, month_end, rules.min_per_agent)
    return sorted((p for a in agents.values() for p in a.picks), key=lambda p: p.id)


def _spread(agent_id: str, agent: _Agent, pool: list[Candidate], month_start: datetime,
            month_end: datetime, wanted: int) -> None:
    slots = wanted
    for slot in range(slots):
        if len(agent.counted) >= wanted or not pool:
            return
        lo, hi, target = _target(month_start, month_end, agent_id, slot, slots)
        if any(lo <= c.started_at < hi for c in agent.counted):
            continue  # an earlier pick already covers this slot
        inside = [c for c in pool if lo <= c.started_at < hi]
        if inside:
            best = min(inside, key=lambda c: (abs((c.started_at - target).total_seconds()), c.id))
            reason = f"spread: slot {slot + 1}/{slots} ({lo:%m-%d}..{hi:%m-%d})"
        else:
            best = _farthest(pool, agent.counted)
            reason = f"spread: slot {slot + 1}/{slots} empty, farthest from other picks"
        _take(agent, pool, best, agent_id, reason)
    while len(agent.counted) < wanted and pool:  # a fallback pick covered a later slot
        _take(agent, pool, _farthest(pool, agent.counted), agent_id,
              "spread: farthest from other picks")


def _farthest(pool: Sequence[Candidate], picked: Sequence[Candidate]) -> Candidate:
    if not picked:
        return pool[0]

    def gap(c: Candidate) -> tuple[float, int]:
        return (min(abs((c.started_at - p.started_at).total_seconds()) for p in picked), -c.id)

    return max(pool, key=gap)


def _take(agent: _Agent, pool: list[Candidate], chosen: Candidate, agent_id: str,
          reason: str) -> None:
    pool.remove(chosen)
    agent.counted.append(chosen)
    agent.picks.append(Pick(chosen.id, agent_id, reason))
