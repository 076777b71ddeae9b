"""Daily and weekly reports per queue and per agent: each standard with target, actual, result.

The day-shift lead reports each day and each week (STD-141, STD-142), every handled
call is counted (STD-144), abandon rate, answer rate and talk time are the headline
figures (STD-139, STD-140). The figures are ``engine/kpi.py``'s, the same the board
and the API show, and each rule's compliance is ``engine/compliance.py``'s over the
period's verdicts (engine/verdicts.py); this module only lays them out, as CSV for
spreadsheets and as a printable HTML page (print to PDF from the browser), and writes
them on a schedule.

A standard with no target in the standards (abandon rate, ASA...) is shown as
information; a standard with no data in the period (no calls) is "n/a", never a pass.
"""

from __future__ import annotations

import csv
import html
import io
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from callflow.api.language import load_packs
from callflow.engine import compliance, kpi
from callflow.engine.kpi import CallFact, KpiRules, Kpis, StateSpan, SurveyFact
from callflow.engine.policy import Policy
from callflow.engine.rules import enforces
from callflow.engine.team_kpi import UNASSIGNED, TeamMap, team_kpis, team_view
from callflow.engine.tickets import Ticket
from callflow.engine.verdicts import Verdict
from callflow.errors import CallflowError
from callflow.store import tickets as store_tickets
from callflow.store.db import Store
from callflow.store.kpi_facts import load_facts, load_survey_facts
from callflow.store.verdicts import verdicts_between

log = logging.getLogger(__name__)

Kind = Literal["daily", "weekly"]
By = Literal["queue", "agent"]
ALL = "(all)"
#: Scheduled reports run this long after local midnight, once the day's last calls are in.
SCHEDULE_DELAY = timedelta(minutes=5)
CSV_COLUMNS = ("report", "period_start", "period_end", "scope", "entity", "std", "kpi", "unit",
               "target", "actual", "result")


class ReportError(CallflowError):
    """A report was asked for with a bad kind, date or grouping."""


@dataclass(frozen=True)
class Section:
    entity: str
    figures: Kpis
    checks: tuple[kpi.Check, ...]


@dataclass(frozen=True)
class SurveyLine:
    """The post-call survey over one scope (STD-120): ``scope`` total | question | queue
    | agent; the figures ``engine/kpi.py``'s ``survey_kpis`` (rate 0-1, mean 1-5, None
    while nothing was answered: unknown, never 0)."""

    scope: str
    entity: str
    asked: int
    answered: int
    response_rate: float | None
    mean_score: float | None


@dataclass(frozen=True)
class Report:
    kind: Kind
    by: By
    label: str  # 2024-05-06 or 2024-W19
    period: kpi.Period
    zone: str
    generated_at: datetime
    sections: tuple[Section, ...]
    survey: tuple[SurveyLine, ...] = ()
    #: the tickets logged in the period, over the whole centre (issue 19: timeliness,
    #: reply rate STD-133, complaint rate, follow-up coverage STD-134); None: not loaded
    tickets: kpi.TicketKpis | None = None
    reply_target_pct: float = 100.0  # kpi.reply_rate_target_pct when the report was built
    #: the by-queue report's per-team rows (STD-145): engine/team_kpi.py's team views,
    #: each call in one team (docs/kpi.md "Teams"); empty without a roster's teams
    teams: tuple[dict[str, Any], ...] = ()

    @property
    def title(self) -> str:
        return f"callflow {self.kind} report by {self.by}, {self.label}"


def result_text(check: kpi.Check) -> str:
    """pass / fail against the target; info (no target); n/a (a target but no data)."""
    if check.passed is None:
        return "n/a" if check.target else "info"
    return "pass" if check.passed else "fail"


def period_of(kind: Kind, day: date, zone: ZoneInfo) -> tuple[kpi.Period, str]:
    """The period a report covers: the day, or the Monday-to-Sunday week holding it."""
    if kind == "daily":
        return kpi.day_period(day, zone), day.isoformat()
    if kind == "weekly":
        monday = day - timedelta(days=day.weekday())
        year, week, _ = monday.isocalendar()
        return kpi.week_period(monday, zone), f"{year}-W{week:02d}"
    raise ReportError(f"unknown report kind {kind!r}: daily or weekly")


