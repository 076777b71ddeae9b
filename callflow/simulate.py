"""``callflow simulate``: a recorded day replayed through the pure core under a changed
Policy or staffing, predicted figures beside the recorded ones.

This is the thin loader around ``agents/simulation.py``: it reads the day (the store's
call records and agent states, or an Asterisk-style ``queue_log`` file), the Policy and
the staffing, hands plain facts to the pure modules and prints what comes back. The
modelling choices are in ``agents/sim_inputs.py``; the figures in ``engine/sim_report.py``.
"""

from __future__ import annotations

import json
import time
import tomllib
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from callflow.agents.sim_inputs import (
    arrivals_from_facts,
    plans_by_hour,
    plans_from_spans,
    plans_uniform,
    rona_recovery_s,
)
from callflow.agents.simulation import AgentPlan, SimOptions, simulate
from callflow.engine.kpi import CallFact, OfferFact, Period, StateSpan, day_period
from callflow.engine.policy import REJECTED, RING_NO_ANSWER, Policy
from callflow.engine.sim_report import DayFigures, figures, mean, table
from callflow.errors import CallflowError


@dataclass
class RecordedDay:
    """A day as recorded: KPI facts, and the queues each agent served (when known)."""

    period: Period
    calls: list[CallFact]
    spans: list[StateSpan]
    queues_of: dict[str, tuple[str, ...]] = field(default_factory=dict)
    acw_known: bool = True  # queue_log does not carry ACW
    source: str = "store"


@dataclass
class Staffing:
    """Who works when: ``agents`` (all day), ``by_hour`` or, when both are None, the day's own."""

    agents: int | None = None
    by_hour: dict[int, int] | None = None

    def describe(self) -> str:
        if self.agents is not None:
            return f"{self.agents} agents all day"
        if self.by_hour is not None:
            hours = sorted(self.by_hour.items())
            return "per hour: " + ", ".join(f"{h:02d}h {n}" for h, n in hours)
        return "as recorded"


@dataclass
class Outcome:
    predicted: DayFigures
    recorded: DayFigures
    calls: int
    agents: int
    seconds: float  # wall time the simulations took
    events: int
    runs: list[DayFigures] = field(default_factory=list)  # each simulated run


# --- the day from the store or a queue_log ---------------------------------------------


def day_from_store(store: Any, period: Period, queues_of: dict[str, tuple[str, ...]]
                   ) -> RecordedDay:
    """The period's calls and agent states, as the KPI reports read them."""
    from callflow.store.kpi_facts import load_facts

    calls, spans = load_facts(store, period)
    return RecordedDay(period, calls, spans, queues_of)


_CALL_EVENTS = {"ENTERQUEUE", "RINGNOANSWER", "RINGCANCELED", "CONNECT", "COMPLETECALLER",
                "COMPLETEAGENT", "TRANSFER", "ABANDON", "EXITWITHKEY", "EXITWITHTIMEOUT",
                "EXITEMPTY"}
_MEMBER_EVENTS = {"ADDMEMBER", "REMOVEMEMBER", "PAUSE", "UNPAUSE"}


def _agent_of(member: str) -> str:
    """``Agent/1001`` (what board/queue_log.py writes) or ``PJSIP/agent1001`` -> ``1001``."""
    name = member.split("/", 1)[-1]
    return name[5:] if name.startswith("agent") and name[5:].isdigit() else name


