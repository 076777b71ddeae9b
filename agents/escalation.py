"""The agent's "escalate" button (STD-066, STD-147), pure: may the agent escalate now,
and the alarm that carries the live call to the board.

STD-066: a caller who cannot be calmed is reported at once to the floor supervisor;
the product's "escalate" alerts the board with the live call so a supervisor can listen
in or take over (STD-146). Only an agent on a live call (on_call or on_hold) escalates;
the alarm names the call, the agent, the caller (masked: the board shows it unmasked
only to roles that may see numbers), how long the call has lasted, and the agent's leg
(the channel ChanSpy listens to). It stays open until a supervisor acknowledges it or
the call ends (board/alarms.py clears it then).
"""

from __future__ import annotations

from callflow.agents.events import AgentState
from callflow.agents.state import AgentSnapshot
from callflow.engine.effects import Alarm
from callflow.engine.rules import enforces
from callflow.errors import StateError

ESCALATION = "escalation"
#: The longest reason an agent may type with an escalation (characters).
MAX_ESCALATION_REASON = 200


@enforces("STD-066", "STD-147")
def escalation_alarm(agent: AgentSnapshot, reason: str, *, caller: str, channel: str,
                     duration_s: float) -> Alarm:
    """The board alarm of one escalation; StateError when the agent is on no live call.

    ``caller`` is already masked by the edge; ``duration_s``: how long the call has been
    answered (the edge reads the call's answer time against the wall clock)."""
    if agent.state not in (AgentState.ON_CALL, AgentState.ON_HOLD) or not agent.call_id:
        raise StateError("not_on_call", f"escalate during a call; agent {agent.agent_id} "
                                        f"is {agent.state.value}")
    if not isinstance(reason, str) or len(reason) > MAX_ESCALATION_REASON:
        raise StateError("reason_too_long",
                         f"the reason is at most {MAX_ESCALATION_REASON} characters")
    return Alarm(ESCALATION, {
        "agent_id": agent.agent_id, "call_id": agent.call_id, "caller": caller,
        "channel": channel, "duration_s": round(max(0.0, duration_s), 1),
        "reason": reason, "state": agent.state.value}, std="STD-066")