def compliance_checks(verdicts: Iterable[Verdict], policy: Policy) -> tuple[kpi.Check, ...]:
    """Each rule's compliance over the verdicts given (engine/compliance.py, the board's
    own aggregation) against its trend target: one check per rule judged."""
    trend = compliance.TrendRules.from_policy(policy)
    return tuple(
        kpi.Check(rule, "compliance", "%", f">= {trend.target(rule):g}", tally.pct,
                  None if tally.pct is None else tally.pct >= trend.target(rule))
        for (rule, _), tally in sorted(compliance.compliance(verdicts).items()))


@enforces("STD-120")
def survey_lines(by: By, answers: Iterable[SurveyFact]) -> tuple[SurveyLine, ...]:
    """The survey part of a report: by queue, the total, each question and each queue;
    by agent, each agent and each of their questions (``<agent> / <question>``)."""
    answers = list(answers)
    if not answers:
        return ()
    figures = kpi.survey_kpis(answers)

    def line(scope: str, entity: str, f: Mapping[str, Any]) -> SurveyLine:
        return SurveyLine(scope, entity, f["asked"], f["answered"], f["response_rate"],
                          f["mean_score"])
    if by == "agent":
        out = []
        for agent, f in figures["agents"].items():
            out.append(line("agent", agent, f))
            mine = kpi.survey_kpis(a for a in answers if a.agent_id == agent)
            out += [line("question", f"{agent} / {q}", g)
                    for q, g in mine["questions"].items()]
        return tuple(out)
    return (line("total", ALL, figures["total"]),
            *(line("question", q, f) for q, f in figures["questions"].items()),
            *(line("queue", q, f) for q, f in figures["queues"].items()))


@enforces("STD-141")
def build(kind: Kind, by: By, day: date, facts: Iterable[CallFact],
          spans: list[StateSpan], policy: Policy, as_of: datetime,
          agents: Iterable[str] = (), verdicts: Iterable[Verdict] = (),
          survey: Iterable[SurveyFact] = (),
          tickets: Iterable[Ticket] | None = None, teams: TeamMap | None = None) -> Report:
    """The report over facts loaded for its period (``store/kpi_facts.load_facts``), with
    each rule's compliance over the period's verdicts (per queue, per agent, in total),
    the post-call survey's answers of the period (``load_survey_facts``) and the ticket
    figures of the tickets logged in it (``store/tickets.logged_between``; the complaint
    rate is per answered call of the same period). A by-queue report also carries one row
    per team of ``teams`` (the roster's) and the calls no team can be given."""
    zone = ZoneInfo(policy.calendar.timezone)
    period, label = period_of(kind, day, zone)
    rules_for = kpi.rules_by_queue(policy)
    calls = kpi.in_period(facts, period)
    as_of = min(as_of, period.end)
    if by == "queue":
        scopes = kpi.queue_kpis(calls, rules_for, as_of, spans)
        overall = KpiRules.from_policy(policy)
        sections = [Section(q, k, tuple(kpi.checks(k, rules_for(q), "queue")))
                    for q, k in sorted(scopes.items())]
        total = kpi.total(scopes.values())
        sections.append(Section(ALL, total, tuple(kpi.checks(total, overall, "queue"))))
    elif by == "agent":
        scopes = kpi.agent_kpis(calls, spans, rules_for, period, as_of, agents)
        overall = KpiRules.from_policy(policy)
        sections = [Section(a, k, tuple(kpi.checks(k, overall, "agent")))
                    for a, k in sorted(scopes.items())]
    else:
        raise ReportError(f"unknown grouping {by!r}: queue or agent")
    judged = [v for v in verdicts
              if period.start.timestamp() <= v.at < period.end.timestamp()]
    if judged:
        def of(entity: str) -> list[Verdict]:
            if entity == ALL:
                return judged
            return [v for v in judged if (v.queue if by == "queue" else v.agent) == entity]
        sections = [replace(s, checks=(*s.checks, *compliance_checks(of(s.entity), policy)))
                    for s in sections]
    ticket_figures = None
    if tickets is not None:
        answered = sum(1 for c in calls if c.answered_at is not None)
        ticket_figures = kpi.ticket_kpis(list(tickets), answered, as_of, policy)
    team_rows: tuple[dict[str, Any], ...] = ()
    if by == "queue" and teams is not None and teams.names:
        centre = KpiRules.from_policy(policy)
        team_rows = tuple(team_view(name, k, centre) for name, k in sorted(
            team_kpis(calls, rules_for, teams, as_of, spans).items(),
            key=lambda item: (item[0] == UNASSIGNED, item[0])))
    return Report(kind, by, label, period, policy.calendar.timezone,
                  datetime.now(UTC), tuple(sections), survey_lines(by, survey),
                  ticket_figures, policy.kpi.reply_rate_target_pct, team_rows)


