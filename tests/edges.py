"""Pure-machine tests read what the store and the clients would get.

The machines return typed domain events; ``as_edges`` follows each one with the
store records and wire frames the real edges make of it (``callflow.store.rows``,
``callflow.stream.frames``), as ``Persist`` / ``Publish`` values, so a test can
assert on a row or a payload exactly as the product writes and sends it. Times stay
the machine's: ``epoch_of`` is the identity unless a test gives one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from callflow.engine.effects import DomainEvent, Effect, Persist, Publish
from callflow.store.rows import rows
from callflow.stream.frames import frames


def as_edges(effects: Iterable[Effect],
             epoch_of: Callable[[float], float] = lambda t: t) -> list[Effect]:
    out: list[Effect] = []
    for effect in effects:
        out.append(effect)
        if isinstance(effect, DomainEvent):
            out += [Persist(kind, data) for kind, data in rows(effect, epoch_of)]
            out += [Publish(topic, payload) for topic, payload in frames(effect, epoch_of)]
    return out
