"""The Local channels special_calls/feature.py starts to play a prompt into one party of a
live call, watched on the real Asterisk (issue 13: each prompt's spy channel must be gone
within 1 s of the prompt's end).

The feature names both halves of each Local channel it originates: the ;1 half (the
prompt) gets the uniqueid ``<uid>``, the ;2 half (``ChanSpy`` on the party) ``<uid>-2``.
The prompt ends with the ;1 half's Hangup; its ;2 half should follow at once.

Whether it does depends on the media of the spied-on party (measured on Asterisk 22.10.1,
see the feature's module docstring): ChanSpy only lets go of a channel once a voice frame
passes through it, so these tests run both with phones that send speech all the time
(as real phones without silence suppression do) and with SIPp phones that send no RTP.
"""

from __future__ import annotations

import struct
import time
from pathlib import Path
from typing import TYPE_CHECKING

from dtmf import HEAD, PCAP_DIR, WAIT_FOR_BYE

if TYPE_CHECKING:
    from conftest import PbxHandle

SPY_GONE_S = 1.0  # issue 13: a prompt's spy channel is gone within 1 s of the prompt's end
SPEECH_PCAP = PCAP_DIR / "g711a.pcap"  # 236 RTP packets of 240 samples (30 ms), PCMA
SPEECH_PACKETS, SPEECH_SAMPLES = 236, 240
SPEECH_PCAP_S = SPEECH_PACKETS * SPEECH_SAMPLES / 8000  # 7.08 s

SPEAK = """  <nop><action><exec play_pcap_audio="{pcap}"/></action></nop>
"""
PAUSE = """  <pause milliseconds="{ms}"/>
"""

NO_MEDIA = (
    "Asterisk 22.10.1: when ChanSpy ends it detaches its audiohooks from the spied-on "
    "channel and waits (ast_audiohook_detach) until a voice frame passes through that "
    "channel; a channel with no media in either direction never releases it, and an AMI "
    "Hangup of the ;2 half cannot interrupt the wait. The ;2 half stays until the party "
    "hangs up or media flows again.")


def speaking_caller(path: Path, plays: int) -> Path:
    """A caller whose phone sends speech (RTP) without a gap from the answer on, for
    ``plays`` times the sample (7.08 s each), then waits for Asterisk's BYE.

    Each play is the sample renumbered to follow the one before (``speech_pcap``). The
    last is started without a pause after it, so from ``(plays - 1) * SPEECH_PCAP_S``
    after the answer the scenario is already waiting for the BYE (a BYE during a pause
    would be an unexpected message to SIPp) while the speech still goes on."""
    parts = [HEAD.format(ending="speak without a gap, wait for Asterisk's BYE")]
    for n in range(plays):
        parts.append(SPEAK.format(pcap=speech_pcap(path.parent, n)))
        if n < plays - 1:
            parts.append(PAUSE.format(ms=round(SPEECH_PCAP_S * 1000)))
    parts.append(WAIT_FOR_BYE)
    path.write_text("".join(parts), encoding="iso-8859-1")
    return path


def speech_pcap(out: Path, n: int) -> Path:
    """The speech sample as the ``n``-th piece of one stream: sequence numbers and RTP
    timestamps go on from piece ``n - 1``. Replayed as it is, the sample starts over at
    its own numbers: Asterisk counts each repeat as ~65300 lost packets and passes none
    of it on (measured: from the second play on, a spy on that caller stayed as on a
    silent one; renumbered, it left 31-56 ms after each prompt)."""
    data = bytearray(SPEECH_PCAP.read_bytes())
    off = 24  # pcap file header
    while off < len(data):
        incl = struct.unpack_from("<I", data, off + 8)[0]
        rtp = off + 16 + 42  # pcap record header, Ethernet + IPv4 + UDP
        seq, stamp = struct.unpack_from(">HI", data, rtp + 2)
        struct.pack_into(">HI", data, rtp + 2, (seq + n * SPEECH_PACKETS) & 0xFFFF,
                         (stamp + n * SPEECH_PACKETS * SPEECH_SAMPLES) & 0xFFFFFFFF)
        struct.pack_into(">H", data, off + 16 + 40, 0)  # UDP checksum: none
        off += 16 + incl
    path = out / f"speech{n:02d}.pcap"
    path.write_bytes(bytes(data))
    return path


def spy_left_after(asterisk: PbxHandle, since: float, uid: str,
                   within: float = SPY_GONE_S) -> float | None:
    """Seconds from the prompt's end (the Hangup of its ;1 half ``uid``) to the Hangup of
    its ;2 half, on Asterisk's own timestamps; None when the ;2 half was still up
    ``within`` s after the ;1 half's Hangup reached the tap."""
    end = asterisk.tap.wait_event("Hangup", 30, since=since, Uniqueid=uid)
    try:
        gone = asterisk.tap.wait_event("Hangup", max(0.0, end["t"] + within - time.monotonic()),
                                       since=since, Uniqueid=f"{uid}-2")
    except AssertionError:
        return None
    return float(gone["Timestamp"]) - float(end["Timestamp"])


def whisper_channels(asterisk: PbxHandle) -> list[str]:
    """The halves of our prompt channels Asterisk has up now (``core show channels``)."""
    listing = asterisk.cli("core show channels concise")
    return [line.split("!")[0] for line in listing.splitlines()
            if "@callflow-whisper-" in line]
