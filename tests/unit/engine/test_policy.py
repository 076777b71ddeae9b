"""Policy: the standards' numbers, ring conversion, strict loading (engine/policy.py), and the
files generated from it (callflow/policy_docs.py)."""

from __future__ import annotations

from datetime import date, time
from pathlib import Path

import pytest

from callflow import policy_docs
from callflow.engine.policy import (
    REMOVED_KEYS,
    STOCK_RING_CADENCES_MS,
    Policy,
    late_answer_seconds,
    load_policy,
    min_answer_delay_seconds,
    outbound_no_answer_seconds,
    parse_policy,
    ring_limit_seconds,
    service_level_seconds,
)
from callflow.errors import PolicyError
from callflow.policy_docs import policy_table, render_example_toml, render_markdown

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "callflow" / "policy.example.toml"
DOCS = REPO / "docs" / "policy.md"


@pytest.fixture(scope="module")
def defaults() -> Policy:
    return Policy.defaults()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(text, encoding="utf-8")
    return path


def load_error(tmp_path: Path, text: str) -> str:
    with pytest.raises(PolicyError) as info:
        load_policy(write(tmp_path, text))
    return str(info.value)


# --- the standards' numbers ---------------------------------------------------------------

# (dotted key, default) straight from standards.md "Policy defaults at a glance", the text
# and the conflicts; one line per rule so a changed default names its STD.
STANDARD_DEFAULTS = [
    ("kpi.average_answer_rings_target", 2),  # STD-006
    ("answering.ring_limit_rings", 3),  # STD-008
    ("answering.apology_after_rings", 3),  # STD-009
    ("answering.min_answer_delay_rings", 0),  # C-12: off
    ("hold.reminder_s", 15),  # STD-041
    ("hold.reminder_repeat_s", 15),  # STD-041 (every 15 s)
    ("hold.limit_s", 30),  # STD-040
    ("hold.breach_scope", "episode"),  # C-5
    ("hold.max_wait_s", 120),  # STD-043
    ("hold.auto_retrieve_s", 0),  # off
    ("waiting.announcement_interval_s", 15),  # STD-047
    ("waiting.callback_offer_s", 120),  # STD-047 / STD-043
    ("special_calls.silent_form", "standard"),  # C-1
    ("special_calls.silent_prompts", 3),  # STD-056
    ("special_calls.silent_gap_s", 5),  # STD-056
    ("special_calls.silent_release_delay_s", 5),  # STD-056
    ("special_calls.silent_short_repeats", 2),  # STD-057
    ("special_calls.quiet_line_release_delay_s", 5),  # STD-059
    ("special_calls.noisy_line_release_delay_s", 5),  # STD-060
    ("special_calls.nuisance_warnings", 3),  # STD-064
    ("special_calls.nuisance_final_action", "transfer_attendant"),  # C-2
    ("hangup.closing_grace_s", 2),  # STD-111
    ("hangup.strict_mode", False),  # C-6
    ("routing.repeat_caller_lookback_days", 30),  # STD-073
    ("outbound.no_answer_rings", 6),  # STD-081
    ("outbound.max_attempts", 3),  # STD-081 retry rule
    ("outbound.calling_window_start", time(9, 0)),  # STD-085
    ("outbound.calling_window_end", time(21, 0)),  # STD-085
    ("outbound.followup_general_days", 3),  # STD-086
    ("outbound.followup_fault_days", 1),  # STD-089
    ("outbound.attempts_per_number_per_run", 1),  # STD-090
    ("agents.acw_limit_s", 60),  # STD-100
    ("agents.acw_auto_ready", True),  # STD-100 (agents issue)
    ("kpi.acw_average_target_s", 60),  # STD-100
    ("kpi.talk_average_target_s", 180),  # STD-101
    ("agents.absence_flag_min", 20),  # STD-106
    ("qa.min_monitored_per_agent_month", 5),  # STD-115, C-8
    ("qa.penalties.non_standard_phrase", 10),  # STD-119
    ("qa.penalties.service_without_consent", 50),  # STD-119
    ("kpi.short_abandon_s", 5),  # KPI definitions
    ("kpi.service_level_target_pct", 80),  # KPI definitions
    ("kpi.service_level_threshold_rings", 3),  # KPI definitions
    ("kpi.within_rings_target_pct", 100),  # KPI definitions
    ("calendar.workdays", ["mon", "tue", "wed", "thu", "fri"]),  # working days
    ("calendar.work_start", time(9, 0)),
    ("greetings.language", "zh"),
    ("agents.feature_codes.not_ready", "*21"),
    ("agents.feature_codes.ready", "*22"),
    ("agents.feature_codes.busy", "*23"),
    ("agents.feature_codes.end_acw", "*24"),
]


