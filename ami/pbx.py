"""The runtime's PBX port over AMI: typed actions and queries in, Asterisk's replies out.

The runtime carries out every ``PbxAction``/``PbxQuery`` effect through one object
with this shape (``callflow.runtime.core.PbxPort``); this is that object for a real
Asterisk. It only encodes (``callflow.ami.actions``) and delegates to the client,
whose errors (``AmiLinkDown``, ``AmiActionTimeout``, ``AmiActionFailed``) reach the
caller unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping

from callflow.ami.actions import encode, query_fields, query_name
from callflow.ami.client import AmiClient, AmiMessage
from callflow.engine.effects import PbxAction, PbxQuery
from callflow.errors import AmiProtocolError


class AmiPbx:
    """``PbxPort`` over one ``AmiClient``."""

    def __init__(self, client: AmiClient) -> None:
        self.client = client

    @property
    def up(self) -> bool:
        """Logged in and resynced (the client's own word)."""
        return self.client.up

    @property
    def stats(self) -> Mapping[str, float]:
        return self.client.stats

    async def send(self, action: PbxAction) -> AmiMessage:
        name, fields = encode(action)
        return await self.client.send(name, fields)

    async def query(self, query: PbxQuery) -> list[AmiMessage]:
        """The listing's items; ``AmiProtocolError`` when Asterisk did not say it was
        whole, or an item is not shaped as Asterisk writes it (``AmiMessage.suspect``:
        a caller's number may have cut it short): a reconciliation must never act on
        half a picture."""
        result = await self.client.action_list(query_name(query), _timeout=None,
                                               **query_fields(query))
        if result.warning:
            raise AmiProtocolError(f"{query_name(query)}: {result.warning}")
        doubted = next((item for item in result.events if item.suspect), None)
        if doubted is not None:
            raise AmiProtocolError(f"{query_name(query)}: a {doubted.name!r} item is not "
                                   f"believed ({doubted.suspect})")
        return list(result.events)
