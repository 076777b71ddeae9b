"""The post-call survey's rules (engine/survey.py) and its KPIs (engine/kpi.py)."""

from __future__ import annotations

import pytest

from callflow.engine import kpi, survey
from callflow.engine.outbound import follow_up_of
from callflow.engine.policy import Policy, PolicyError, parse_policy

DEFAULTS = Policy.defaults()


@pytest.mark.std("STD-120")
@pytest.mark.parametrize("key", ["1", "2", "3", "4", "5", " 4 "])
def test_one_key_one_to_five_is_the_score(key: str) -> None:
    reading = survey.read_keys(key, 1, DEFAULTS)
    assert (reading.score, reading.how) == (int(key), "answered")


@pytest.mark.std("STD-120")
@pytest.mark.parametrize("keys", ["0", "6", "9", "*", "#", "45", "11"])
def test_garbage_is_asked_again_once_then_no_response(keys: str) -> None:
    first = survey.read_keys(keys, 1, DEFAULTS)
    assert (first.score, first.how) == (None, None)  # ask again
    second = survey.read_keys(keys, 2, DEFAULTS)
    assert (second.score, second.how) == (None, "invalid")
    never = parse_policy({"survey": {"reasks": 0}})
    assert survey.read_keys(keys, 1, never).how == "invalid"


@pytest.mark.std("STD-120")
def test_silence_is_no_response_at_once() -> None:
    assert survey.read_keys("", 1, DEFAULTS).how == "timeout"


@pytest.mark.std("STD-120")
def test_the_survey_is_off_by_default_and_only_for_an_agent_release() -> None:
    assert not survey.survey_due(DEFAULTS, agent_released=True, agent_id="1001")
    on = parse_policy({"survey": {"enabled": True}})
    assert survey.survey_due(on, agent_released=True, agent_id="1001")
    assert not survey.survey_due(on, agent_released=False, agent_id="1001")
    assert not survey.survey_due(on, agent_released=True, agent_id="")


@pytest.mark.std("STD-120")
def test_outbound_calls_are_surveyed_only_for_the_kinds_the_policy_names() -> None:
    on = parse_policy({"survey": {"enabled": True}})
    assert survey.survey_due(on, agent_released=True, agent_id="1001", kind="inbound")
    assert not survey.survey_due(on, agent_released=True, agent_id="1001", kind="callback")
    both = parse_policy({"survey": {"enabled": True, "call_kinds": ["inbound", "callback"]}})
    assert survey.survey_due(both, agent_released=True, agent_id="1001", kind="callback")
    assert not survey.survey_due(both, agent_released=True, agent_id="1001", kind="follow_up")
    outbound_only = parse_policy({"survey": {"enabled": True, "call_kinds": ["follow_up"]}})
    assert not survey.survey_due(outbound_only, agent_released=True, agent_id="1001")
    assert not survey.survey_due(outbound_only, agent_released=False, agent_id="1001",
                                 kind="follow_up")


@pytest.mark.parametrize("kinds", [["outbound"], ["inbound", "inbound"]])
def test_an_unknown_or_repeated_call_kind_is_one_clear_error(kinds: list[str]) -> None:
    with pytest.raises(PolicyError, match="call kind"):
        parse_policy({"survey": {"call_kinds": kinds}})


def test_a_hang_up_leaves_every_question_left_without_response() -> None:
    left = survey.unanswered("c1", "1001", "main", ["service", "resolved"], 1.0)
    assert [(a.question, a.score, a.how) for a in left] == [
        ("service", None, "hangup"), ("resolved", None, "hangup")]


def test_question_codes_are_checked() -> None:
    with pytest.raises(PolicyError, match=r"survey\.questions"):
        parse_policy({"survey": {"questions": ["Bad Code"]}})
    with pytest.raises(PolicyError, match=r"survey\.questions"):
        parse_policy({"survey": {"questions": []}})


@pytest.mark.std("STD-120")
def test_survey_kpis_response_rate_and_mean_per_agent_and_queue() -> None:
    facts = [kpi.SurveyFact("1001", "main", 4), kpi.SurveyFact("1001", "main", None),
             kpi.SurveyFact("1002", "main", 5), kpi.SurveyFact("1002", "vip", 2)]
    figures = kpi.survey_kpis(facts)
    assert figures["total"] == {"asked": 4, "answered": 3, "response_rate": 0.75,
                                "mean_score": pytest.approx(3.6667, abs=1e-4)}
    assert figures["agents"]["1001"] == {"asked": 2, "answered": 1, "response_rate": 0.5,
                                         "mean_score": 4.0}
    assert figures["queues"]["vip"]["mean_score"] == 2.0
    nobody = kpi.survey_kpis([kpi.SurveyFact("1003", "main", None)])
    assert nobody["total"]["mean_score"] is None  # unknown, not 0
    assert kpi.survey_kpis([])["total"]["response_rate"] is None


@pytest.mark.std("STD-086")
def test_the_follow_up_disposition_asks_for_a_follow_up_task() -> None:
    assert follow_up_of("follow_up", DEFAULTS) == "general"
    assert follow_up_of("resolved", DEFAULTS) is None
    assert follow_up_of("no_such_code", DEFAULTS) is None
    fault = parse_policy({"outbound": {"dispositions": [
        {"code": "fault", "label_zh": "故障", "label_en": "Fault", "follow_up": "fault"}]}})
    assert follow_up_of("fault", fault) == "fault"