def dig(obj: object, dotted: str) -> object:
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


@pytest.mark.parametrize(("key", "expected"), STANDARD_DEFAULTS, ids=[k for k, _ in
                                                                       STANDARD_DEFAULTS])
def test_default_matches_standards(defaults: Policy, key: str, expected: object) -> None:
    assert dig(defaults, key) == expected


def test_reason_defaults(defaults: Policy) -> None:
    meal = defaults.agents.busy_reason("meal")
    assert meal is not None and meal.max_min == 30  # STD-104
    away = defaults.agents.busy_reason("away")
    assert away is not None and away.approval_required  # STD-106
    not_ready = {r.code: r for r in defaults.agents.not_ready_reasons}
    assert not_ready["ring_no_answer"].system and not_ready["unreachable"].system  # STD-099
    assert {"break", "meal", "training", "meeting", "back_office"} <= set(not_ready)
    assert defaults.agents.state_labels.busy.zh == "示忙"  # STD-097
    assert defaults.agents.state_labels.not_ready.zh != "未就绪"  # C-3


def test_every_number_declares_unit_and_rule(defaults: Policy) -> None:
    rows = policy_table(defaults)
    numeric = [r for r in rows if isinstance(r.value, int | float)
               and not isinstance(r.value, bool)]
    assert len(numeric) > 50
    missing = [r.key for r in numeric if not r.unit or not r.std or not r.description]
    assert missing == []


def test_policy_is_immutable(defaults: Policy) -> None:
    with pytest.raises(ValueError, match="frozen"):
        defaults.hold.limit_s = 10  # type: ignore[misc]


# --- rings -------------------------------------------------------------------------------


@pytest.mark.parametrize(("country", "cycle", "three", "six"), [
    ("cn", 5.0, 15.0, 30.0),
    ("us", 6.0, 18.0, 36.0),
    ("uk", 3.0, 9.0, 18.0),
])
def test_ring_conversion(country: str, cycle: float, three: float, six: float) -> None:
    policy = parse_policy({"country": country})
    assert policy.ring_cycle_s == cycle
    assert policy.rings_to_seconds(3) == three
    assert ring_limit_seconds(policy) == three  # STD-008
    assert late_answer_seconds(policy) == three  # STD-009
    assert service_level_seconds(policy) == three
    assert outbound_no_answer_seconds(policy) == six  # STD-081
    assert min_answer_delay_seconds(policy) == 0  # C-12 off


def test_cadence_matches_indications_conf() -> None:
    assert STOCK_RING_CADENCES_MS["cn"] == (1000, 4000)
    assert STOCK_RING_CADENCES_MS["us"] == (2000, 4000)
    assert parse_policy({"country": "us"}).ring_cadence_ms == (2000, 4000)


def test_custom_cadence() -> None:
    policy = parse_policy({"country": "custom", "custom_cadence_ms": [1500, 2500]})
    assert policy.ring_cycle_s == 4.0
    assert policy.country == "custom"
    with pytest.raises(PolicyError, match=r"custom_cadence_ms: .*on,off pairs"):
        parse_policy({"country": "custom"})
    with pytest.raises(PolicyError, match=r"custom_cadence_ms: .*on,off pairs"):
        parse_policy({"country": "custom", "custom_cadence_ms": [1000]})
    with pytest.raises(PolicyError, match=r"custom_cadence_ms: only used with"):
        parse_policy({"custom_cadence_ms": [1000, 4000]})


def test_unknown_country() -> None:
    with pytest.raises(PolicyError, match=r"country: unknown country 'xx'"):
        parse_policy({"country": "xx"})


@pytest.mark.parametrize(("seconds", "rings"), [
    (0, 0), (4, 1), (5, 1), (9, 2), (12, 3), (14, 3), (15, 3), (15.000000000000002, 3),
    (15.1, 4), (18, 4),
])
def test_seconds_to_rings_cn(defaults: Policy, seconds: float, rings: int) -> None:
    # KPI definitions: ring count = ceil(seconds / ring_cycle_s); test hint 2 (4, 9, 14, 12 s)
    assert defaults.seconds_to_rings(seconds) == rings


# --- loading -----------------------------------------------------------------------------


def test_no_file_means_defaults() -> None:
    assert load_policy(None) == Policy.defaults()


