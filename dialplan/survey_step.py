"""The post-call survey (STD-120) as a dialplan step: the one loop the inbound flow
(its caller, once the agent hung up) and the outbound survey route (a customer kept by
Dial's ``F()``) both run.

Each question is answered 1-5 by one key; garbage is asked again per ``survey.reasks``
(engine/survey.py decides what a key press means); every answer is recorded with the
call, the agent and the queue. A hang-up leaves the questions not yet answered as "no
response", so the KPIs count the caller who left.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from callflow.dialplan.agi import AgiSession
from callflow.engine import survey
from callflow.engine.policy import Policy
from callflow.errors import CallerHungUp
from callflow.pbx.prompts import PromptLibrary

log = logging.getLogger(__name__)

#: Every key a caller can press: each is heard during a survey question (garbage included).
SURVEY_KEYS = "0123456789*#"


@dataclass(frozen=True)
class SurveyOf:
    """Whose answers these are: the call's records, its agent and its queue."""

    call_id: str
    agent_id: str
    queue: str


async def run_survey(session: AgiSession, prompts: PromptLibrary, policy: Policy,
                     of: SurveyOf, record: Callable[[list[survey.SurveyAnswered]], None],
                     ) -> bool:
    """Ask every question; False when the caller hung up (the rest: no response)."""
    questions = list(policy.survey.questions)
    try:
        await _play(session, prompts, "survey_intro")
        while questions:
            asked = 0
            while True:
                asked += 1
                keys = await _keys(session, prompts, policy, questions[0])
                reading = survey.read_keys(keys, asked, policy)
                if reading.how is not None:
                    break
            record([survey.SurveyAnswered(of.call_id, of.agent_id, of.queue,
                                          questions.pop(0), reading.score, reading.how,
                                          time.time())])
        await _play(session, prompts, "survey_thanks")
    except CallerHungUp:
        log.info("call %s: caller hung up during the survey", of.call_id)
        unanswered = survey.unanswered(of.call_id, of.agent_id, of.queue, questions,
                                       time.time())
        if unanswered:
            record(unanswered)
        return False
    return True


async def _keys(session: AgiSession, prompts: PromptLibrary, policy: Policy,
                question: str) -> str:
    """The keys a caller pressed for one question: the first (during the question or
    within ``answer_timeout_s`` after it; any key, so # and * are heard too) and any
    second one within ``inter_digit_s`` (several digits are garbage)."""
    path = await asyncio.to_thread(prompts.path, f"survey_{question}")
    first = await session.stream_file(str(path), SURVEY_KEYS)
    if not first:
        first = await session.wait_for_digit(int(policy.survey.answer_timeout_s * 1000))
    if not first:
        return ""
    return first + await session.wait_for_digit(int(policy.survey.inter_digit_s * 1000))


async def _play(session: AgiSession, prompts: PromptLibrary, name: str) -> None:
    path = await asyncio.to_thread(prompts.path, name)
    await session.stream_file(str(path))
