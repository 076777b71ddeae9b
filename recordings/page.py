"""The recordings page for supervisors and QA: ``/recordings`` and its assets.

A plain page (no framework, no build, no external assets) in ``recordings/static``:
login through ``POST /api/v1/session``, then the recordings REST API
(``recordings/routes.py``) with the bearer token; the audio is fetched with the token
into a blob URL, so no token ever appears in a URL. The recordings feature
(``callflow.recordings.feature``) mounts this router beside its API.
"""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

PAGE_PATH = "/recordings"
STATIC_DIR = Path(__file__).resolve().parent / "static"
ASSET_NAME = re.compile(r"[a-z0-9_\-]+\.(js|css|svg|png|ico)")
NO_CACHE = {"Cache-Control": "no-cache"}


def recordings_page_router() -> APIRouter:
    """``GET /recordings`` (the page) and ``GET /recordings/{asset}`` (its files only)."""
    router = APIRouter(include_in_schema=False)

    @router.get(PAGE_PATH)
    async def page() -> FileResponse:
        """The recordings page; it shows its own login form until a session exists."""
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html",
                            headers=NO_CACHE)

    @router.get(PAGE_PATH + "/{asset}")
    async def asset(asset: str) -> FileResponse:
        path = STATIC_DIR / asset
        if not ASSET_NAME.fullmatch(asset) or not path.is_file():
            raise HTTPException(404, "no such recordings asset")
        return FileResponse(path, headers=NO_CACHE)

    return router