def _cell(value: float | int | None) -> str:
    return "" if value is None else f"{value:g}"


#: The survey's CSV rows: scope ``survey-<scope>``, these KPI names, no target (info).
SURVEY_KPIS = (("survey asked", "calls"), ("survey answered", "calls"),
               ("survey response rate", "%"), ("survey mean score", "1-5"))


def _survey_values(line: SurveyLine) -> tuple[float | int | None, ...]:
    rate = None if line.response_rate is None else round(line.response_rate * 100, 1)
    return line.asked, line.answered, rate, line.mean_score


#: The tickets' CSV rows (scope ``tickets``, entity all): the KPI, its standard, its unit
#: and the figure's key in ``TicketKpis.as_dict``; the reply rate alone has a target.
TICKET_KPIS = (("tickets logged", "STD-124", "tickets", "logged"),
               ("complaints logged", "STD-124", "tickets", "complaints"),
               ("ticket timeliness", "STD-122", "%", "timeliness_pct"),
               ("reply rate", "STD-133", "%", "reply_rate_pct"),
               ("complaint rate", "STD-124", "%", "complaint_rate_pct"),
               ("follow-up coverage", "STD-134", "%", "followup_coverage_pct"))


TicketRow = tuple[str, str, str, str, str, str]  # standard, KPI, unit, target, actual, result


def ticket_rows(figures: kpi.TicketKpis, target_pct: float) -> list[TicketRow]:
    """(standard, KPI, unit, target, actual, result) per ticket figure: the reply rate is
    judged against ``kpi.reply_rate_target_pct``, the others are information."""
    values = figures.as_dict()
    rows = []
    for name, std, unit, key in TICKET_KPIS:
        target, result = "", "info"
        if key == "reply_rate_pct":
            target = f">= {target_pct:g}"
            met = figures.reply_rate_met
            result = "n/a" if met is None else ("pass" if met else "fail")
        rows.append((std, name, unit, target, _cell(values[key]), result))
    return rows


#: The per-team CSV rows (scope ``team``): KPI, unit, the team view's key; the service
#: level alone is judged, against the Policy's ``kpi.service_level_target_pct``.
TEAM_KPIS = (("offered", "calls", "offered"), ("answered", "calls", "answered"),
             ("abandoned", "calls", "abandoned"), ("service level", "%", "service_level"),
             ("ASA", "s", "asa_s"))


def team_rows(view: Mapping[str, Any]) -> list[tuple[str, str, str, str, str, str]]:
    """(standard, KPI, unit, target, actual, result) per headline figure of a team."""
    rows = []
    for name, unit, key in TEAM_KPIS:
        value = view[key]
        target, result = "", "info"
        if key == "service_level":
            target_pct = view["service_level_target_pct"]
            value = None if value is None else round(value * 100, 2)
            target = f">= {target_pct:g}"
            result = "n/a" if value is None else ("pass" if value >= target_pct else "fail")
        elif key == "asa_s" and value is not None:
            value = round(value, 2)
        rows.append(("STD-145", name, unit, target, _cell(value), result))
    return rows


