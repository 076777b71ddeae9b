"""The PIN step an agent asks for in the middle of a call (issue 18, STD-077).

Asterisk runs ``AGI(agi://.../identity-pin)`` on the caller's channel inside the bridge
when the desktop presses the PIN feature code on the agent's leg (callflow/pbx/
midcall_pin.py says how, and why the agent hears hold music and no digit). This route
is that AGI: it serves only a call whose agent asked (``take_ask``: anything else, e.g. an
agent keying the code on the phone with no request, is sent straight back), asks for the
PIN with the same loop as before routing (dialplan/pin_step.py: the digits are compared
with the stored hash and dropped), tells the desktop the outcome (``told``), says a
short line, records the step with its interval (``done``: it lasts from the AGI's start
to its end, the time the agent heard music) and returns: the caller is back with the
same agent.

A caller who hangs up during the step: ``done`` hears it (``hung_up``) and the hang-up
goes on to the server (AGISTATUS HANGUP); Asterisk kicks the caller's leg out of the
bridge and the call ends as any caller's hang-up, with its one outcome.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from callflow.dialplan.agi import AgiSession
from callflow.dialplan.pin_step import collect_pin
from callflow.engine import identity
from callflow.engine.policy import Policy
from callflow.errors import CallerHungUp
from callflow.pbx.prompts import PromptLibrary

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PinAsk:
    """An agent's request for the caller's PIN, waiting for (or in) the AGI."""

    call_id: str
    agent_id: str
    actor: str  # the login that asked
    channel: str  # the agent's leg the feature code was pressed on
    customer_id: str
    pin_hash: str
    asked_at: float  # monotonic


@dataclass(frozen=True)
class PinStepDone:
    """What the step came to; ``started``/``ended`` are epoch seconds (the interval the
    caller spent in the PIN step, docs/kpi.md)."""

    ask: PinAsk
    check: identity.IdentityCheck
    started: float
    ended: float
    hung_up: bool


@dataclass(frozen=True)
class MidcallPinContext:
    prompts: PromptLibrary
    policy_for: Callable[[str], Policy]  # the call's Policy (its queue's)
    take_ask: Callable[[str], PinAsk | None]  # the ask for this call id, now in progress
    check_of: Callable[[str], identity.IdentityCheck]
    told: Callable[[PinAsk, identity.IdentityCheck], None]  # the outcome, to the desktop
    done: Callable[[PinStepDone], Awaitable[None]]  # the step over: record and audit


async def run_midcall_pin(session: AgiSession, ctx: MidcallPinContext) -> None:
    ask = ctx.take_ask(session.uniqueid)
    if ask is None:
        log.warning("identity-pin AGI on %s: no desktop asked for this call's PIN; the "
                    "caller goes straight back", session.describe())
        return
    policy = ctx.policy_for(ask.call_id)
    started = time.time()
    check = ctx.check_of(ask.call_id)
    log.info("call %s: PIN step asked by agent %s (%d of %d entries used)", ask.call_id,
             ask.agent_id, check.pin_attempts, policy.identity.pin_attempts)
    hung_up = False
    try:
        check = await collect_pin(session, ctx.prompts, policy, check, ask.pin_hash)
        ctx.told(ask, check)  # the agent learns it while the caller hears the last line
        path = await asyncio.to_thread(
            ctx.prompts.path, "identity_pin_back_ok" if check.verified else
            "identity_pin_back_failed")
        await session.stream_file(str(path))
    except CallerHungUp:
        log.info("call %s: the caller hung up during the PIN step", ask.call_id)
        hung_up = True
        raise
    finally:  # whatever ended the step (a broken AGI link too): recorded, ask released
        await ctx.done(PinStepDone(ask, check, started, time.time(), hung_up=hung_up))
