"""AMI frames the adapter does not believe, and what supervisors hear of them.

A caller's number reaches AMI verbatim, and pjsip decodes ``%0d%0a`` in it into CR LF,
so a caller can add lines to a real event or write a whole one of its own (issue 15).
The adapter marks what is not shaped as Asterisk writes it (ami/frames.py ``suspect``);
the runtime applies none of it: a forged frame must not tie a channel to an agent or a
call, end a call, or make an agent's softphone look gone. Believing a cut-short real
event would be no better, and the reconciler puts right what a refused real event
leaves behind (runtime/reconcile.py).

One alarm at most per ``interval_s``, with the number refused since the last one: a
caller can make as many of these as calls, and the board must stay readable.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from callflow.engine.effects import Alarm, Effect
from callflow.runtime.asterisk import AmiFrame

log = logging.getLogger(__name__)

ALARM_INTERVAL_S = 60.0


@dataclass
class DoubtedFrames:
    """Counts refused frames and says when to alarm (``note``)."""

    interval_s: float = ALARM_INTERVAL_S
    refused: int = 0
    _since_alarm: int = 0
    _alarmed_at: float = float("-inf")

    def note(self, frame: AmiFrame) -> list[Effect]:
        """``frame``, of an event the engine reads, is not applied; the alarm to raise,
        if one is due."""
        self.refused += 1
        self._since_alarm += 1
        now = time.monotonic()
        if now - self._alarmed_at < self.interval_s:
            log.debug("AMI %r not applied: %s", frame.name, frame.suspect)
            return []
        log.warning("AMI %r not applied (%d since the last alarm): %s", frame.name,
                    self._since_alarm, frame.suspect)
        alarm = Alarm("ami_frame_refused", {"event": frame.name, "why": frame.suspect,
                                            "refused": self._since_alarm}, std="STD-147")
        self._alarmed_at, self._since_alarm = now, 0
        return [alarm]