def to_csv(report: Report) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    start, end = report.period.start.isoformat(), report.period.end.isoformat()
    for section in report.sections:
        for c in section.checks:
            writer.writerow((report.kind, start, end, report.by, section.entity, c.std, c.name,
                             c.unit, c.target, _cell(c.actual), result_text(c)))
    for line in report.survey:
        for (name, unit), value in zip(SURVEY_KPIS, _survey_values(line), strict=True):
            writer.writerow((report.kind, start, end, f"survey-{line.scope}", line.entity,
                             "STD-120", name, unit, "", _cell(value), "info"))
    if report.tickets is not None:
        for row in ticket_rows(report.tickets, report.reply_target_pct):
            writer.writerow((report.kind, start, end, "tickets", ALL, *row))
    for view in report.teams:
        for row in team_rows(view):
            writer.writerow((report.kind, start, end, "team", view["team"], *row))
    return out.getvalue()


#: The survey table's labels: both languages side by side (a report file is read by
#: whoever opens it), from the language packs' ``report.survey.*`` keys.
SURVEY_LABEL_KEYS = ("title", "scope", "entity", "asked", "answered", "response_rate",
                     "mean_score")


def survey_label(key: str) -> str:
    """``中文 / English`` for a ``report.survey.<key>`` (a question, scope or heading),
    the key itself when no pack names it (a question a deployment added)."""
    packs = _packs()
    words = [packs[lang].get(f"report.survey.{key}") for lang in ("zh-CN", "en")]
    found = [w for w in words if w]
    if not found:
        return key.rpartition(".")[2]
    return " / ".join(dict.fromkeys(found))


_PACKS: dict[str, dict[str, str]] = {}


def _packs() -> dict[str, dict[str, str]]:
    if not _PACKS:
        _PACKS.update(load_packs())
    return _PACKS


def _survey_html(report: Report) -> list[str]:
    esc = html.escape
    if not report.survey:
        return []
    heads = "".join(f"<th>{esc(survey_label(k))}</th>" for k in SURVEY_LABEL_KEYS[1:])
    parts = [f"<h2>{esc(survey_label('title'))} (STD-120)</h2><table><thead><tr>{heads}"
             "</tr></thead><tbody>"]
    for line in report.survey:
        entity = line.entity
        if line.scope == "question":
            agent, sep, question = entity.rpartition(" / ")
            entity = f"{agent}{sep}{survey_label('q.' + question)}"
        elif line.scope == "total":
            entity = survey_label("all")
        asked, answered, rate, mean = _survey_values(line)
        cells = "".join(f"<td class='num'>{esc(_cell(v))}{u if v is not None else ''}</td>"
                        for v, u in ((asked, ""), (answered, ""), (rate, " %"), (mean, "")))
        parts.append(f"<tr><td>{esc(survey_label('scope.' + line.scope))}</td>"
                     f"<td>{esc(entity)}</td>{cells}</tr>")
    parts.append("</tbody></table>")
    return parts


def _tickets_html(report: Report) -> list[str]:
    esc = html.escape
    if report.tickets is None:
        return []
    label = report_label
    parts = [f"<h2>{esc(label('tickets.title'))}</h2><table><thead><tr>"
             f"<th>{esc(label('tickets.standard'))}</th><th>{esc(label('tickets.kpi'))}</th>"
             f"<th>{esc(label('tickets.target'))}</th><th>{esc(label('tickets.actual'))}</th>"
             f"<th>{esc(label('tickets.result'))}</th></tr></thead><tbody>"]
    rows = ticket_rows(report.tickets, report.reply_target_pct)
    for (std, _name, unit, target, actual, result), key in zip(
            rows, (k for *_, k in TICKET_KPIS), strict=True):
        shown = f"{actual} {unit}" if actual and unit == "%" else actual
        parts.append(f"<tr class='{esc(result)}'><td>{esc(std)}</td>"
                     f"<td>{esc(label('tickets.' + key))}</td><td>{esc(target)}</td>"
                     f"<td class='num'>{esc(shown)}</td><td>{esc(result)}</td></tr>")
    parts.append("</tbody></table>")
    return parts


