"""The DEMO marker every page shows while the product runs as a demo.

A demo (the demo carrier wired because no outbound trunk is configured, or
``callflow demo`` placing simulated calls) must never be mistaken for a centre's real
traffic. Each page loads ``/demo-marker.js`` (the pages' policy allows only the server's
own scripts, so it is a file, not an inline snippet); the server writes it per request:
a banner with the reason while the demo is on, nothing otherwise. ``/healthz`` carries
the same reason as ``demo`` for scripts and monitoring.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from fastapi import APIRouter
from fastapi.responses import Response

MARKER_PATH = "/demo-marker.js"
MARKER_ID = "callflow-demo"
#: ``None``: not a demo; else why it is one ("demo carrier", "callflow demo running").
DemoStatus = Callable[[], str | None]

_BANNER_JS = """// callflow: this deployment runs as a DEMO (api/demo_marker.py)
(function () {
  var text = %s;
  function show() {
    if (document.getElementById(%s)) return;
    var el = document.createElement("div");
    el.id = %s;
    el.setAttribute("role", "status");
    el.textContent = text;
    el.style.cssText = "position:sticky;top:0;z-index:9999;padding:4px 12px;" +
      "background:#b00020;color:#fff;font:bold 14px sans-serif;text-align:center;" +
      "letter-spacing:.05em";
    document.body.insertBefore(el, document.body.firstChild);
    if (document.title.indexOf("DEMO") !== 0) document.title = "DEMO - " + document.title;
  }
  if (document.body) show(); else document.addEventListener("DOMContentLoaded", show);
})();
"""


def marker_script(reason: str | None) -> str:
    """The script a page loads: a banner naming ``reason``, or nothing when not a demo."""
    if not reason:
        return "// callflow: not a demo\n"
    quoted_id = json.dumps(MARKER_ID)
    return _BANNER_JS % (json.dumps(f"DEMO - {reason} - not a real contact centre's calls"),
                         quoted_id, quoted_id)


def demo_router(status: DemoStatus) -> APIRouter:
    """``GET /demo-marker.js``: public, like the pages that load it; never cached."""
    router = APIRouter(include_in_schema=False)

    @router.get(MARKER_PATH)
    async def marker() -> Response:
        return Response(marker_script(status()), media_type="text/javascript",
                        headers={"Cache-Control": "no-store"})

    return router
