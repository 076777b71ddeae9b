"""SIPp processes for integration tests: agents' softphones (UAS), callers (UAC), REGISTER.

Rules learnt the hard way (kept here so nobody relearns them):
- a softphone UAS runs without ``-m`` for the whole test: Asterisk's qualify OPTIONS
  count as calls, so ``-m 1`` would make it quit before the INVITE;
- ``-timeout`` does not end a UAS that answered OPTIONS, so every process is
  terminated by PID at teardown (SIGTERM ends SIPp at once, status 97);
- with qualify on, Queue()/Dial() skip an agent whose contact is not Reachable:
  ``softphone()`` waits until Asterisk has really seen this process answer;
- stdin is /dev/null; each process logs to its own files in the test's tmp dir.
"""

from __future__ import annotations

import itertools
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from amitap import AmiTap, AmiTapError

SCENARIO_DIR = Path(__file__).resolve().parent.parent / "sipp"
MEDIA_SPACING = 4  # SIPp echoes RTP on its media port and on media port + 2 (video)
DEFAULT_CALLER_ID = "13800000000"


@dataclass
class SippRun:
    """One SIPp process and its files."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log_file: Path
    err_file: Path
    out_file: Path
    started: float = field(default_factory=time.monotonic)
    aor: str | None = None

    def wait(self, timeout: float) -> int:
        """Exit status (0 = scenario passed); fails the test with the logs if it hangs."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"SIPp {self.name} still running after {timeout}s\n{self.diagnostics()}"
            ) from None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        return _read(self.log_file)

    def diagnostics(self) -> str:
        return (
            f"--- {self.name} log ---\n{_read(self.log_file)[-2000:]}\n"
            f"--- {self.name} errors ---\n{_read(self.err_file)[-2000:]}"
        )