def _teams_html(report: Report) -> list[str]:
    """One row per team: offered, answered, abandoned, service level against its target
    (pass/fail colour) and ASA, under the rule that gives each call its team."""
    esc = html.escape
    if not report.teams:
        return []
    label = report_label
    heads = "".join(f"<th>{esc(label('teams.' + k))}</th>" for k in (
        "team", "offered", "answered", "abandoned", "service_level", "target", "asa",
        "result"))
    parts = [f"<h2>{esc(label('teams.title'))} (STD-145)</h2>",
             f"<p class='meta'>{esc(label('teams.rule'))}</p>",
             f"<table class='teams'><thead><tr>{heads}</tr></thead><tbody>"]
    for view in report.teams:
        rows = {name: row for (name, *_), row in zip(TEAM_KPIS, team_rows(view), strict=True)}
        sl = rows["service level"]
        name = view["team"]
        shown = label("teams.unassigned") if name == UNASSIGNED else name
        cells = [shown, rows["offered"][4], rows["answered"][4], rows["abandoned"][4],
                 f"{sl[4]} %" if sl[4] else "", sl[3], rows["ASA"][4], sl[5]]
        parts.append(f"<tr class='{esc(sl[5])}' data-team='{esc(name)}'>" + "".join(
            f"<td{'' if i == 0 else ' class=num'}>{esc(c)}</td>" for i, c in enumerate(cells))
            + "</tr>")
    parts.append("</tbody></table>")
    return parts


def report_label(key: str) -> str:
    """``中文 / English`` for a ``report.<key>`` of the language packs (both: a report file
    is read by whoever opens it)."""
    packs = _packs()
    found = [w for w in (packs[lang].get(f"report.{key}") for lang in ("zh-CN", "en")) if w]
    return " / ".join(dict.fromkeys(found)) if found else key.rpartition(".")[2]


_CSS = """
body{font:13px/1.4 system-ui,sans-serif;margin:24px;color:#111}
h1{font-size:18px;margin:0 0 4px}h2{font-size:15px;margin:18px 0 6px;break-after:avoid}
p.meta{color:#555;margin:0 0 12px}
table{border-collapse:collapse;width:100%;margin-bottom:8px;break-inside:avoid}
th,td{border:1px solid #bbb;padding:3px 6px;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.pass{background:#e3f4e1}.fail{background:#fbe0e0;font-weight:600}.info,.n\\/a{color:#555}
@media print{body{margin:10mm}a{color:inherit}}
"""


def to_html(report: Report) -> str:
    """A self-contained printable page (no scripts, no external assets)."""
    zone = ZoneInfo(report.zone)
    start = report.period.start.astimezone(zone).strftime("%Y-%m-%d %H:%M")
    end = report.period.end.astimezone(zone).strftime("%Y-%m-%d %H:%M")
    esc = html.escape
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
             f"<title>{esc(report.title)}</title><style>{_CSS}</style></head><body>",
             f"<h1>{esc(report.title)}</h1>",
             f"<p class='meta'>{esc(start)} to {esc(end)} ({esc(report.zone)}); generated "
             f"{esc(report.generated_at.astimezone(zone).strftime('%Y-%m-%d %H:%M'))}</p>"]
    if not report.sections:
        parts.append("<p>No calls and no agent activity in this period.</p>")
    for section in report.sections:
        parts.append(f"<h2>{esc(report.by)} {esc(section.entity)}</h2><table><thead><tr>"
                     "<th>standard</th><th>KPI</th><th>target</th><th>actual</th>"
                     "<th>result</th></tr></thead><tbody>")
        for c in section.checks:
            result = result_text(c)
            actual = _cell(c.actual)
            unit = f" {esc(c.unit)}" if actual and c.unit else ""
            parts.append(f"<tr class='{result}'><td>{esc(c.std)}</td><td>{esc(c.name)}</td>"
                         f"<td>{esc(c.target)}</td><td class='num'>{esc(actual)}{unit}</td>"
                         f"<td>{result}</td></tr>")
        parts.append("</tbody></table>")
    parts += _survey_html(report)
    parts += _tickets_html(report)
    parts += _teams_html(report)
    parts.append("</body></html>")
    return "".join(parts)


def render(report: Report, fmt: str) -> str:
    if fmt == "csv":
        return to_csv(report)
    if fmt == "html":
        return to_html(report)
    raise ReportError(f"unknown format {fmt!r}: csv or html")


# --- from the store, and on a schedule ------------------------------------------------------


