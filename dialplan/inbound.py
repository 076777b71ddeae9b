"""The inbound call flow: what a caller meets from our AGI to the agent's hello.

Short on purpose (design.md): ask the core where the call goes, dial that agent
with the core's ring limit, report the outcome, ask again. The rules — which
agent, how many rings (STD-008), which greeting (STD-014, STD-017) — live in the
core and the Policy; this module only speaks AGI.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from callflow.dialplan.agi import AgiSession
from callflow.engine.policy import Policy
from callflow.engine.runtime import Runtime
from callflow.errors import CallerHungUp
from callflow.prompts import PromptLibrary

log = logging.getLogger(__name__)


@dataclass
class FlowContext:
    runtime: Runtime
    policy: Policy
    prompts: PromptLibrary


def dial_timeout_arg(seconds: float) -> str:
    """Dial()'s timeout argument; Asterisk then enforces the ring limit to the millisecond."""
    return f"{seconds:g}"


async def run_inbound(session: AgiSession, ctx: FlowContext) -> None:
    env = session.env
    call_id = env.get("agi_uniqueid", "")
    rt = ctx.runtime
    rt.call_entered(call_id, env.get("agi_channel", ""), env.get("agi_callerid", ""),
                    env.get("agi_extension", ""))
    ring_limit_s = ctx.policy.rings_to_seconds(ctx.policy.answering.ring_limit_rings)
    wait_slice_ms = int(ctx.policy.waiting.announcement_interval_s * 1000)
    try:
        await session.answer()
        while True:
            member = rt.choose_agent(call_id)
            if member is None:
                # nobody free: ringback in the country's cadence, listen for keys
                await session.exec("Playtones", "ring")
                await session.wait_for_digit(wait_slice_ms)
                await session.exec("StopPlaytones")
                continue
            greeting = ctx.prompts.greeting_for_agent(member.agent_id)
            log.info("call %s: offering to agent %s for %ss", call_id, member.agent_id,
                     ring_limit_s)
            await session.exec("Dial", f"PJSIP/{member.endpoint}",
                               dial_timeout_arg(ring_limit_s), f"A(:{greeting})")
            status = await session.get_variable("DIALSTATUS") or "FAILED"
            rt.offer_reported(call_id, member.agent_id, status)
            if status == "ANSWER":
                return
    except CallerHungUp:
        log.info("call %s: caller hung up", call_id)
        status = await _dial_status_after_hangup(session)
        current = rt.calls.get(call_id)
        if status and current is not None and current.current_offer is not None:
            rt.offer_reported(call_id, current.current_offer.agent_id, status)
        rt.caller_gone(call_id)


async def _dial_status_after_hangup(session: AgiSession) -> str | None:
    """Asterisk still answers GET VARIABLE on a dead channel; anything else is gone."""
    try:
        return await session.get_variable("DIALSTATUS")
    except Exception:  # the session may already be closed: the AMI events carry the truth
        return None