class SippControl:
    """Starts SIPp processes for one test; ``stop_all()`` ends every one of them by PID."""

    def __init__(
        self,
        tap: AmiTap,
        sip_port: int,
        port_base: int,
        log_dir: Path,
        agent_port: dict[str, int],
        qualify_frequency: float,
        qualify_timeout: float,
    ) -> None:
        self.tap = tap
        self.qualify_frequency = qualify_frequency
        self.qualify_timeout = qualify_timeout
        self.target = f"127.0.0.1:{sip_port}"
        self.log_dir = log_dir
        self.agent_port = agent_port
        self.port_base = port_base
        self.customer_port = port_base + 120
        self._caller_ports = itertools.cycle(range(port_base + 70, port_base + 90))
        self._register_ports = itertools.cycle(range(port_base + 90, port_base + 100))
        self.runs: list[SippRun] = []

    def media_port(self, sip_port: int) -> int:
        """SIPp's RTP port: inside the worker's own port block, in its unused
        [base+1000, base+2000), ``MEDIA_SPACING`` apart so that no SIPp's video port (its
        media port + 2) is another's audio port, whatever the port base."""
        return self.port_base + 1000 + MEDIA_SPACING * (sip_port - self.port_base)

    def start(self, name: str, scenario: str, port: int, *args: object,
              local_ip: str = "127.0.0.1") -> SippRun:
        """Any SIPp process: ``sipp -sf tests/sipp/<scenario> -p <port> -mp <media> ...``.

        ``local_ip``: another loopback address (127.0.0.2...) makes a peer Asterisk tells
        apart by address, like a carrier (tests/integration/test_trunks_live.py)."""
        n = sum(1 for r in self.runs if r.name.split("#")[0] == name)
        name = f"{name}#{n}" if n else name
        files = {kind: self.log_dir / f"sipp-{name}.{kind}" for kind in ("log", "err", "out")}
        cmd = [
            "sipp", "-sf", str(SCENARIO_DIR / scenario),
            "-i", local_ip, "-p", str(port), "-mp", str(self.media_port(port)),
            "-trace_logs", "-log_file", str(files["log"]),
            "-trace_err", "-error_file", str(files["err"]),
            *map(str, args),
        ]  # fmt: skip
        with files["out"].open("wb") as out:
            proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                cwd=SCENARIO_DIR,
            )  # fmt: skip
        run = SippRun(name, proc, port, files["log"], files["err"], files["out"])
        self.runs.append(run)
        return run

    def softphone(
        self,
        ext: str,
        scenario: str = "uas_answer.xml",
        ring_ms: int = 0,
        wait: bool = True,
    ) -> SippRun:
        """Agent ``ext``'s softphone on its static-contact port: rings ``ring_ms``, then acts.

        With ``wait``, returns once Queue()/Dial() can rely on it (``wait_ready``). Start
        several with ``wait=False`` and call ``wait_ready`` once to wait for them together.
        """
        run = self.start(f"agent{ext}", scenario, self.agent_port[ext], "-aa", "-d", ring_ms)
        run.aor = f"agent{ext}"
        if wait:
            self.wait_ready(run)
        return run

    def customer(self, scenario: str = "uas_noanswer.xml", ring_ms: int = 0) -> SippRun:
        """The outbound callee behind the ``customer`` endpoint (not qualified: no wait)."""
        return self.start("customer", scenario, self.customer_port, "-aa", "-d", ring_ms)

    def wait_ready(self, *runs: SippRun, timeout: float = 10.0) -> None:
        """Wait until Asterisk holds each softphone's contact Reachable for good.

        Waiting for the first ``ContactStatus Reachable`` is not enough (measured): an
        OPTIONS sent to the port before SIPp was up times out ``qualify_timeout`` later
        and flips the contact to Unreachable for a moment (1.14 s after start with the
        3 s default), and after a restart on the same port no event comes at all. So:
        wait until every OPTIONS sent before the start has resolved, then require
        Reachable now.
        """
        for run in runs:
            if run.aor is None:
                raise ValueError(f"{run.name} is not a softphone")
            settle = run.started + self.qualify_timeout + 0.2
            deadline = run.started + timeout
            while True:
                if not run.running:
                    raise AmiTapError(f"softphone {run.name} exited\n{run.diagnostics()}")
                if time.monotonic() >= settle and self.contact_status(run.aor) == "Reachable":
                    break
                if time.monotonic() > deadline:
                    raise AmiTapError(
                        f"{run.aor} not Reachable {timeout}s after its softphone started "
                        f"(status {self.contact_status(run.aor)})\n{run.diagnostics()}"
                    )
                time.sleep(0.1)

    def contact_status(self, aor: str) -> str | None:
        """Asterisk's current view of the AOR's contact: Reachable, Unreachable, NonQualified..."""
        _, items = self.tap.action_list(Action="PJSIPShowEndpoint", Endpoint=aor)
        statuses = [i.get("Status") for i in items if i["Event"] == "ContactStatusDetail"]
        return statuses[0] if statuses else None

    def caller(
        self,
        service: str,
        scenario: str = "uac_call.xml",
        *args: object,
        caller_id: str = DEFAULT_CALLER_ID,
        talk_ms: int = 2000,
        timeout_s: int = 120,
    ) -> SippRun:
        """One call into Asterisk (``-m 1``) for DID/extension ``service`` from ``caller_id``."""
        return self.start(
            f"caller-{service}", scenario, next(self._caller_ports),
            "-s", service, self.target, "-m", 1, "-d", talk_ms,
            "-timeout", f"{timeout_s}s", "-key", "from_user", caller_id, *args,
        )  # fmt: skip

    def register(
        self, ext: str, password: str, expires: int = 300, contact_port: int | None = None
    ) -> SippRun:
        """REGISTER agent ``ext`` with digest auth; the contact points at its softphone port."""
        user = f"agent{ext}"
        return self.start(
            f"register-{ext}", "register.xml", next(self._register_ports), self.target,
            "-m", 1, "-timeout", "15s", "-au", user, "-ap", password,
            "-key", "user", user,
            "-key", "contact_port", contact_port or self.agent_port[ext],
            "-key", "expires", expires,
        )  # fmt: skip

    def stop_all(self) -> None:
        """Stop every process, then wait until Asterisk has noticed the softphones are gone,
        so the next test never sees a phantom Reachable agent that Queue() would ring."""
        for run in self.runs:
            run.stop()
        deadline = time.monotonic() + self.qualify_frequency + self.qualify_timeout + 2
        for aor in sorted({run.aor for run in self.runs if run.aor}):
            while time.monotonic() < deadline and self.tap.connected:
                if self.contact_status(aor) != "Reachable":
                    break
                time.sleep(0.1)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""
