"""What every started Feature reaches the same way: its Service and the runtime.

The desktop, board, special-calls and recordings features each wrote these two
properties; one definition keeps the "not started" refusal (the API answers 503 on
it) the same everywhere.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from callflow.errors import CallflowError

if TYPE_CHECKING:
    from callflow.runtime.core import Runtime
    from callflow.service import Service


class FeatureBase:
    """Mixin: ``start`` sets ``_service``; ``stop`` may clear it."""

    name: str
    _service: Service | None = None

    @property
    def service(self) -> Service:
        if self._service is None:
            raise CallflowError(f"the {self.name} feature is not started")
        return self._service

    @property
    def runtime(self) -> Runtime:
        runtime = self.service.runtime
        if runtime is None:
            raise CallflowError("the service has no runtime yet")
        return runtime
