"""Inactivity log-out (STD-102), pure: who is due, and when to look again.

STD-102 (003:67): during a meal or a long spell without input the desktop must be left
on the service page (客户服务), otherwise the system logs the agent out. What counts:

* **input**: the desktop reports user input (keys, clicks, pointer; throttled by the
  page) with ``activity`` frames; working counts as input too: a call offered, talked,
  held or wrapped up (ringing, on_call, on_hold, acw) restarts the idle clock when it
  ends, so nobody is logged out for the minutes of a long call;
* **the service page**: the desktop page is open (its websocket connected) and visible
  (the page reports ``document.visibilityState``); a closed or hidden desktop is not on it;
* **who may be logged out**: an agent ready, not-ready or busy (the meal of STD-102 is
  busy(meal)); never one ringing, on a call, on hold or in ACW;
* ``agents.inactivity_logout_min`` = 0 switches it off.

The runtime edge (desktop/inactivity.py) keeps the facts and the timer; the rule is here.
"""

from __future__ import annotations

from callflow.agents.events import AgentState
from callflow.engine.policy import Policy
from callflow.engine.rules import enforces

#: States in which a long spell without input logs the agent out (STD-102).
IDLE_STATES = frozenset({AgentState.READY, AgentState.NOT_READY, AgentState.BUSY})

#: The reason a log-out by this rule carries (the state log, the desktop, the board).
INACTIVITY = "inactivity"


def idle_limit_s(policy: Policy) -> float:
    """Seconds without input before the log-out; 0 = never."""
    return max(0.0, policy.agents.inactivity_logout_min) * 60


@enforces("STD-102", policy=("agents.inactivity_logout_min",))
def inactivity_logout_due(state: AgentState, last_input: float, on_service_page: bool,
                          now: float, policy: Policy) -> bool:
    """Is this agent to be logged out now? ``last_input``: the later of the desktop's last
    reported input and the end of the agent's last work (monotonic seconds)."""
    limit = idle_limit_s(policy)
    if limit <= 0 or state not in IDLE_STATES or on_service_page:
        return False
    return now - last_input >= limit


def next_check_at(last_input: float, policy: Policy) -> float | None:
    """When the rule can first be due for this input (None: switched off)."""
    limit = idle_limit_s(policy)
    return None if limit <= 0 else last_input + limit


def counts_as_input(state: AgentState, prev_state: AgentState | None) -> bool:
    """A state change that restarts the idle clock: work begins or ends, or a log-in."""
    work = {AgentState.LOGGED_OUT, *(set(AgentState) - IDLE_STATES)}
    return state in work or prev_state is None or prev_state in work
