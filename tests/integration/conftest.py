"""Integration fixtures: one real Asterisk per session, SIPp processes per test.

The Asterisk is the product's own (``callflow.pbx``: the same templates and renderer
as ``make run``), started from the root in ``ASTERISK_ROOT`` (built on first use) on
the port set ``Ports.from_base(port_base())`` (``portblock.py``: one block per xdist
worker), with fresh AMI secrets and fresh softphone passwords per session. The engine's
AMI login (``PbxHandle.username``/``secret``) has only the classes the product uses; the
tests' tap logs in as a second user, ``observer``, that reads and writes everything.
Agents 1001-1004 have static contacts (SIPp UAS on base+101..104), agent 1005 REGISTERs
with digest auth, the outbound ``customer`` is a SIPp UAS on base+120. The FastAGI
target is 127.0.0.1:base+573, where nothing listens unless a test starts the product's
server there.

Every test that uses the ``asterisk`` fixture (directly or through ``sipp``) is
marked ``integration`` here, wherever it lives.
"""

from __future__ import annotations

import gc
import logging
import os
import secrets
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from amitap import AmiTap, AmiTapError
from playwright.sync_api import Browser, sync_playwright
from portblock import port_base
from sippctl import SippControl

from callflow.pbx.process import AsteriskProcess
from callflow.pbx.render import AgentEndpoint, AmiLogin, PbxConfig
from callflow.pbx.root import ensure_root
from callflow.settings import REPO_ROOT, Ports

log = logging.getLogger(__name__)

STATIC_AGENTS = ("1001", "1002", "1003", "1004")
REGISTERING_AGENTS = ("1005",)
QUALIFY_S = 1
QUALIFY_TIMEOUT_S = 1.0  # loopback answers in < 1 ms; a short timeout keeps wait_ready short


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Whatever needs the real Asterisk is an integration test, marked or not."""
    for item in items:
        if "asterisk" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)


@dataclass
class PbxHandle:
    """What a test needs from the session's Asterisk."""

    process: AsteriskProcess
    config: PbxConfig
    ports: Ports
    port_base: int
    tap: AmiTap
    passwords: dict[str, str]

    @property
    def username(self) -> str:
        return self.config.ami_username

    @property
    def secret(self) -> str:
        return self.config.ami_secret

    @property
    def workdir(self) -> Path:
        return self.process.workdir

    @property
    def spool_dir(self) -> Path:
        return self.process.spool_dir

    @property
    def monitor_dir(self) -> Path:
        """Where MixMonitor's relative file names land."""
        return self.process.spool_dir / "monitor"

    @property
    def agents(self) -> list[str]:
        return [a.ext for a in self.config.agents]

    def agent_port(self, ext: str) -> int:
        """The SIP port of agent ``ext``'s softphone (its static contact or REGISTER contact)."""
        return self.port_base + 100 + int(ext) - 1000

    def agent_ports(self) -> dict[str, int]:
        return {ext: self.agent_port(ext) for ext in self.agents}

    def agent_password(self, ext: str) -> str:
        return self.passwords[ext]

    def cli(self, command: str) -> str:
        return self.process.cli(command)

    def restart(self) -> float:
        """Stop + start (the no-chroot mode cannot ``core restart``); the tap logs in again.

        Returns the seconds from stop to FullyBooted."""
        t0 = time.monotonic()
        self.process.restart()
        self.tap.reconnect()
        return time.monotonic() - t0

    def reset(self) -> None:
        """Leave no call and no paused member behind for the next test."""
        if not self.process.running:
            log.warning("Asterisk died during the test; starting it again")
            self.process.start()
            self.tap.reconnect()
        if not self.tap.connected:
            self.tap.reconnect()
        self.tap.action(Action="Hangup", Channel="/.*/")
        deadline = time.monotonic() + 5
        while "0 active channels" not in self.tap.command("core show channels count"):
            if time.monotonic() > deadline:
                raise AmiTapError("channels still up 5 s after hanging them all up")
            time.sleep(0.1)
        for ext in self.agents:
            self.tap.action(Action="QueuePause", Interface=f"PJSIP/agent{ext}", Paused="false")


CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's chromium, headless, through Playwright (no browser download needed).

    Module scope: Playwright's sync API must not be alive while another module's
    asyncio tests run on the same thread."""
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="session")
def asterisk_root() -> Path:
    root = Path(os.environ.get("ASTERISK_ROOT", REPO_ROOT / "build" / "asterisk-root"))
    version = ensure_root(root, progress=lambda line: log.warning("asterisk root: %s", line))
    log.info("Asterisk %s from %s", version, root)
    return root


@pytest.fixture(scope="session")
def asterisk(asterisk_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PbxHandle]:
    """The session's Asterisk (see the module docstring for its agents and ports)."""
    base = port_base()
    ports = Ports.from_base(base)
    passwords = {ext: secrets.token_urlsafe(12) for ext in REGISTERING_AGENTS}
    agents = [
        AgentEndpoint(
            ext,
            static_contact=f"sip:agent{ext}@127.0.0.1:{base + 100 + int(ext) - 1000}",
            qualify_frequency=QUALIFY_S,
            qualify_timeout=QUALIFY_TIMEOUT_S,
        )
        for ext in STATIC_AGENTS
    ] + [
        AgentEndpoint(
            ext,
            password=passwords[ext],
            qualify_frequency=QUALIFY_S,
            qualify_timeout=QUALIFY_TIMEOUT_S,
        )
        for ext in REGISTERING_AGENTS
    ]
    config = PbxConfig(
        ami_port=ports.ami,
        ami_username="callflow",
        ami_secret=secrets.token_urlsafe(18),
        sip_port=ports.sip,
        rtp_start=ports.rtp_start,
        rtp_end=ports.rtp_end,
        agi_host="127.0.0.1",
        agi_port=ports.agi,
        country="cn",
        agents=agents,
        customer_contact=f"sip:customer@127.0.0.1:{base + 120}",
        observer=AmiLogin("observer", secrets.token_urlsafe(18)),
    )
    process = AsteriskProcess(asterisk_root, tmp_path_factory.mktemp("pbx"), config)
    process.start()
    log.info(
        "Asterisk %s booted in %.2fs (pid %s, console %s)",
        process.version, process.boot_seconds, process.pid, process.console_log,
    )  # fmt: skip
    assert config.observer is not None
    tap = AmiTap("127.0.0.1", ports.ami, config.observer.username, config.observer.secret)
    handle = PbxHandle(process, config, ports, base, tap, passwords)
    previous = signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
    try:
        yield handle
    finally:
        signal.signal(signal.SIGTERM, previous)
        tap.close()
        process.stop()


def _interrupt_on_sigterm(signum: int, _frame: object) -> None:
    """A SIGTERM (CI timeout, `timeout pytest`) unwinds like Ctrl-C, so teardown still stops
    Asterisk and every SIPp: Asterisk runs in its own session and would be left behind."""
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="module", autouse=True)
def _collect_after_module() -> Iterator[None]:
    """Collect garbage when a module ends: a socket or thread a module left unclosed is
    reported (ResourceWarning, an error here) at that module's teardown, not at some
    later, innocent test's setup on the same worker."""
    yield
    gc.collect()


@pytest.fixture(autouse=True)
def _pbx_clean_slate(request: pytest.FixtureRequest) -> Iterator[None]:
    """Tests that use the Asterisk start from an empty event list and end with no calls."""
    if "asterisk" not in request.fixturenames:
        yield
        return
    handle: PbxHandle = request.getfixturevalue("asterisk")
    handle.tap.clear()
    yield
    handle.reset()


@pytest.fixture
def sipp(asterisk: PbxHandle, tmp_path: Path) -> Iterator[SippControl]:
    """SIPp softphones, callers and REGISTERs for one test, all stopped by PID afterwards."""
    control = SippControl(
        asterisk.tap,
        asterisk.ports.sip,
        asterisk.port_base,
        tmp_path,
        asterisk.agent_ports(),
        qualify_frequency=QUALIFY_S,
        qualify_timeout=QUALIFY_TIMEOUT_S,
    )
    try:
        yield control
    finally:
        control.stop_all()
