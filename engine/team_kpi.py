"""Which team a call belongs to, and the headline call figures per team (STD-145, issue 19).

The board's team view and the reports show a team's service level, answered and abandoned
calls and average answer time. A call counts for exactly one team, so the teams' figures
add up to the centre's (``Kpis`` is additive) and the rule is written once, here
(docs/kpi.md "Teams"):

1. **Answered** (including a call answered and then converted to a callback): the team
   of the agent who answered it first (the first segment's agent, ``kpi.segments``). The
   service level and answer time measure that answer; a later transfer to another team
   does not move the call.
2. **Not answered** (abandoned, short abandon, callback before an answer, still waiting,
   lost to a PBX failure): the team of the last agent whose phone it rang, when that
   agent has a team: the call was that team's to answer and it was lost there.
3. Otherwise (it never rang an agent with a team): the **queue's team**, when every
   roster agent who serves the queue is on one team.
4. Otherwise ``UNASSIGNED``: a queue shared by teams (or served by agents with no team)
   is no single team's, so its unrung losses are shown on their own row rather than
   guessed.

An answering agent with no team makes the call ``UNASSIGNED`` too. The teams come from
the roster (``agents.toml`` ``team``); nothing here reads it: ``TeamMap`` is handed in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from callflow.engine import kpi
from callflow.engine.kpi import CallFact, KpiRules, Kpis, StateSpan
from callflow.engine.rules import enforces

#: The row of calls no team can be given (rule 4); not a name a roster team may take.
UNASSIGNED = "(unassigned)"


@dataclass(frozen=True)
class TeamMap:
    """Each agent's team and each queue's team (when all its agents share one)."""

    agents: Mapping[str, str]
    queues: Mapping[str, str]

    @classmethod
    def from_roster(cls, agents: Iterable[tuple[str, str | None, Iterable[str]]]) -> TeamMap:
        """From (agent id, team or None, queues served) per roster agent. A queue has a
        team only when every agent serving it has that team: an agent with no team makes
        the queue shared (rule 4)."""
        of_agent: dict[str, str] = {}
        served: dict[str, set[str | None]] = {}
        for agent_id, team, queues in agents:
            if team:
                of_agent[agent_id] = team
            for queue in queues:
                served.setdefault(queue, set()).add(team or None)
        of_queue = {q: next(iter(t)) for q, t in served.items()
                    if len(t) == 1 and None not in t}
        return cls(of_agent, {q: t for q, t in of_queue.items() if t is not None})

    @property
    def names(self) -> list[str]:
        """Every roster team, sorted."""
        return sorted(set(self.agents.values()))


@enforces("STD-145")
def call_team(call: CallFact, teams: TeamMap) -> str:
    """The team a call counts for (the module's rule, in order)."""
    if call.answered_at is not None:
        first = kpi.segments(call, call.answered_at)
        agent = first[0].agent_id if first else call.agent_id
        return teams.agents.get(agent or "", UNASSIGNED)
    if call.offers:  # only the last agent it rang decides; with no team, the queue does
        team = teams.agents.get(max(call.offers, key=lambda o: o.started_at).agent_id)
        if team:
            return team
    return teams.queues.get(call.queue, UNASSIGNED)


def team_kpis(calls: Iterable[CallFact], rules_for: Callable[[str], KpiRules],
              teams: TeamMap, as_of: datetime, spans: Iterable[StateSpan] = ()
              ) -> dict[str, Kpis]:
    """Per team over the given calls (filter them with ``kpi.in_period`` first): each call
    once, in its team, with its queue's rules; every roster team is present."""
    acw = kpi._acw_by_call(spans, as_of)  # the same ACW lookup as the queues
    out: dict[str, Kpis] = {name: Kpis() for name in teams.names}
    for call in calls:
        team = call_team(call, teams)
        out.setdefault(team, Kpis())
        out[team] += kpi.call_kpis(call, rules_for(call.queue), as_of, acw)
    return out


#: The counts a team view carries (the board sums them for "every team").
VIEW_COUNTS = ("offered", "answered", "abandoned", "callbacks", "short_abandons", "waiting",
               "in_service_level", "wait_sum_s")


def team_view(team: str, k: Kpis, rules: KpiRules) -> dict[str, Any]:
    """What the board and the report show of a team: the counts, the service level
    (0..1 of decided calls), the answer and abandon rates, ASA in seconds, and the
    centre's service-level target (a team serves several queues: the Policy's own)."""
    out: dict[str, Any] = {"team": team}
    for name in VIEW_COUNTS:
        value = getattr(k, name)
        out[name] = round(value, 3) if isinstance(value, float) else value
    out.update(decided=k.decided, service_level=_r(k.service_level),
               answer_rate=_r(k.answer_rate), abandon_rate=_r(k.abandon_rate),
               asa_s=_r(k.asa_s), service_level_target_pct=rules.service_level_target_pct,
               service_level_s=rules.service_level_s)
    return out


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
