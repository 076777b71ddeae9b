"""The garbage collector's set-up for a long-running service (issue 20).

Why: the board fan-out stalled about every 6.7 s, and the stalls matched gen-2
collections of 43-67 ms. A full collection walks every tracked object, and most of
them are the start-up's: modules, FastAPI's routes and pydantic models, SQLAlchemy's
metadata, the policy and the roster. None of those become garbage, so walking them
is pure pause. ``gc.freeze()`` once start-up is done moves them to the permanent
generation, which collections never walk; what the service allocates afterwards
(calls, frames, messages) is still collected as usual. Cycles among frozen objects
are never reclaimed, which is why this runs once, after start-up, and not again.

The young generation's threshold is a deployment fact too: a larger one means fewer,
slightly longer young collections (CALLFLOW_GC_GEN0; Python's own is 700).
"""

from __future__ import annotations

import gc
from dataclasses import dataclass


@dataclass(frozen=True)
class GcSetup:
    """``freeze``: CALLFLOW_GC_FREEZE (1/0) [1]; ``gen0``: CALLFLOW_GC_GEN0 [0: leave
    Python's threshold as it is]."""

    freeze: bool = True
    gen0: int = 0


def tune_after_startup(setup: GcSetup | None = None) -> dict[str, int]:
    """Apply the set-up; call once, when start-up is done. Returns what it did (for the log)."""
    setup = setup or GcSetup()
    if setup.gen0 > 0:
        _, gen1, gen2 = gc.get_threshold()
        gc.set_threshold(setup.gen0, gen1, gen2)
    frozen = 0
    if setup.freeze:
        # Collect first so today's garbage is not frozen with the live start-up objects.
        gc.collect()
        gc.freeze()
        frozen = gc.get_freeze_count()
    return {"frozen": frozen, "gen0_threshold": gc.get_threshold()[0]}
