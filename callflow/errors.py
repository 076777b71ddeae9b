"""The one exception tree of callflow.

Read top-down: every error the product raises is a ``CallflowError``; each family
says which edge it comes from. Adapters translate the libraries' exceptions
(asterisk-ami, pyst2, SQLAlchemy) into these at the one place they cross, so no
library exception escapes an adapter.
"""

from __future__ import annotations


class CallflowError(Exception):
    """Base of every error callflow raises on purpose."""


class SettingsError(CallflowError):
    """A ``CALLFLOW_*`` setting is missing, malformed or out of range (the message names
    the variable and what it must be)."""


class PolicyError(CallflowError):
    """The Policy file is unreadable or a value is invalid; the message names the key."""


class StateError(CallflowError):
    """A request is illegal in the current state (the state is left unchanged).

    ``reason`` is a short machine-readable code a client can show or branch on.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class AmiError(CallflowError):
    """Something went wrong on the Asterisk Manager Interface link."""


class AmiLinkDown(AmiError):
    """The AMI link is not up (never connected, lost, or reconnecting)."""


class AmiActionTimeout(AmiError):
    """An AMI action got no complete response within its own timeout."""


class AmiActionFailed(AmiError):
    """Asterisk answered an AMI action with ``Response: Error``."""


class AmiProtocolError(AmiError):
    """A frame from Asterisk could not be parsed (logged and skipped, never fatal)."""


class AgiError(CallflowError):
    """Something went wrong on a FastAGI session."""


class CallerHungUp(AgiError):
    """The caller's channel is gone: HANGUP line, 511 dead channel, or EOF."""


class AgiProtocolError(AgiError):
    """Asterisk sent something the AGI protocol does not allow (or garbage)."""


class AgiEnvironmentRefused(AgiProtocolError):
    """The environment block is not one Asterisk writes (a repeated or unknown key, a
    line that is no ``agi_`` line, bytes after its blank line): a value that carried a
    newline, so nothing in it is believed (issue 15)."""


class AgiCommandError(AgiError):
    """An AGI command was refused: 510 invalid command or 520 usage error."""


class AgiCommandTimeout(AgiError):
    """An AGI command got no reply within its timeout; the session is closed after it."""


class AgiArgumentError(AgiError):
    """An AGI argument would break the protocol (CR/LF inside it): never sent."""


class PbxError(CallflowError):
    """Asterisk could not be built, configured, started or stopped; the message says why."""


class PbxConfigError(PbxError):
    """A configuration value would render a broken or unsafe Asterisk config (names the field)."""


class StoreError(CallflowError):
    """The database refused a read or a write."""


class StoreUnavailable(StoreError):
    """The database cannot be reached right now (connection refused, dropped, locked):
    worth retrying, unlike a write it refuses for its content."""
