"""Language packs: every label the pages show, in each language a user may choose.

Issue 18 asks for one language per page, chosen per user. The packs are JSON files in
``api/i18n/`` (``zh-CN.json``, ``en.json``; flat ``"page.thing": "words"`` keys, ``{name}``
placeholders), shipped as package data and read once. ``GET /i18n.js`` serves a small
script with both packs in it: each page (desktop, board, recordings) loads it first in
``<head>``, so ``document.documentElement.lang`` is "zh-CN" or "en" *before* any of the
page's own scripts run, the contract every UI module follows (a ``LABELS`` object per
language, chosen by that attribute). The script is served, not inline, because the pages'
content policy allows only the server's own script files.

Which language: the user's choice (``users.language``, set from the switch on each page
through ``PUT /api/v1/session/language`` and returned with the login), else the
deployment's default (``CALLFLOW_UI_LANGUAGE``, else the Policy's
``greetings.language``). The page remembers the choice in ``localStorage`` so the next
load starts in it before anyone has logged in.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Literal

from fastapi import APIRouter
from fastapi.responses import Response

from callflow.settings import UI_LANGUAGES

PACK_DIR = Path(__file__).resolve().parent / "i18n"
RUNTIME_PATH = "/i18n.js"
#: The languages a page can be shown in, in the order the switch offers them.
LANGUAGES: tuple[str, ...] = UI_LANGUAGES
PageLanguage = Literal["zh-CN", "en"]
#: A pack key: lower-case words joined by dots, dashes or underscores; bounded.
KEY = re.compile(r"[a-z0-9][a-z0-9_.\-]{0,95}")


class PackError(ValueError):
    """A language pack that cannot be served (missing, not JSON, a bad key or value)."""


def default_language(configured: str | None, policy_language: str) -> str:
    """The pages' language for people who chose none: the deployment's
    (``CALLFLOW_UI_LANGUAGE``), else the one of the Policy's prompts ("zh" -> "zh-CN")."""
    if configured:
        return configured
    return "en" if policy_language == "en" else "zh-CN"


@cache
def load_packs() -> dict[str, dict[str, str]]:
    """Every pack, checked once: string keys of the ``KEY`` form, non-empty string values."""
    packs: dict[str, dict[str, str]] = {}
    for lang in LANGUAGES:
        path = PACK_DIR / f"{lang}.json"
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise PackError(f"language pack {path.name}: {exc}") from None
        if not isinstance(raw, dict):
            raise PackError(f"language pack {path.name}: not an object")
        for key, value in raw.items():
            if not KEY.fullmatch(key) or not isinstance(value, str) or not value.strip():
                raise PackError(f"language pack {path.name}: bad entry {key!r}")
        packs[lang] = raw
    return packs


_RUNTIME = (PACK_DIR / "runtime.js")


def runtime_script(default: str) -> str:
    """The script the pages load first: both packs, the default, the lookup (runtime.js)."""
    if default not in LANGUAGES:
        raise PackError(f"no language pack {default!r}; known: {', '.join(LANGUAGES)}")
    template = _RUNTIME.read_text(encoding="utf-8")
    # "</" cannot appear in a served script's JSON, but a pack is data: escape it anyway
    packs = json.dumps(load_packs(), ensure_ascii=False).replace("</", "<\\/")
    return (template.replace("/*PACKS*/null", packs)
            .replace("/*DEFAULT*/null", json.dumps(default)))


def language_router(default: str) -> APIRouter:
    """``GET /i18n.js``: public like the pages that load it; built once, never cached by
    the browser (an upgrade's new labels reach every page at its next load)."""
    router = APIRouter(include_in_schema=False)
    body = runtime_script(default)

    @router.get(RUNTIME_PATH)
    async def runtime() -> Response:
        return Response(body, media_type="text/javascript",
                        headers={"Cache-Control": "no-cache"})

    return router
