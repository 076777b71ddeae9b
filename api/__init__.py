"""callflow.api: the HTTP shell (FastAPI): the app, /healthz, offline docs, the events
websocket endpoint, logins and roles.

- ``callflow.api.app`` — ``create_app(ApiDeps)``, ``server_config``: /healthz, offline
  OpenAPI docs at /docs, the events websocket at /ws/events.
- ``callflow.api.auth`` / ``callflow.api.accounts`` — tokens and sessions to principals,
  the topics they may see, logins.
- ``callflow.api.privacy`` — what a role may see of callers' numbers.
- ``callflow.api.wsconnection`` — one websocket client served from a stream subscription.

The stream itself (hub, wire protocol) is ``callflow.stream``, which imports no web
framework; features mount their own routers (``<feature>/routes.py``).
"""
