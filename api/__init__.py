"""callflow.api: the FastAPI edge (design.md) and the event hub it streams from.

- ``callflow.api.hub`` — ``EventHub``: pure asyncio, no web framework, used by the engine
  runtime for ``Publish`` effects.
- ``callflow.api.app`` — ``create_app(ApiDeps)``, ``server_config``: /healthz, offline
  OpenAPI docs at /docs, the events websocket at /ws/events.
- ``callflow.api.protocol`` — the websocket wire format v1 (docs/websocket-protocol.md).
- ``callflow.api.auth`` — tokens to principals and the topics they may see.

Nothing is imported here, so importing the hub never pulls in FastAPI.
"""
