"""Keys typed on an agent's leg as if their phone sent them: the feature codes the
desktop presses for the agent (features.conf's ``atxferthreeway`` that makes a warm
transfer's consultation a three-way conference, the PIN step's code mid-call).

One place for it, because the way matters: a feature code is several keys and Asterisk
matches it key by key, so the keys go out one at a time, each after Asterisk accepted
the one before (a batch through ``Runtime.execute`` runs one task per key, and their
order on the link is then the event loop's, not the code's).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from callflow.engine.effects import PressKey

if TYPE_CHECKING:
    from callflow.runtime.core import Runtime

log = logging.getLogger(__name__)


class KeyPad:
    """The desktop feature's one keypad. Each press runs as a task kept here (the loop
    holds tasks weakly) and ``stop`` cancels those still typing."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._tasks: set[asyncio.Task[None]] = set()

    def press(self, channel: str, keys: str, what: str) -> None:
        """Type ``keys`` on ``channel`` (``PressKey``: AMI ``PlayDTMF`` with ``Receive:
        true``, queued on the leg as received, where the bridge's feature hooks read
        them), in order, each key sent once Asterisk answered the one before.

        Returns at once: the desktop's request was answered when it was accepted, and
        what Asterisk makes of the code shows in its own events (``AttendedTransfer``,
        the PIN AGI starting). When one key fails (the link is down, Asterisk refuses
        the action) the keys after it are not sent, so no other code can be typed by a
        part of this one (a partial code matches nothing: Asterisk passes the keys on to
        the other side after ``featuredigittimeout``), and the failure is logged as an
        error naming ``what`` the code was for, the channel and Asterisk's reason."""
        task = asyncio.get_running_loop().create_task(self._type(channel, keys))
        self._tasks.add(task)
        task.add_done_callback(lambda done: self._typed(done, channel, what))

    async def _type(self, channel: str, keys: str) -> None:
        for key in keys:
            await self.runtime.request(PressKey(channel, key))

    def _typed(self, task: asyncio.Task[None], channel: str, what: str) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("the keys of %s were not typed on %s: %s", what, channel,
                      task.exception())

    async def stop(self) -> None:
        """Cancel the presses still typing (the service stops)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
