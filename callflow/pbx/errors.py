"""Errors of the Asterisk harness (building the root, rendering config, running the PBX).

``PbxError`` belongs in the one tree of ``callflow.errors``; it lives here until the
lead moves it there (then this module re-exports it).
"""

from __future__ import annotations

from callflow.errors import CallflowError


class PbxError(CallflowError):
    """Asterisk could not be built, configured, started or stopped; the message says why."""


class PbxConfigError(PbxError):
    """A configuration value would render a broken or unsafe Asterisk config (names the field)."""
