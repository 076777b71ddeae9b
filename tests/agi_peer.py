"""Asterisk's side of a FastAGI connection, for tests that play it.

After the environment block the server sends ``GET FULL VARIABLE <word>`` and reads
everything up to its echo (dialplan/agi.py ``read_after_env``): Asterisk 22 answers
``200 result=1 (<word>)``. A scripted Asterisk answers it here, once, the same way.
"""

from __future__ import annotations

import asyncio

CHECK = "GET FULL VARIABLE "


def check_reply(line: str) -> str:
    """Asterisk's reply to the server's check line (``GET FULL VARIABLE <word>``)."""
    assert line.startswith(CHECK), f"expected the environment check, got {line!r}"
    return f"200 result=1 ({line.removeprefix(CHECK).strip()})\n"


async def answer_env_check(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                           timeout: float = 5.0) -> None:
    """Read the server's check line and answer it as Asterisk 22 does."""
    async with asyncio.timeout(timeout):
        line = (await reader.readline()).decode()
    writer.write(check_reply(line).encode())
    await writer.drain()
