"""Collecting a caller's PIN by DTMF (STD-077): the one loop both PIN steps use, the
one before routing (dialplan/inbound.py) and the one an agent asks for mid-call
(dialplan/midcall_pin.py).

The digits live only in this function's local variable: compared with the stored hash
and dropped; nothing logs them (the AGI reply is read with ``secret=True``, which keeps
it out of every log line, and the outcome carries only the status and the count).
``*``, ``#`` alone, silence and entries of the wrong length count as wrong entries.
"""

from __future__ import annotations

import asyncio
import time

from callflow.dialplan.agi import AgiSession
from callflow.engine import identity
from callflow.engine.policy import Policy
from callflow.pbx.prompts import PromptLibrary


async def collect_pin(session: AgiSession, prompts: PromptLibrary, policy: Policy,
                      check: identity.IdentityCheck, pin_hash: str) -> identity.IdentityCheck:
    """Ask for the PIN until it is right or the Policy's attempts are spent (counting
    those the call already used); the check as it then stands."""
    rules = policy.identity
    prompt = "identity_pin_enter"
    while identity.pin_retry(check, policy):
        path = await asyncio.to_thread(prompts.path, prompt)
        keyed = (await session.get_data(str(path), rules.pin_digit_timeout_ms,
                                        rules.pin_max_digits + 1, secret=True)).strip()
        ok = identity.pin_wellformed(keyed, policy) and \
            await asyncio.to_thread(identity.pin_matches, keyed, pin_hash)
        del keyed
        check = identity.pin_entered(check, ok, policy, time.time())
        prompt = "identity_pin_wrong"
    return check