def day_from_queue_log(text: str, period: Period, source: str = "queue_log") -> RecordedDay:
    """Parse ``epoch|callid|queue|agent|event|data...`` lines (app_queue's format, as
    ``board/queue_log.py`` writes it) into KPI facts of the calls that entered in the
    period. Lines of other events are skipped; a malformed line is an error naming it.
    queue_log has whole seconds and no ACW, so the replay is coarser than the store's."""
    calls: dict[str, dict[str, Any]] = {}
    members: dict[str, list[tuple[float, str, str]]] = defaultdict(list)
    queues_of: dict[str, set[str]] = defaultdict(set)
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("|")
        try:
            if len(parts) < 5:
                raise ValueError("fewer than 5 fields")
            epoch = float(parts[0])
            callid, queue, member, event, data = parts[1], parts[2], parts[3], parts[4], parts[5:]
            if event in _CALL_EVENTS:
                _call_line(calls, epoch, callid, queue, member, event, data)
            elif event in _MEMBER_EVENTS and member != "NONE":
                agent = _agent_of(member)
                members[agent].append((epoch, event, data[0] if data else ""))
                if queue != "NONE":
                    queues_of[agent].add(queue)
        except (ValueError, IndexError) as exc:
            raise CallflowError(f"{source} line {number}: not a queue_log line ({exc}): "
                                f"{line[:120]!r}") from None
    facts = []
    for uid, c in calls.items():
        if "entered" not in c:
            continue
        entered = _at(c["entered"])
        if not period.holds(entered):
            continue
        facts.append(CallFact(
            uniqueid=uid, queue=c["queue"], entered_at=entered,
            answered_at=_dt(c.get("answered")), ended_at=_dt(c.get("ended")),
            agent_id=c.get("agent"), outcome=c.get("outcome"),
            ring_started_at=_dt(c.get("ring_started")),
            offers=tuple(OfferFact(a, _at(s), _at(e), r)
                         for a, s, e, r in c["offers"])))
    facts.sort(key=lambda f: f.entered_at)
    return RecordedDay(period, facts, _member_spans(members),
                       {a: tuple(sorted(q)) for a, q in queues_of.items()},
                       acw_known=False, source=source)


def _dt(epoch: float | None) -> datetime | None:
    return None if epoch is None else _at(epoch)


def _at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _call_line(calls: dict[str, dict[str, Any]], epoch: float, uid: str, queue: str,
               member: str, event: str, data: list[str]) -> None:
    c = calls.setdefault(uid, {"queue": queue, "offers": []})
    agent = _agent_of(member)
    if event == "ENTERQUEUE":
        c["entered"] = epoch
    elif event in ("RINGNOANSWER", "RINGCANCELED"):
        ring = float(data[0]) / 1000 if data and data[0] else 0.0
        result = "caller_gone" if event == "RINGCANCELED" else "no_answer"
        c["offers"].append((agent, epoch - ring, epoch, result))
    elif event == "CONNECT":
        ring = float(data[2]) if len(data) > 2 and data[2] else 0.0
        c["offers"].append((agent, epoch - ring, epoch, "answered"))
        c.update(answered=epoch, ring_started=epoch - ring, agent=agent, outcome="answered")
    elif event in ("COMPLETECALLER", "COMPLETEAGENT", "TRANSFER"):
        c["ended"] = epoch
    elif event == "EXITWITHKEY":
        c.update(ended=epoch, outcome="callback")
    else:  # ABANDON, EXITWITHTIMEOUT, EXITEMPTY
        c.update(ended=epoch, outcome="abandoned")


def _member_spans(members: dict[str, list[tuple[float, str, str]]]) -> list[StateSpan]:
    """ADDMEMBER/PAUSE/UNPAUSE/REMOVEMEMBER -> ready, paused and logged-out spans (one line
    per queue served: the same change at the same second counts once)."""
    spans = []
    for agent, lines in members.items():
        state: tuple[str, str] | None = None
        since = 0.0
        for epoch, event, reason in sorted(set(lines)):
            nxt: tuple[str, str] | None
            if event == "REMOVEMEMBER":
                nxt = None
            elif event == "PAUSE":
                nxt = (("not_ready" if reason in (RING_NO_ANSWER, REJECTED) else "busy"),
                       reason)
            else:
                nxt = ("ready", "")
            if nxt == state:
                continue
            if state is not None and epoch > since:
                spans.append(StateSpan(agent, state[0], _at(since), _at(epoch),
                                       state[1] or None))
            state, since = nxt, epoch
        if state is not None:
            spans.append(StateSpan(agent, state[0], _at(since), None,
                                   state[1] or None))
    return spans