def test_toml_override(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, """
country = "us"
[greetings]
centre_name = "诸暨广播电视台"
[hold]
limit_s = 45
breach_scope = "call"
[calendar]
holidays = [2026-10-01, 2026-10-02]
work_start = "08:30"
[[agents.busy_reasons]]
code = "meal"
label_zh = "用餐"
label_en = "Meal"
max_min = 45
"""))
    assert policy.country == "us" and ring_limit_seconds(policy) == 18
    assert policy.hold.limit_s == 45 and policy.hold.breach_scope == "call"
    assert policy.hold.reminder_s == 15  # untouched keys keep their default
    assert policy.calendar.work_start == time(8, 30)
    assert policy.calendar.holidays == [date(2026, 10, 1), date(2026, 10, 2)]
    assert [r.code for r in policy.agents.busy_reasons] == ["meal"]
    assert policy.greetings.centre_name == "诸暨广播电视台"


def test_unknown_key_is_named(tmp_path: Path) -> None:
    assert "hold.limt_s: unknown key" in load_error(tmp_path, "[hold]\nlimt_s = 30\n")
    assert "holdd: unknown key" in load_error(tmp_path, "[holdd]\nlimit_s = 30\n")
    message = load_error(tmp_path, '[[agents.busy_reasons]]\ncode="x"\nlabel_zh="x"\n'
                                   'label_en="x"\ncolour="red"\n')
    assert "agents.busy_reasons[0].colour: unknown key" in message


def test_bad_type_is_named(tmp_path: Path) -> None:
    message = load_error(tmp_path, '[hold]\nlimit_s = "30"\n')
    assert "hold.limit_s: must be a number (got '30')" in message
    assert "answering.ring_limit_rings: must be an integer" in load_error(
        tmp_path, "[answering]\nring_limit_rings = 3.5\n")
    assert "hangup.strict_mode: must be true or false" in load_error(
        tmp_path, "[hangup]\nstrict_mode = 1\n")


def test_bad_value_is_named(tmp_path: Path) -> None:
    assert "hold.limit_s: must be >= 0" in load_error(tmp_path, "[hold]\nlimit_s = -1\n")
    message = load_error(tmp_path, '[special_calls]\nnuisance_final_action = "shout"\n')
    assert "special_calls.nuisance_final_action: must be one of" in message
    assert "'transfer_attendant', 'escalate' or 'hangup'" in message
    assert "qa.min_monitored_per_agent_month: must be >= 1" in load_error(
        tmp_path, "[qa]\nmin_monitored_per_agent_month = 0\n")
    assert "outbound.calling_window_end: must be after calling_window_start" in load_error(
        tmp_path, '[outbound]\ncalling_window_end = "08:00"\n')
    assert "calendar.work_start: must be a time HH:MM" in load_error(
        tmp_path, '[calendar]\nwork_start = "nine"\n')
    assert "calendar.timezone: unknown time zone" in load_error(
        tmp_path, '[calendar]\ntimezone = "Mars/Olympus"\n')


def test_all_problems_reported_at_once(tmp_path: Path) -> None:
    message = load_error(tmp_path, "[hold]\nlimit_s = -1\nreminder_s = 0\n")
    assert "hold.limit_s" in message and "hold.reminder_s: must be > 0" in message


def test_missing_file_names_path(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(PolicyError, match=str(path)):
        load_policy(path)


def test_invalid_toml_names_path(tmp_path: Path) -> None:
    message = load_error(tmp_path, "[hold\nlimit_s = 1\n")
    assert "policy.toml: not valid TOML" in message


def test_reason_rules(tmp_path: Path) -> None:
    reasons = ('[[agents.not_ready_reasons]]\ncode = "break"\nlabel_zh = "小休"\n'
               'label_en = "Break"\n')
    assert "agents.not_ready_reasons: the engine needs system reasons rejected, " \
           "ring_no_answer, unreachable" in load_error(tmp_path, reasons)
    dup = ('[[agents.busy_reasons]]\ncode = "meal"\nlabel_zh = "a"\nlabel_en = "a"\n'
           '[[agents.busy_reasons]]\ncode = "meal"\nlabel_zh = "b"\nlabel_en = "b"\n')
    assert "agents.busy_reasons: duplicate reason codes: meal" in load_error(tmp_path, dup)
    assert "agents.feature_codes: busy_reason 'nap'" in load_error(
        tmp_path, '[agents.feature_codes]\nbusy_reason = "nap"\n')
    assert "agents.state_labels.not_ready: label 未就绪 belongs to after-call work" in \
        load_error(tmp_path, '[agents.state_labels]\nnot_ready = { zh = "未就绪", en = "x" }\n')


def test_opening_placeholders_checked(tmp_path: Path) -> None:
    message = load_error(tmp_path, '[greetings]\nopening_template = "您好,{company}"\n')
    assert "greetings.opening_template: unknown placeholder {company}" in message


def test_a_removed_key_is_refused_with_why(tmp_path: Path) -> None:
    """Issue 17: keys with no behaviour left the Policy; a file that still sets one gets an
    error naming the key and why, never a silent default."""
    message = load_error(tmp_path, '[availability]\nclosed_hours = true\n'
                                   '[agents]\nshift_end_flag_min = 5\n'
                                   '[queues.vip]\ntime_of_day_greetings = true\n')
    assert "availability: removed from the Policy (the line is served 7x24 (STD-001)" \
        in message
    assert "agents.shift_end_flag_min: removed from the Policy" in message
    assert "queues.vip.time_of_day_greetings: removed from the Policy" in message
    for dotted in REMOVED_KEYS:
        section, _, key = dotted.rpartition(".")
        text = f"[{section}]\n{key} = 1\n" if section else f"[{key}]\nx = 1\n"
        assert f"{dotted}: removed from the Policy" in load_error(tmp_path, text), dotted


# --- per-queue overrides -------------------------------------------------------------------


def test_for_queue(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, """
[queues.sales]
opening_template = "您好,{centre}销售热线,{agent_name}为您服务"
agent_identity = "name"
service_level_target_pct = 90
"""))
    sales = policy.for_queue("sales")
    assert sales.greetings.agent_identity == "name"
    assert sales.kpi.service_level_target_pct == 90
    assert sales.greetings.language == "zh"  # not overridden
    assert policy.kpi.service_level_target_pct == 80  # the deployment's own is untouched
    assert policy.for_queue("support") is policy
    rows = {r.key: r.value for r in policy_table(policy)}
    assert rows["queues.sales.service_level_target_pct"] == 90


