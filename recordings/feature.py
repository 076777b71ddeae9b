"""Call recording on the live Asterisk, its rows, and retention (STD-114), as a Feature.

* **Start.** When a call's two parties are bridged (AMI ``BridgeEnter`` with
  ``BridgeNumChannels`` >= 2 of either leg), AMI ``MixMonitor`` starts on the call's
  leg that callflow knows: the caller's channel of an inbound call of the runtime
  (``qa.record_inbound``), the agent leg of an outbound attempt of the dialer
  (``qa.record_outbound``; the attempt id is that leg's uniqueid, so the action names
  it by uniqueid). Options ``b``: only bridged audio, so queue music and ringing never
  fill QA's time. Files go to ``<state dir>/recordings/YYYY/MM/DD/<uniqueid>.wav``
  (the centre's local date; Asterisk runs as our user, no chroot, so it writes there).
  BridgeEnter fires again when the bridge changes (a whisper joining, a transfer);
  a call is recorded once.
* **End.** The recorded leg's ``Hangup`` (or ``MixMonitorStop`` if someone stopped it)
  ends the recording; Asterisk closes the file on its own thread a moment later, so
  the file's size is polled off the loop until it stops changing, then the WAV header
  gives the duration (the file size when the header is not final). The row goes
  through the store writer (``Persist("recording")``), after the call's own records,
  so ``store/records.py`` can flag it from what the store knows: late answer
  (STD-009), hold beyond the Policy's limit (STD-040), a forbidden agent-first release
  (STD-110), a special-call ending (STD-056..067), a transfer.
* **Retention.** Once a day at ``recordings.purge_at`` (local time), and once at
  start, recordings older than ``recordings.retention_days`` lose their file and get
  ``purged_at``; the row, its reviews and the audit trail stay.

The API (``recordings/routes.py``) lists, plays, reviews and samples them, audited.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import wave
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from zoneinfo import ZoneInfo

from fastapi import APIRouter

from callflow.engine.effects import Persist, StartRecording
from callflow.engine.rules import enforces
from callflow.feature import FeatureBase
from callflow.runtime.asterisk import stamp
from callflow.settings import private_dir
from callflow.store import repo

if TYPE_CHECKING:
    from callflow.feature import AgiRoute, FeatureServices
    from callflow.runtime.asterisk import AmiFrame

log = logging.getLogger(__name__)

WAV_HEADER_BYTES = 44  # format_wav's canonical header (8 kHz 16-bit mono)
BYTES_PER_SECOND = 8000 * 2


class OutboundLeg(Protocol):
    """A live outbound attempt seen from one of its legs."""

    @property
    def attempt_id(self) -> str: ...  # also the agent leg's uniqueid

    @property
    def agent_id(self) -> str: ...

    @property
    def number(self) -> str: ...


class OutboundAttempts(Protocol):
    """What recording outbound calls needs of the dialer (the outbound feature has it)."""

    def attempt_for_leg(self, uid: str) -> OutboundLeg | None: ...


@dataclass
class Active:
    """A recording that MixMonitor is writing."""

    key: str  # the recorded leg's uniqueid (inbound: the call id; outbound: the attempt id)
    call_id: str
    direction: str
    channel: str
    path: Path
    agent_id: str | None
    number: str
    started_at: float  # epoch (Asterisk's BridgeEnter stamp)
    ended_at: float | None = None


@dataclass(frozen=True)
class WavInfo:
    bytes: int
    duration_s: float
    rate: int
    channels: int
    sample_width: int


def wav_info(path: Path) -> WavInfo:
    """Size and duration of a WAV; a header not yet final (0 frames) counts the data bytes."""
    size = path.stat().st_size
    with wave.open(str(path), "rb") as wav:
        rate, channels, width = wav.getframerate(), wav.getnchannels(), wav.getsampwidth()
        frames = wav.getnframes()
    if frames == 0 and size > WAV_HEADER_BYTES:
        frames = (size - WAV_HEADER_BYTES) // (channels * width)
    return WavInfo(size, frames / rate if rate else 0.0, rate, channels, width)


def settle(path: Path, *, interval_s: float = 0.2, stable_reads: int = 3,
           timeout_s: float = 15.0) -> int:
    """Wait (in a worker thread) until ``path`` exists and its size has not changed for
    ``stable_reads`` polls: Asterisk closes a MixMonitor file on its own thread after the
    hangup. Returns the size, -1 when the file never appeared."""
    deadline = time.monotonic() + timeout_s
    last, same = -1, 0
    while time.monotonic() < deadline:
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            size = -1
        same = same + 1 if size == last and size >= 0 else 0
        if same >= stable_reads:
            return size
        last = size
        time.sleep(interval_s)
    return last


class RecordingsFeature(FeatureBase):
    """Starts MixMonitor on bridged calls, stores each recording, purges old ones."""

    name = "recordings"

    def __init__(self, *, outbound: OutboundAttempts | None = None, purge: bool = True,
                 settle_interval_s: float = 0.2) -> None:
        """``outbound``: the dialer's attempts, to record outbound calls (STD-114; None:
        inbound only). ``purge=False`` leaves retention off (tests that keep their files)."""
        self.outbound = outbound
        self.purge_enabled = purge
        self.settle_interval_s = settle_interval_s
        self._service: FeatureServices | None = None
        self.active: dict[str, Active] = {}  # recorded leg's uniqueid -> recording
        self.recorded: set[str] = set()  # call ids already recorded (one file per call)
        self.finished: list[dict[str, Any]] = []  # what was stored (tests, diagnostics)
        self._tasks: set[asyncio.Task[Any]] = set()

    # --- Feature protocol -----------------------------------------------------------

    async def start(self, service: FeatureServices) -> None:
        self._service = service
        runtime = self.runtime
        runtime.on_ami("BridgeEnter", self._on_bridge_enter)
        runtime.on_ami("Hangup", self._on_end)
        runtime.on_ami("MixMonitorStop", self._on_end)
        if self.purge_enabled:
            self._spawn(self._purge_loop())

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._service = None

    def routers(self) -> list[APIRouter]:
        from callflow.api.pages import page_router
        from callflow.recordings.routes import PAGE_PATH, STATIC_DIR, recordings_router
        return [recordings_router(self), page_router(PAGE_PATH, STATIC_DIR, "recordings")]

    def agi_routes(self) -> dict[str, AgiRoute]:
        return {}

    @property
    def directory(self) -> Path:
        return self.service.settings.state_dir / "recordings"

    # --- AMI facts ----------------------------------------------------------------------

    def _on_bridge_enter(self, frame: AmiFrame) -> None:
        if _int(frame.get("BridgeNumChannels")) < 2:
            return
        uid = frame.get("Uniqueid")
        found = self._inbound(uid, frame) or self._outbound(uid, frame)
        if found is None or found.call_id in self.recorded:
            return
        self.recorded.add(found.call_id)
        private_dir(found.path.parent)  # Asterisk's umask makes the file 0600
        self.active[found.key] = found
        log.info("recording %s (%s) to %s", found.call_id, found.direction, found.path)
        self._spawn(self._mixmonitor(found))

    @enforces("STD-114", policy=("qa.record_inbound",))
    def _inbound(self, uid: str, frame: AmiFrame) -> Active | None:
        runtime = self.runtime
        link = runtime.agent_links.get(uid)
        call = runtime.calls.get(link.call_id if link is not None else uid)
        if call is None or call.agent_id is None or not self.service.policy.qa.record_inbound:
            return None
        return Active(call.call_id, call.call_id, "inbound", call.channel,
                      self._path(call.call_id), call.agent_id, call.caller, stamp(frame))

    @enforces("STD-114", policy=("qa.record_outbound",))
    def _outbound(self, uid: str, frame: AmiFrame) -> Active | None:
        if self.outbound is None or not self.service.policy.qa.record_outbound:
            return None
        attempt = self.outbound.attempt_for_leg(uid)
        if attempt is None:
            return None
        attempt_id = attempt.attempt_id
        # the agent leg by its uniqueid: AMI finds a channel by uniqueid as by name
        return Active(attempt_id, attempt_id, "outbound", attempt_id, self._path(attempt_id),
                      attempt.agent_id, attempt.number, stamp(frame))

    def _path(self, uid: str) -> Path:
        zone = ZoneInfo(self.service.policy.calendar.timezone)
        day = self.service.clock.wall().astimezone(zone)
        safe = "".join(ch if ch.isalnum() or ch in ".-_" else "_" for ch in uid)
        return self.directory / f"{day:%Y}" / f"{day:%m}" / f"{day:%d}" / f"{safe}.wav"

    async def _mixmonitor(self, rec: Active) -> None:
        try:
            await self.runtime.request(StartRecording(rec.channel, str(rec.path), "b"))
        except Exception as exc:  # the call goes on unrecorded; say so loudly
            log.error("MixMonitor on %s refused: %s", rec.channel, exc)
            self.active.pop(rec.key, None)

    def _on_end(self, frame: AmiFrame) -> None:
        rec = self.active.get(frame.get("Uniqueid"))
        if rec is None or rec.ended_at is not None:
            return
        rec.ended_at = stamp(frame)
        self._spawn(self._finish(rec))

    # --- the row ---------------------------------------------------------------------------

    async def _finish(self, rec: Active) -> None:
        try:
            size = await asyncio.to_thread(settle, rec.path, interval_s=self.settle_interval_s)
            if size < 0:
                log.error("recording of %s: no file at %s", rec.call_id, rec.path)
                return
            info = await asyncio.to_thread(wav_info, rec.path)
        except (OSError, EOFError, wave.Error) as exc:
            log.error("recording of %s unreadable: %s", rec.call_id, exc)
            return
        finally:
            self.active.pop(rec.key, None)
        hold = self.service.policy.hold
        data = {"call_uniqueid": rec.call_id, "direction": rec.direction,
                "agent_id": rec.agent_id, "number": rec.number, "path": str(rec.path),
                "started_at": rec.started_at, "ended_at": rec.ended_at,
                "duration_s": round(info.duration_s, 3), "bytes": info.bytes,
                "hold_limit_s": hold.limit_s, "hold_scope": hold.breach_scope}
        self.finished.append(data)
        self.runtime.execute([Persist("recording", data)])

    # --- retention -----------------------------------------------------------------------

    def purge(self, now: datetime | None = None) -> int:
        """Delete the files older than the retention and mark their rows (worker thread)."""
        store = self.service.store
        now = now or self.service.clock.wall()
        cutoff = now - timedelta(days=self.service.policy.recordings.retention_days)
        purged = 0
        while True:
            due = store.read(repo.recordings_to_purge, cutoff, limit=500)
            if not due:
                return purged
            for row in due:
                try:
                    Path(row.path).unlink(missing_ok=True)
                except OSError as exc:
                    log.error("retention: cannot delete %s: %s", row.path, exc)
                    return purged
                store.run(repo.mark_purged, row.id, now)
                purged += 1
            log.info("retention: %d recordings older than %s purged", purged, cutoff)

    def next_purge(self, now: datetime) -> datetime:
        """The next ``recordings.purge_at`` in the centre's local time, after ``now``."""
        zone = ZoneInfo(self.service.policy.calendar.timezone)
        local = now.astimezone(zone)
        at = self.service.policy.recordings.purge_at
        due = local.replace(hour=at.hour, minute=at.minute, second=0, microsecond=0)
        if due <= local:
            due = (local + timedelta(days=1)).replace(hour=at.hour, minute=at.minute,
                                                      second=0, microsecond=0)
        return due.astimezone(UTC)

    async def _purge_loop(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.purge)
            except Exception:
                log.exception("retention purge failed; next try at the next purge time")
            now = self.service.clock.wall()
            await asyncio.sleep(max(1.0, (self.next_purge(now) - now).total_seconds()))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("recordings: %s", task.exception())


def _int(raw: str) -> int:
    try:
        return int(raw)
    except (TypeError, ValueError):
        return 0