def read_staffing(path: Path) -> dict[int, int]:
    """A staffing file: TOML, ``[agents]`` with ``HOUR = COUNT`` (0-23): agents on duty from
    that hour on."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CallflowError(f"cannot read staffing file {path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise CallflowError(f"{path}: not valid TOML: {exc}") from None
    table_ = data.get("agents")
    if not isinstance(table_, dict) or not table_:
        raise CallflowError(f"{path}: needs an [agents] table of HOUR = COUNT")
    out = {}
    for key, value in table_.items():
        if not (key.isdigit() and 0 <= int(key) <= 23):
            raise CallflowError(f"{path}: agents.{key}: the hour must be 0-23")
        if not (isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 100_000):
            raise CallflowError(f"{path}: agents.{key}: a count of agents (0-100000)")
        out[int(key)] = value
    return out


# --- the run ----------------------------------------------------------------------------


def _until(day: RecordedDay) -> datetime:
    """Where the day's record ends: its end, or now for today (open agent states run until
    now, not to midnight)."""
    return min(day.period.end, datetime.now(UTC))


def plans_for(day: RecordedDay, staffing: Staffing) -> list[AgentPlan]:
    queues = tuple(sorted({c.queue for c in day.calls} | {"main"}))
    day_s = (day.period.end - day.period.start).total_seconds()
    if staffing.agents is not None:
        return plans_uniform(staffing.agents, queues, day_s)
    if staffing.by_hour is not None:
        return plans_by_hour(staffing.by_hour, queues)
    return plans_from_spans(day.spans, day.period.start, queues_of=day.queues_of,
                            default_queues=queues, day_s=day_s, open_until=_until(day),
                            calls=day.calls)


def run(day: RecordedDay, recorded_policy: Policy, policy: Policy, staffing: Staffing,
        seed: int = 0, runs: int = 1, rona_recovery: float | None = None,
        callback_acceptance: float = 0.3) -> Outcome:
    """Simulate the day under ``policy`` and ``staffing``; figures beside the recorded.

    With ``runs`` > 1 the day is simulated that many times, run ``i`` with seed
    ``seed + i`` (the draws: patience of answered callers, callback choices, talk of
    unanswered calls), and the prediction is the mean: one day of a small queue is at
    the mercy of a few callers (60 calls: one call is 1.7 points of service level).
    ``rona_recovery``: seconds an agent takes to come back from a ring-no-answer (None:
    the day's average, ``rona_recovery_s``); ``callback_acceptance``: the share of
    callers taking a callback when the day has nobody who heard the offer."""
    if runs < 1:
        raise CallflowError("--runs must be 1 or more")
    start = day.period.start
    plans = plans_for(day, staffing)
    recovery = rona_recovery_s(day.spans) if rona_recovery is None else rona_recovery
    options = SimOptions(day_start=start, rona_recovery_s=recovery)
    each: list[DayFigures] = []
    took = 0.0
    events = calls = 0
    for i in range(runs):
        arrivals = arrivals_from_facts(day.calls, day.spans, recorded_policy, start,
                                       seed=seed + i,
                                       default_acceptance=callback_acceptance)
        if not day.acw_known:
            arrivals = [_acw_until_limit(a) for a in arrivals]
        t0 = time.perf_counter()
        result = simulate(arrivals, plans, policy, options)
        took += time.perf_counter() - t0
        events, calls = events + result.events, len(arrivals)
        as_of = max(day.period.end, start + timedelta(seconds=result.end_s))
        each.append(figures(result.calls, result.spans, policy, as_of))
    recorded = figures(day.calls, day.spans, recorded_policy, _until(day))
    return Outcome(mean(each), recorded, calls, len(plans), took, events, each)


def _acw_until_limit(arrival: Any) -> Any:
    from dataclasses import replace

    return replace(arrival, acw_s=None)


def report(outcome: Outcome, day: RecordedDay, staffing: Staffing, seed: int,
           policy_name: str) -> dict[str, Any]:
    return {"period": {"start": day.period.start.isoformat(), "end": day.period.end.isoformat()},
            "source": day.source, "policy": policy_name, "staffing": staffing.describe(),
            "seed": seed, "runs": len(outcome.runs), "calls": outcome.calls,
            "agents": outcome.agents,
            "simulated_in_s": round(outcome.seconds, 3), "events": outcome.events,
            "predicted": outcome.predicted.as_dict(), "recorded": outcome.recorded.as_dict(),
            "predicted_service_level_by_run": [
                None if r.service_level is None else round(r.service_level, 4)
                for r in outcome.runs]}


def command(args: Any, settings: Any, load_policy: Any) -> int:
    """``callflow simulate`` (argument parsing lives in cli.py)."""
    recorded_policy = load_policy(settings.policy_file)
    policy = load_policy(Path(args.policy)) if args.policy else recorded_policy
    try:
        day_ = date.fromisoformat(args.date) if args.date else \
            datetime.now(UTC).astimezone(_zone(recorded_policy)).date()
    except ValueError:
        raise CallflowError(f"--date {args.date!r}: expected YYYY-MM-DD") from None
    period = day_period(day_, _zone(recorded_policy))
    if args.agents is not None and args.agents < 0:
        raise CallflowError("--agents must be 0 or more")
    staffing = Staffing(agents=args.agents,
                        by_hour=read_staffing(Path(args.staffing)) if args.staffing else None)
    if args.queue_log:
        path = Path(args.queue_log)
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise CallflowError(f"cannot read {path}: {exc.strerror or exc}") from None
        day = day_from_queue_log(text, period, source=str(path))
    else:
        day = _store_day(settings, period)
    if args.rona_recovery is not None and args.rona_recovery < 0:
        raise CallflowError("--rona-recovery must be 0 or more seconds")
    if not 0 <= args.callback_acceptance <= 1:
        raise CallflowError("--callback-acceptance must be between 0 and 1")
    outcome = run(day, recorded_policy, policy, staffing, seed=args.seed, runs=args.runs,
                  rona_recovery=args.rona_recovery,
                  callback_acceptance=args.callback_acceptance)
    out = report(outcome, day, staffing, args.seed, args.policy or "in force")
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"simulated {day_} ({day.source}): {outcome.calls} calls, {outcome.agents} "
              f"agents ({staffing.describe()}), policy {out['policy']}, seed {args.seed}, "
              f"mean of {len(outcome.runs)} runs, {outcome.seconds:.2f} s")
        levels = [r.service_level for r in outcome.runs if r.service_level is not None]
        if len(levels) > 1:
            print(f"service level over the runs: {min(levels) * 100:.1f} % to "
                  f"{max(levels) * 100:.1f} %")
        print(table(outcome.predicted, outcome.recorded))
    return 0


def _zone(policy: Policy) -> Any:
    from zoneinfo import ZoneInfo

    return ZoneInfo(policy.calendar.timezone)


def _store_day(settings: Any, period: Period) -> RecordedDay:
    from callflow.errors import StoreError
    from callflow.store.db import open_store

    queues_of: dict[str, tuple[str, ...]] = {}
    roster_file = settings.state_dir / "agents.toml"
    if roster_file.exists():
        from callflow.pbx.roster import load_roster

        queues_of = {a.agent_id: a.queues for a in load_roster(roster_file).agents}
    try:
        store = open_store(settings.database_url)
    except StoreError as exc:
        raise CallflowError(f"database: {' '.join(str(exc).split())}") from None
    try:
        return day_from_store(store, period, queues_of)
    finally:
        store.close()
