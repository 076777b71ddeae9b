"""Daily and weekly reports: each standard with target, actual and pass/fail, as CSV and HTML."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from callflow.board import reports
from callflow.engine import kpi
from callflow.engine.kpi import CallFact, OfferFact, StateSpan
from callflow.engine.policy import Policy
from callflow.engine.verdicts import Outcome, Verdict

POLICY = Policy.defaults()
ZONE = ZoneInfo(POLICY.calendar.timezone)
RING = POLICY.ring_cycle_s
DAY = date(2024, 5, 6)  # a Monday
T0 = datetime(2024, 5, 6, 9, 0, tzinfo=ZONE)


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def answered(uid: str, start: float, ring_s: float, talk_s: float, agent: str,
             queue: str = "main") -> CallFact:
    t_ring, t_ans = at(start), at(start + ring_s)
    return CallFact(uniqueid=uid, queue=queue, entered_at=at(start), answered_at=t_ans,
                    ended_at=at(start + ring_s + talk_s), agent_id=agent, outcome="answered",
                    ring_started_at=t_ring, offers=(OfferFact(agent, t_ring, t_ans, "answered"),),
                    released_by="caller")


FACTS = [
    answered("a", 0, 0.8 * RING, 100, "1001"),  # 1 ring
    answered("b", 600, 2.8 * RING, 200, "1001"),  # 3 rings
    answered("c", 1200, 0.5 * RING, 50, "1002", queue="sales"),
    CallFact(uniqueid="d", queue="main", entered_at=at(1800), ended_at=at(1900),
             outcome="abandoned", released_by="caller"),
]
SPANS = [StateSpan("1001", "acw", at(0.8 * RING + 100), at(0.8 * RING + 190), call_uniqueid="a")]


def by_name(section: reports.Section) -> dict[str, kpi.Check]:
    return {c.name: c for c in section.checks}


@pytest.mark.std("STD-141")
def test_daily_report_per_queue_judges_each_standard() -> None:
    report = reports.build("daily", "queue", DAY, FACTS, SPANS, POLICY, at(86400))
    assert report.label == "2024-05-06"
    assert [s.entity for s in report.sections] == ["main", "sales", reports.ALL]
    main = by_name(report.sections[0])
    assert main["offered"].actual == 3 and main["calls handled"].actual == 2
    assert main["average answer ring"].actual == 2.0  # (1 + 3) / 2: on target
    assert reports.result_text(main["average answer ring"]) == "pass"
    assert main["service level"].actual == 66.67  # 2 of 3 decided calls within 3 rings (15 s)
    assert reports.result_text(main["service level"]) == "fail"
    assert main["abandon rate"].target == "" and reports.result_text(main["abandon rate"]) == \
        "info"
    assert main["average ACW"].actual == 45.0  # 90 s after call a, 0 after b
    every = by_name(report.sections[-1])
    assert every["offered"].actual == 4 and every["calls handled"].actual == 3


def test_daily_report_per_agent() -> None:
    report = reports.build("daily", "agent", DAY, FACTS, SPANS, POLICY, at(86400),
                           agents=["1001", "1002", "1003"])
    sections = {s.entity: by_name(s) for s in report.sections}
    assert sections["1001"]["calls handled"].actual == 2
    assert sections["1001"]["average talk time (ACD)"].actual == 150.0
    assert reports.result_text(sections["1001"]["average talk time (ACD)"]) == "pass"
    # an agent with no calls: every judged standard is n/a, never a pass
    idle = sections["1003"]
    assert reports.result_text(idle["average ACW"]) == "n/a"
    assert reports.result_text(idle["hold breaches"]) == "n/a"


def test_csv_has_one_row_per_standard_and_entity() -> None:
    report = reports.build("daily", "queue", DAY, FACTS, SPANS, POLICY, at(86400))
    rows = list(csv.DictReader(io.StringIO(reports.to_csv(report))))
    assert tuple(rows[0].keys()) == reports.CSV_COLUMNS
    assert len(rows) == sum(len(s.checks) for s in report.sections)
    sl = next(r for r in rows if r["entity"] == "main" and r["kpi"] == "service level")
    assert (sl["target"], sl["actual"], sl["result"], sl["unit"]) == (">= 80", "66.67", "fail",
                                                                      "%")


def test_html_is_printable_and_escapes() -> None:
    evil = [answered("x", 0, 1, 10, "1001", queue="<script>q</script>")]
    page = reports.to_html(reports.build("daily", "queue", DAY, evil, [], POLICY, at(86400)))
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "@media print" in page and "<table>" in page and "class='fail'" not in page
    empty = reports.to_html(reports.build("daily", "agent", DAY, [], [], POLICY, at(86400)))
    assert "No calls and no agent activity" in empty


@pytest.mark.std("STD-141")
def test_weekly_covers_monday_to_sunday() -> None:
    sunday = DAY + timedelta(days=6)
    late_sunday = CallFact(uniqueid="s", queue="main",
                           entered_at=datetime(2024, 5, 12, 23, 59, tzinfo=ZONE),
                           ended_at=datetime(2024, 5, 13, 0, 1, tzinfo=ZONE), outcome="abandoned")
    report = reports.build("weekly", "queue", sunday, [*FACTS, late_sunday], [], POLICY,
                           datetime(2024, 5, 13, 1, 0, tzinfo=ZONE))
    assert report.label == "2024-W19"
    assert by_name(report.sections[-1])["offered"].actual == 5
    assert report.period.end - report.period.start == timedelta(days=7)


def test_the_schedule() -> None:
    assert reports.due_reports(DAY) == [("daily", DAY)]
    sunday = DAY + timedelta(days=6)
    assert reports.due_reports(sunday) == [("daily", sunday), ("weekly", sunday)]
    # next run: 00:05 local after the given instant
    noon = datetime(2024, 5, 6, 12, 0, tzinfo=ZONE)
    assert reports.next_run(noon, ZONE) == datetime(2024, 5, 7, 0, 5, tzinfo=ZONE)
    early = datetime(2024, 5, 7, 0, 1, tzinfo=ZONE)
    assert reports.next_run(early, ZONE) == datetime(2024, 5, 7, 0, 5, tzinfo=ZONE)
    assert reports.next_run(early, ZONE).tzinfo is UTC


def test_report_files_are_written_whole(tmp_path: Path) -> None:
    report = reports.build("daily", "queue", DAY, FACTS, SPANS, POLICY, at(86400))
    written = reports.write_report_files(report, tmp_path / "reports")
    assert [p.name for p in written] == ["daily-2024-05-06-by-queue.csv",
                                         "daily-2024-05-06-by-queue.html"]
    assert not list((tmp_path / "reports").glob("*.tmp"))
    assert written[0].read_text().startswith("report,period_start")


def test_bad_requests_are_report_errors() -> None:
    import pytest

    with pytest.raises(reports.ReportError):
        reports.parse_day("2024-13-01", DAY)
    with pytest.raises(reports.ReportError):
        reports.period_of("monthly", DAY, ZONE)  # type: ignore[arg-type]
    with pytest.raises(reports.ReportError):
        reports.render(reports.build("daily", "queue", DAY, [], [], POLICY, at(0)), "pdf")


def test_reports_carry_each_rules_compliance_from_the_verdicts() -> None:
    """The same aggregation as the board's panel (engine/compliance.py), per queue, per
    agent and in total, against the trend targets; a report without verdicts has none."""
    def judged(rule: str, outcome: str, agent: str, queue: str) -> Verdict:
        return Verdict("x", rule, Outcome(outcome), None, None, "s", agent, queue,
                       at(600).timestamp(), "")
    found = [judged("STD-040", "pass", "1001", "main"), judged("STD-040", "fail", "1002", "main"),
             judged("STD-110", "pass", "1001", "sales"),
             judged("STD-110", "pass", "1001", "main")]
    report = reports.build("daily", "queue", DAY, FACTS, SPANS, POLICY, at(86400),
                           verdicts=found)
    main = [c for c in report.sections[0].checks if c.name == "compliance"]
    assert [(c.std, c.actual, reports.result_text(c)) for c in main] == [
        ("STD-040", 50.0, "fail"), ("STD-110", 100.0, "pass")]
    total = [c for c in report.sections[-1].checks if c.name == "compliance"]
    assert [(c.std, c.actual) for c in total] == [("STD-040", 50.0), ("STD-110", 100.0)]
    agents = reports.build("daily", "agent", DAY, FACTS, SPANS, POLICY, at(86400),
                           agents=["1001", "1002"], verdicts=found)
    per = {s.entity: {c.std: c.actual for c in s.checks if c.name == "compliance"}
           for s in agents.sections}
    assert per["1001"] == {"STD-040": 100.0, "STD-110": 100.0} and per["1002"] == {
        "STD-040": 0.0}
    assert "STD-040" in reports.to_csv(report)
    plain = reports.build("daily", "queue", DAY, FACTS, SPANS, POLICY, at(86400))
    assert not [c for s in plain.sections for c in s.checks if c.name == "compliance"]


SURVEY = [kpi.SurveyFact("1001", "main", 4, "service"),
          kpi.SurveyFact("1001", "main", 5, "resolved"),
          kpi.SurveyFact("1002", "sales", 2, "service"),
          kpi.SurveyFact("1002", "sales", None, "resolved")]  # hung up: asked, no response


@pytest.mark.std("STD-120")
def test_the_survey_in_the_daily_report_by_question_and_queue() -> None:
    report = reports.build("daily", "queue", DAY, FACTS, SPANS, POLICY, at(86400),
                           survey=SURVEY)
    lines = {(s.scope, s.entity): s for s in report.survey}
    total = lines[("total", reports.ALL)]
    assert (total.asked, total.answered, total.response_rate) == (4, 3, 0.75)
    assert total.mean_score == pytest.approx(11 / 3, abs=1e-4)
    assert lines[("question", "service")].mean_score == 3.0
    assert (lines[("question", "resolved")].response_rate,
            lines[("question", "resolved")].mean_score) == (0.5, 5.0)
    assert lines[("queue", "sales")].mean_score == 2.0
    rows = list(csv.DictReader(io.StringIO(reports.to_csv(report))))
    rate = [r for r in rows if r["scope"] == "survey-question" and r["entity"] == "resolved"
            and r["kpi"] == "survey response rate"]
    assert [(r["std"], r["unit"], r["actual"], r["result"]) for r in rate] == \
        [("STD-120", "%", "50", "info")]
    page = reports.to_html(report)
    # both languages' labels (a report file is read by whoever opens it)
    assert "满意度调查 / Post-call survey" in page and "回答率 / response rate" in page
    assert "服务满意度 / service" in page and "问题解决 / resolved" in page
    assert reports.summary(report)["survey"][0]["entity"] == reports.ALL


@pytest.mark.std("STD-120")
def test_the_survey_in_the_weekly_report_by_agent_and_none_is_unknown() -> None:
    nobody = [kpi.SurveyFact("1003", "main", None, "service")]
    report = reports.build("weekly", "agent", DAY, FACTS, SPANS, POLICY, at(86400),
                           survey=SURVEY + nobody)
    lines = {(s.scope, s.entity): s for s in report.survey}
    assert lines[("agent", "1001")].mean_score == 4.5
    assert lines[("question", "1002 / service")].mean_score == 2.0
    assert (lines[("agent", "1003")].response_rate, lines[("agent", "1003")].mean_score) \
        == (0.0, None)  # asked, never answered: the mean is unknown, not 0
    page = reports.to_html(report)
    assert "1002 / 服务满意度 / service" in page
    # no survey at all: no survey table, no survey rows
    plain = reports.build("daily", "agent", DAY, FACTS, SPANS, POLICY, at(86400))
    assert plain.survey == () and "survey" not in reports.to_csv(plain)
    assert "Post-call survey" not in reports.to_html(plain)


@pytest.mark.std("STD-133")
def test_the_ticket_figures_in_the_report_files() -> None:
    """Issue 19: the complaint, reply and follow-up KPIs reach the daily and weekly files
    (CSV rows under scope ``tickets``, a table in both languages, the JSON summary); the
    reply rate is judged against kpi.reply_rate_target_pct, the others are information."""
    from callflow.engine.tickets import Ticket
    opened = at(3600)
    tickets = [Ticket("complaint_simple", opened, replied_at=opened + timedelta(hours=1),
                      followed_up_at=opened + timedelta(hours=2)),
               Ticket("enquiry", opened),  # never answered: the reply rate is 50 %
               ]
    report = reports.build("daily", "queue", DAY, FACTS, SPANS, POLICY, at(86400),
                           tickets=tickets)
    assert report.tickets is not None and report.tickets.logged == 2
    rows = {r["kpi"]: r for r in csv.DictReader(io.StringIO(reports.to_csv(report)))
            if r["scope"] == "tickets"}
    assert (rows["reply rate"]["std"], rows["reply rate"]["actual"],
            rows["reply rate"]["target"], rows["reply rate"]["result"]) == \
        ("STD-133", "50", ">= 100", "fail")
    assert (rows["follow-up coverage"]["actual"], rows["follow-up coverage"]["result"]) == \
        ("100", "info")
    answered_calls = sum(1 for c in FACTS if c.answered_at is not None)
    assert float(rows["complaint rate"]["actual"]) == pytest.approx(
        round(100 / answered_calls, 1), abs=0.1)
    page = reports.to_html(report)
    assert "工单 / Tickets" in page and "回复率 / reply rate" in page
    assert reports.summary(report)["tickets"]["reply_rate_pct"] == 50
    # no tickets loaded (build without them): no table, no rows
    plain = reports.build("daily", "queue", DAY, FACTS, SPANS, POLICY, at(86400))
    assert plain.tickets is None and ",tickets," not in reports.to_csv(plain)
    assert "回复率" not in reports.to_html(plain)
