"""The demo carrier: a pretend telephone network inside the embedded Asterisk.

``make run`` on a fresh machine has no carrier trunk, so every outbound attempt would
play "number not in service". With no trunk configured the outbound route dials this
carrier instead (``asterisk-conf/extensions-demo.conf.j2``, ``[callflow-demo-carrier]``):
a Local channel whose dialplan behaves like a customer's line on a real network, one
documented test number per outcome the dialer must handle (STD-081..085):

============  ==============================================================
number        what the "customer" does
============  ==============================================================
``answer``    rings ``answer_rings`` rings, answers, plays a prompt, then echoes
              the agent's voice for ``talk_s`` seconds and hangs up (cause 16)
``busy``      busy at once (SIP 486 / Q.850 cause 17)
``no_answer`` rings for ever: the dialer's six-ring hang-up (``CALLFLOW_RING_S``) ends it
``drop``      rings ``answer_rings``, answers, and ``drop_after_s`` later the network
              drops the call with Q.850 cause ``drop_cause`` (default 38, network
              out of order)
``not_in_service``  Q.850 cause 1 (unallocated number) before any ring
anything else  like ``answer`` (so callbacks to the demo's own callers work)
============  ==============================================================

A Local channel (not a SIP loop to ourselves) keeps the carrier out of the caller
endpoints and the ``[inbound]`` checks, and Dial() sees it as it sees a trunk: ringing,
busy, the hang-up cause. ``/n`` keeps the Local pair from optimising away, so the agent
stays bridged with a channel whose hang-up cause is the carrier's.

This is a deployment fact, not a service standard: the numbers, ring counts and causes
come from ``CALLFLOW_DEMO_*`` variables (``callflow/demo/config.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from callflow.errors import PbxConfigError

#: The dialplan context of the demo carrier (extensions-demo.conf.j2).
DEMO_CARRIER_CONTEXT = "callflow-demo-carrier"
_NUMBER = re.compile(r"[0-9]{3,20}")


@dataclass(frozen=True)
class DemoCarrier:
    """The demo carrier's test numbers and behaviour; rendered into the dialplan."""

    answer: str = "5550101"
    busy: str = "5550102"
    no_answer: str = "5550103"
    drop: str = "5550104"
    not_in_service: str = "5550105"
    #: rings before the answering and the dropping numbers answer
    answer_rings: int = 2
    #: seconds of one ring at the deployment's cadence (Policy ``ring_cycle_s``; cn 5 s)
    ring_s: float = 5.0
    #: how long the answering number stays up after it answered (echoing the agent)
    talk_s: int = 60
    #: how long the dropping number stays up after it answered
    drop_after_s: int = 3
    #: the Q.850 cause the dropping number hangs up with
    drop_cause: int = 38

    @property
    def answer_after_s(self) -> float:
        return round(self.answer_rings * self.ring_s, 3)

    def numbers_in_order(self) -> tuple[str, str, str, str, str]:
        """answer, busy, no_answer, drop, not_in_service (``CALLFLOW_DEMO_NUMBERS``'s order)."""
        return (self.answer, self.busy, self.no_answer, self.drop, self.not_in_service)

    def numbers(self) -> list[tuple[str, str]]:
        """``(number, what it does)`` for the README, ``callflow demo`` and the API."""
        rings = f"{self.answer_rings} ring{'s' if self.answer_rings != 1 else ''}"
        return [
            (self.answer, f"answers after {rings}, echoes the agent for {self.talk_s} s, "
                          "hangs up (cause 16)"),
            (self.busy, "busy (SIP 486, cause 17)"),
            (self.no_answer, "rings until the dialer's six-ring hang-up"),
            (self.drop, f"answers after {rings}, dropped {self.drop_after_s} s later "
                        f"with cause {self.drop_cause}"),
            (self.not_in_service, "not in service (cause 1, unallocated number)"),
        ]

    def validate(self) -> None:
        """Refuse values that would break the dialplan or mean nothing."""
        named = {"answer": self.answer, "busy": self.busy, "no_answer": self.no_answer,
                 "drop": self.drop, "not_in_service": self.not_in_service}
        for name, number in named.items():
            if not _NUMBER.fullmatch(number):
                raise PbxConfigError(f"demo carrier: the {name} number must be 3-20 digits, "
                                     f"got {number!r}")
        if len(set(named.values())) != len(named):
            raise PbxConfigError("demo carrier: the five test numbers must differ")
        if not 0 <= self.answer_rings <= 20:
            raise PbxConfigError("demo carrier: answer_rings must be 0-20")
        if not 0.1 <= self.ring_s <= 30:
            raise PbxConfigError("demo carrier: ring_s must be 0.1-30 s")
        if not 1 <= self.talk_s <= 3600:
            raise PbxConfigError("demo carrier: talk_s must be 1-3600 s")
        if not 1 <= self.drop_after_s <= 3600:
            raise PbxConfigError("demo carrier: drop_after_s must be 1-3600 s")
        if not 1 <= self.drop_cause <= 127:
            raise PbxConfigError("demo carrier: drop_cause must be a Q.850 cause 1-127")
