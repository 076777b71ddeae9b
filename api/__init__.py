"""callflow.api: the HTTP shell (FastAPI): the app, /healthz, offline docs, the events
websocket endpoint, logins and roles.

- ``callflow.api.app`` — ``create_app(ApiDeps)``, ``server_config``: /healthz, offline
  OpenAPI docs at /docs, the events websocket at /ws/events, the security headers.
- ``callflow.api.auth`` — principals and the topics they may see; the deployment token.
- ``callflow.api.accounts`` — logins (throttled, audited), logout, password change,
  revocation; ``callflow.api.sessions`` the sessions table behind them,
  ``callflow.api.passwords`` the hashes, ``callflow.api.throttle`` backoff and lockout.
- ``callflow.api.credentials`` — the bearer header (never a URL) and ``require``.
- ``callflow.api.errors`` — the one error body and its OpenAPI description.
- ``callflow.api.privacy`` — what a role may see of callers' numbers.
- ``callflow.api.wsconnection`` — one websocket client served from a stream subscription,
  and how it authenticates.

The stream itself (hub, wire protocol) is ``callflow.stream``, which imports no web
framework; features mount their own routers (``<feature>/routes.py``).
"""
