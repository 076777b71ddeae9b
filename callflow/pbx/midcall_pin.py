"""The Asterisk side of the mid-call PIN step (issue 18, STD-077): names the dialplan,
features.conf and the engine must agree on, and the shape of the feature code.

How it works (docs/agent-protocol.md "identity_pin"; verified on Asterisk 22):

* every agent leg the inbound flow dials runs a pre-dial Gosub (Dial option ``b``, the
  ``AGENT_LEG_CONTEXT`` of extensions.conf) that sets ``DYNAMIC_FEATURES`` to
  ``PIN_FEATURE`` on the agent's channel only: the caller's own keys can never start it;
* features.conf's ``[applicationmap]`` maps ``PIN_FEATURE`` to the feature code,
  ``peer`` (the application runs on the other party: the caller), the application
  ``AGI(agi://.../identity-pin)`` and a music-on-hold class. Asterisk
  (main/bridge_basic.c ``dynamic_dtmf_hook_trip``) then runs the AGI on the caller's
  channel inside the bridge: the caller's leg is suspended from the bridge (their audio
  and keys reach only the AGI), the agent hears the hold music
  (``ast_bridge_channel_write_hold``), and when the AGI returns the caller is back with
  the same agent in the same bridge (an AGI that ends in a hang-up kicks the caller's
  leg out: the call ends as any caller's hang-up);
* the desktop "presses" the code on the agent's leg with AMI ``PlayDTMF`` and
  ``Receive: true`` (apps/app_senddtmf.c queues the digit as if the phone had sent it):
  the bridge's feature hook swallows it, so no digit reaches either phone.
"""

from __future__ import annotations

import re

#: The dialplan context of the agent legs' pre-dial Gosub (extensions.conf).
AGENT_LEG_CONTEXT = "callflow-agent-leg"
#: The dynamic feature's name (features.conf ``[applicationmap]``, ``DYNAMIC_FEATURES``).
PIN_FEATURE = "callflowpin"
#: The FastAGI script the feature runs on the caller's channel.
PIN_AGI_SCRIPT = "identity-pin"
#: What Dial adds to run the pre-dial Gosub on each agent leg.
AGENT_LEG_DIAL_OPTION = f"b({AGENT_LEG_CONTEXT}^s^1)"
#: The feature code's default (CALLFLOW_PIN_FEATURE_CODE): apart from the warm
#: transfer's ``*7`` and its ``*1``..``*4`` (features.conf).
DEFAULT_FEATURE_CODE = "*8"

_CODE = re.compile(r"[0-9*#]{1,4}")


def valid_feature_code(code: str) -> bool:
    """1-4 of 0-9, * and #: what features.conf and AMI PlayDTMF can both carry."""
    return bool(_CODE.fullmatch(code))
