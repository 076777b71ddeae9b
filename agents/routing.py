"""Which agent a waiting call is offered to next: the routing rules, pure.

callflow routes, not app_queue (design.md, "Who routes calls"). The rules:

* only agents who serve the call's queue (their skills in the roster) are candidates;
* first come, first served: a call takes no agent while an older call of the same
  queue is still waiting for one;
* among the candidates, the routable agent ready the longest (``state.longest_idle``);
  a named-agent call (STD-071) asks for that one agent and is not held back by
  older calls, since nobody else may take it;
* an agent a feature is about to give other work (the dialer: their own due
  callback, STD-069) is skipped while it says so.

The runtime owns the live calls and agents and hands them in; nothing here keeps state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from callflow.agents.roster import Roster
from callflow.agents.state import AgentSnapshot, longest_idle
from callflow.engine.calls import InboundCall, Phase
from callflow.engine.rules import enforces


def _ahead(other: InboundCall, call: InboundCall) -> bool:
    """``other`` is in line before ``call``: same queue, reached routing earlier (t_in: after
    any menu), and still waiting for an agent (in routing). A call an agent's phone rings
    for, or one in conversation, is out of the line even while its flow still counts as
    waiting (the runtime keeps a flow's waiter until the flow ends): it must not hold
    younger calls back from the agents that are free (found by replaying recorded calls,
    docs/simulate.md)."""
    return (other.call_id != call.call_id and other.queue == call.queue
            and other.phase is Phase.ROUTING and other.t_in < call.t_in)


def older_waiting(call: InboundCall, waiting: Iterable[InboundCall]) -> InboundCall | None:
    """A call of the same queue that reached routing earlier and still waits for an agent."""
    return next((other for other in waiting if _ahead(other, call)), None)


def queue_position(call: InboundCall, waiting: Iterable[InboundCall]) -> int:
    """1 = next in line: waiting calls of the same queue routed earlier, plus one."""
    return 1 + sum(1 for other in waiting if _ahead(other, call))


@enforces("STD-071", policy=("routing.named_agent_dids",))
def next_agent(call: InboundCall, *, waiting: Iterable[InboundCall],
               agents: Iterable[AgentSnapshot], roster: Roster, named: str | None = None,
               held: Callable[[str], bool] = lambda agent_id: False) -> AgentSnapshot | None:
    """The agent ``call`` is offered to now, or None (nobody free, or not its turn)."""
    if named is None:
        if older_waiting(call, waiting) is not None:
            return None
        return free_agent(call.queue, agents=agents, roster=roster, held=held)
    return longest_idle(a for a in agents if a.agent_id == named and not held(a.agent_id))


def free_agent(queue: str, *, agents: Iterable[AgentSnapshot], roster: Roster,
               held: Callable[[str], bool] = lambda agent_id: False) -> AgentSnapshot | None:
    """The agent serving ``queue`` that routing offers its next call to: the routable one
    ready the longest, skipping those ``held``. A warm transfer to a queue consults this
    same agent (agents/transfers.py ``queue_consultee``): one rule for both."""
    serving = {a.agent_id for a in roster.agents if queue in a.queues}
    return longest_idle(a for a in agents if a.agent_id in serving and not held(a.agent_id))