def load_and_build(store: Store, policy: Policy, kind: Kind, by: By, day: date,
                   as_of: datetime, agents: Iterable[str] = (),
                   teams: TeamMap | None = None) -> Report:
    """Load the period's facts and build the report (runs in a worker thread);
    ``teams``: the roster's, for the per-team rows."""
    zone = ZoneInfo(policy.calendar.timezone)
    period, _ = period_of(kind, day, zone)
    facts, spans = load_facts(store, period)
    judged = store.read(verdicts_between, period.start, period.end)
    answers = load_survey_facts(store, period)
    logged = store.read(lambda s: [store_tickets.facts(t) for t in store_tickets.logged_between(
        s, period.start, period.end)])
    return build(kind, by, day, facts, spans, policy, as_of, agents, judged, answers, logged,
                 teams)


#: What a report file's name may be (``file_name`` makes them): anything else is refused
#: before the file system is asked, so a name can neither leave the folder nor be too long
#: for it (the OS refuses a name over 255 bytes with an error, not "no such file").
MAX_FILE_NAME = 128
FILE_NAME = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_.\-]{{0,{MAX_FILE_NAME - 1}}}")


def file_name(report: Report, fmt: str) -> str:
    return f"{report.kind}-{report.label}-by-{report.by}.{fmt}"


def write_report_files(report: Report, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in ("csv", "html"):
        path = out_dir / file_name(report, fmt)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(render(report, fmt), encoding="utf-8")
        tmp.replace(path)  # a reader never sees half a report
        written.append(path)
    return written


def due_reports(day_done: date) -> list[tuple[Kind, date]]:
    """What the schedule writes once ``day_done`` is over: its daily report, and the weekly
    report when it was a Sunday (the week Monday..Sunday is complete)."""
    due: list[tuple[Kind, date]] = [("daily", day_done)]
    if day_done.weekday() == 6:
        due.append(("weekly", day_done))
    return due


def next_run(after: datetime, zone: ZoneInfo) -> datetime:
    """The next local midnight plus SCHEDULE_DELAY strictly after ``after`` (aware)."""
    local = after.astimezone(zone)
    candidate = datetime.combine(local.date(), time(0), zone) + SCHEDULE_DELAY
    if candidate <= local:
        candidate = datetime.combine(local.date() + timedelta(days=1), time(0), zone) \
            + SCHEDULE_DELAY
    return candidate.astimezone(UTC)


def run_schedule(store: Store, policy: Policy, out_dir: Path, day_done: date,
                 as_of: datetime, agents: Iterable[str] = (),
                 teams: TeamMap | None = None) -> list[Path]:
    """Write every report due for ``day_done`` (runs in a worker thread)."""
    written: list[Path] = []
    names = list(agents)
    for kind, day in due_reports(day_done):
        for by in ("queue", "agent"):
            report = load_and_build(store, policy, kind, by, day, as_of, names, teams)
            written += write_report_files(report, out_dir)
    log.info("reports for %s written: %s", day_done, ", ".join(p.name for p in written))
    return written


def parse_day(raw: str | None, today: date) -> date:
    if raw is None or raw == "":
        return today
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise ReportError(f"bad date {raw!r}: use YYYY-MM-DD") from None


def summary(report: Report) -> Mapping[str, Any]:
    """JSON form (the API's default)."""
    return {
        "kind": report.kind, "by": report.by, "label": report.label,
        "period": {"start": report.period.start.isoformat(),
                   "end": report.period.end.isoformat(), "zone": report.zone},
        "sections": [{"entity": s.entity, "figures": s.figures.as_dict(),
                      "checks": [{"std": c.std, "kpi": c.name, "unit": c.unit,
                                  "target": c.target, "actual": c.actual,
                                  "result": result_text(c)} for c in s.checks]}
                     for s in report.sections],
        "survey": [{"scope": line.scope, "entity": line.entity, "asked": line.asked,
                    "answered": line.answered, "response_rate": line.response_rate,
                    "mean_score": line.mean_score} for line in report.survey],
        "tickets": None if report.tickets is None else report.tickets.as_dict(),
        "teams": list(report.teams),
    }
