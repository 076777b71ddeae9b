"""Feature codes dialled from an agent's softphone: ``*21`` not-ready, ``*22`` ready, ...

The dialplan's ``agents`` context sends ``_*2X`` here as
``AGI(agi://.../feature,${EXTEN})``. The code means what the Policy says
(``agents.feature_codes``; agents/events.py ``feature_code_event``), the agent is
whoever is logged in at the dialling softphone (hot-desking: the desk, not the
roster's home endpoint), and the request goes to the same state machine
the desktop uses, so both are held to the same rules. The agent hears a short
prompt: what their state is now, or that the request was refused (the desktop
shows why). The state changes before the prompt plays, so the desktop and the
board see it at once.

Who dialled is Asterisk's word, asked on the channel (``CHANNEL(endpoint)``, the
endpoint PJSIP identified and challenged for the agent's password, and ``CONTEXT``),
never an AGI argument or environment line: an external caller once set an agent
not-ready by writing ``agi_network_script: feature`` into its own caller number
(issue 15). A code from a channel outside the agents' context changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from callflow.agents.events import AgentState, feature_code_event
from callflow.dialplan.agi import AgiSession
from callflow.engine.policy import Policy
from callflow.errors import StateError
from callflow.pbx.prompts import PromptLibrary
from callflow.pbx.render import AGENTS_CONTEXT
from callflow.runtime.core import Runtime

log = logging.getLogger(__name__)

REFUSED_PROMPT = "feature_refused"
DONE_PROMPT = "feature_done"  # a state with no prompt of its own
STATE_PROMPTS = {AgentState.READY: "feature_ready", AgentState.BUSY: "feature_busy",
                 AgentState.NOT_READY: "feature_not_ready"}


@dataclass
class FeatureCodeContext:
    runtime: Runtime
    policy: Policy
    prompts: PromptLibrary


def apply_feature_code(ctx: FeatureCodeContext, code: str, endpoint: str) -> str:
    """Apply ``code`` dialled from ``endpoint``; the name of the prompt to answer with."""
    event = feature_code_event(code, ctx.policy)
    if event is None:
        log.info("feature code %r from %s: not one of ours", code, endpoint)
        return REFUSED_PROMPT
    agent_id = ctx.runtime.agent_at(endpoint)
    if agent_id is None:
        log.info("feature code %s from %s: nobody works at that softphone", code, endpoint)
        return REFUSED_PROMPT
    try:
        agent = ctx.runtime.agent_event(agent_id, event)
    except StateError as refused:
        log.info("agent %s: feature code %s refused (%s)", agent_id, code, refused)
        return REFUSED_PROMPT
    log.info("agent %s: feature code %s -> %s %s", agent_id, code, agent.state, agent.reason)
    return STATE_PROMPTS.get(agent.state, DONE_PROMPT)


async def run_feature_code(session: AgiSession, ctx: FeatureCodeContext) -> None:
    code = session.argv[0] if session.argv else session.env.get("agi_extension", "")
    endpoint = await session.get_variable("CHANNEL(endpoint)") or ""
    context = await session.get_variable("CONTEXT") or ""
    if context == AGENTS_CONTEXT:
        prompt = apply_feature_code(ctx, code, endpoint)
    else:
        log.warning("feature code %r from %s refused: the channel is in context %r, not "
                    "the agents' %r", code, session.describe(), context, AGENTS_CONTEXT)
        prompt = REFUSED_PROMPT
    path = await asyncio.to_thread(ctx.prompts.path, prompt)
    await session.answer()
    await session.stream_file(str(path))