def test_queue_override_key_checked(tmp_path: Path) -> None:
    assert "queues.sales.hold_limit_s: unknown key" in load_error(
        tmp_path, "[queues.sales]\nhold_limit_s = 10\n")
    assert "queues.sales.service_level_target_pct: must be <= 100" in load_error(
        tmp_path, "[queues.sales]\nservice_level_target_pct = 120\n")


# --- calendar and greetings ------------------------------------------------------------------


def test_business_calendar() -> None:
    policy = parse_policy({"calendar": {"holidays": [date(2026, 10, 1)],
                                        "extra_workdays": [date(2026, 10, 10)]}})
    cal = policy.calendar
    assert cal.is_workday(date(2026, 9, 30))  # Wednesday
    assert not cal.is_workday(date(2026, 10, 1))  # holiday on a Thursday
    assert not cal.is_workday(date(2026, 10, 3))  # Saturday
    assert cal.is_workday(date(2026, 10, 10))  # make-up Saturday


def test_holiday_greeting(defaults: Policy) -> None:
    greeting = defaults.greetings.holiday_greeting(date(2027, 1, 1))
    assert greeting is not None and greeting.greeting.startswith("新年好")  # STD-017
    assert defaults.greetings.holiday_greeting(date(2027, 1, 2)) is None
    assert defaults.greetings.holiday_greeting(date(2027, 11, 1)) is None
    policy = parse_policy({"greetings": {"holiday_greetings": [
        {"on": "01-01", "greeting": "yearly"}, {"on": "2027-01-01", "greeting": "once"}]}})
    chosen = policy.greetings.holiday_greeting(date(2027, 1, 1))
    assert chosen is not None and chosen.greeting == "once"
    with pytest.raises(PolicyError, match=r"holiday_greetings\[0\]\.on: not a calendar date"):
        parse_policy({"greetings": {"holiday_greetings": [{"on": "02-30", "greeting": "x"}]}})


# --- generated files ------------------------------------------------------------------------


def test_example_file_is_generated_from_the_model() -> None:
    assert EXAMPLE.read_text(encoding="utf-8") == render_example_toml(), (
        "regenerate: python -m callflow.policy_docs example > callflow/policy.example.toml")


def test_example_file_round_trips() -> None:
    assert load_policy(EXAMPLE) == Policy.defaults()


def test_example_file_lists_every_key() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    for row in policy_table(Policy.defaults()):
        leaf = row.key.rsplit(".", 1)[-1]
        assert f"\n{leaf} = " in text or f"[[{row.key}]]" in text or row.key == "queues", row.key


def test_docs_are_generated_from_the_model() -> None:
    assert DOCS.read_text(encoding="utf-8") == render_markdown(), (
        "regenerate: python -m callflow.policy_docs markdown > docs/policy.md")


def test_cli_show(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert policy_docs.main(["show"]) == 0
    out = capsys.readouterr().out
    assert "hold.limit_s = 30 s  [STD-040]" in out
    bad = write(tmp_path, "[hold]\nlimit_s = -1\n")
    assert policy_docs.main(["show", "--policy", str(bad)]) == 2
    assert "hold.limit_s: must be >= 0" in capsys.readouterr().err
