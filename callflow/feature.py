"""What a Feature is, and what the service hands it: the contract between the two.

A feature (desktop, board, outbound dialer, special calls, recordings) is a package of
its own (``feature.py`` wiring, ``routes.py`` HTTP, its pure rules, its page). The
service starts it with ``FeatureServices``: the parts of the product a feature may use,
named one by one. The AMI client is not among them: a feature asks Asterisk for things
through the runtime's effects (``Runtime.execute``, ``request``, ``query``), so the
runtime stays the one place that talks to Asterisk (an import contract in pyproject
checks it). Features that need each other's services get them as constructor
arguments in ``callflow.cli.default_features``, never by name.

This module sits below ``callflow.service`` so that features never import the service
(and, through it, the AMI adapter).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Protocol

from callflow.errors import CallflowError

if TYPE_CHECKING:
    from fastapi import APIRouter

    from callflow.agents.roster import Roster
    from callflow.api.accounts import SessionAuth
    from callflow.dialplan.agi import AgiSession
    from callflow.engine.clock import Clock
    from callflow.engine.policy import Policy
    from callflow.pbx.prompts import PromptLibrary
    from callflow.runtime.core import Runtime
    from callflow.settings import Settings
    from callflow.store.db import Store
    from callflow.store.writer import PersistQueue
    from callflow.stream.hub import EventHub

#: An AGI script a feature serves (``agi://host/<name>`` in the dialplan).
AgiRoute = Callable[["AgiSession"], Awaitable[None]]


@dataclass(frozen=True)
class FeatureServices:
    """The product's parts a started feature may use (built by the Service at start)."""

    settings: Settings
    policy: Policy
    roster: Roster
    clock: Clock
    store: Store
    writer: PersistQueue  # the store writer (its stats; ``flush`` before reading back)
    runtime: Runtime
    hub: EventHub  # the live stream (features publish their own views to it)
    prompts: PromptLibrary
    auth: SessionAuth
    today: Callable[[], date]  # the centre's local date


class Feature(Protocol):
    """A capability plugged into the service; added by one line in ``default_features``."""

    name: str

    async def start(self, services: FeatureServices) -> None: ...

    async def stop(self) -> None: ...

    def routers(self) -> list[APIRouter]: ...

    def agi_routes(self) -> dict[str, AgiRoute]: ...


class FeatureBase:
    """Mixin: ``start`` sets ``_service``; ``stop`` may clear it.

    One definition keeps the "not started" refusal (the API answers 503 on it) the same
    in every feature."""

    name: str
    _service: FeatureServices | None = None

    @property
    def service(self) -> FeatureServices:
        if self._service is None:
            raise CallflowError(f"the {self.name} feature is not started")
        return self._service

    @property
    def runtime(self) -> Runtime:
        return self.service.runtime
