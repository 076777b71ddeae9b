"""A feature's page: ``GET <path>`` (its ``index.html``) and ``GET <path>/<asset>``.

The board, the agent desktop and the recordings page are plain pages (no framework,
no build, no external assets) in their feature's ``static/`` folder; each logs in on
its own and talks to the REST API and websockets with a bearer token. Serving them is
the same everywhere, so it is written once: only files named like an asset and
present in that folder are served, never a path outside it, and never cached, so an
upgrade reaches every browser at its next load.
"""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

#: An asset's name; bounded, so an over-long one is refused before the file system is asked
#: (the OS answers a name over 255 bytes with an error, not "no such file").
ASSET_NAME = re.compile(r"[a-z0-9_\-]{1,64}\.(js|css|svg|png|ico)")
NO_CACHE = {"Cache-Control": "no-cache"}


def page_router(path: str, static_dir: Path, what: str) -> APIRouter:
    """The page at ``path`` (e.g. ``/board``) from ``static_dir``; ``what`` names it in a
    404 ("no such board asset")."""
    router = APIRouter(include_in_schema=False)

    @router.get(path)
    async def page() -> FileResponse:
        """The page; it shows its own login form until a session exists."""
        return FileResponse(static_dir / "index.html", media_type="text/html",
                            headers=NO_CACHE)

    @router.get(path + "/{asset}")
    async def asset(asset: str) -> FileResponse:
        file = static_dir / asset
        if not ASSET_NAME.fullmatch(asset) or not file.is_file():
            raise HTTPException(404, f"no such {what} asset")
        return FileResponse(file, headers=NO_CACHE)

    return router
