"""The post-call IVR survey (STD-120, issue 18): what a key press means, and when to ask
again. Pure: the AGI flow (dialplan/inbound.py) plays the questions and hands in what
the caller keyed; this module says whether that is a score, a re-ask or no response.

Decisions (and why):

* **A score is exactly one key 1..5.** 0, 6-9, ``*``, ``#`` or several digits are
  garbage: the question is asked again ``survey.reasks`` times (1), then it counts as
  no response — a caller fumbling the keypad is not a 1.
* **Silence after a question is no response** (``timeout``), and a caller who hangs up
  during the survey gives no response to the question being asked and to every one
  after it (``hangup``): a hang-up is never a score, and the survey's questions are
  always all on the record, so the response rate divides by questions asked.
* **Who is rated:** the agent who took the call, and its queue, as the flow knew them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from callflow.engine.effects import DomainEvent
from callflow.engine.policy import Policy
from callflow.engine.rules import enforces

#: How one question ended: answered (a score), or why there is none.
How = Literal["answered", "timeout", "invalid", "hangup"]
#: The lowest and highest score a caller can key.
MIN_SCORE, MAX_SCORE = 1, 5


@dataclass(frozen=True)
class SurveyAnswered(DomainEvent):
    """One question of one call's survey: ``score`` None = no response (``how`` says why).
    ``at`` is epoch seconds (the flow owns the wall clock)."""

    call_id: str
    agent_id: str
    queue: str
    question: str
    score: int | None
    how: How
    at: float

    def as_record(self) -> dict[str, object]:
        return {"call_uniqueid": self.call_id, "agent_id": self.agent_id,
                "queue": self.queue, "question": self.question, "score": self.score,
                "how": self.how, "at": self.at}


@dataclass(frozen=True)
class Reading:
    """What one key press (or silence) means for the question being asked."""

    score: int | None  # 1..5 when answered
    how: How | None  # None: ask the question again
    asked: int  # times the question has been asked so far


@enforces("STD-120", policy=("survey.reasks",))
def read_keys(keys: str, asked: int, policy: Policy) -> Reading:
    """The caller keyed ``keys`` ("" = silence) after the ``asked``-th asking of a question.

    One key 1..5 is the score; silence is no response (timeout); anything else is asked
    again while re-asks are left, then no response (invalid)."""
    keys = keys.strip()
    if not keys:
        return Reading(None, "timeout", asked)
    if len(keys) == 1 and keys.isdigit() and MIN_SCORE <= int(keys) <= MAX_SCORE:
        return Reading(int(keys), "answered", asked)
    if asked <= policy.survey.reasks:
        return Reading(None, None, asked)
    return Reading(None, "invalid", asked)


#: The call kind of an inbound call (outbound calls are their task's kind: callback...).
INBOUND = "inbound"


@enforces("STD-120", policy=("survey.enabled", "survey.call_kinds"))
def survey_due(policy: Policy, *, agent_released: bool, agent_id: str,
               kind: str = INBOUND) -> bool:
    """Is the caller (the customer) offered the survey? Only when the Policy switches it on
    for this kind of call (``inbound`` or an outbound task kind), the call was answered by
    an agent, and that agent hung up first (the customer is still on the line: one who
    hung up cannot be asked)."""
    return (policy.survey.enabled and kind in policy.survey.call_kinds and agent_released
            and bool(agent_id))


def unanswered(call_id: str, agent_id: str, queue: str, questions: list[str],
               at: float) -> list[SurveyAnswered]:
    """The questions a caller who hung up never heard: no response each (``hangup``)."""
    return [SurveyAnswered(call_id, agent_id, queue, q, None, "hangup", at) for q in questions]
