"""Start, query and stop one Asterisk from the root, without chroot, mounts or privileges.

The sid binary runs through the sid root's own dynamic loader (the host's glibc is
older), with ``asterisk.conf`` pointing every writable directory into a work dir:
configs, spool, logs, the control socket. Nothing inside the root is written, so
several instances (tests, ``make run``) share one root. ``core restart now`` cannot
work in this mode (Asterisk re-execs itself without the loader and exits): restart =
stop + start, and the engine's supervisor (callflow/pbx/supervisor.py) starts again an
Asterisk that exited, whatever the reason.

The process is tracked by PID only (``ps`` shows it as ``ld-linux-x86-64``). An
Asterisk of this work dir left running by an engine that died is *adopted*
(``adopt_or_start``): its calls go on, the new engine takes them over. It runs
with umask 077: Asterisk creates files with mode 0666 and directories 0777 less the
umask and never sets one itself, so its recordings (MixMonitor), logs, astdb and
control socket are its owner's alone (0600, directories 0700; issue 15).
"""

from __future__ import annotations

import array
import contextlib
import logging
import math
import os
import re
import secrets
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from callflow.errors import PbxError
from callflow.pbx.cel import database_path, prepare_database
from callflow.pbx.render import AMI_HOST, CONF_DIR, PbxConfig, render
from callflow.pbx.root import installed_version, is_complete
from callflow.settings import private_dir

log = logging.getLogger(__name__)

LIB_DIRS = ("usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu")
LOADER = "lib64/ld-linux-x86-64.so.2"
WRITABLE = ("etc", "var/lib", "var/spool/monitor", "var/log", "var/cache", "var/run", "data")
UMASK = 0o077
"""Asterisk's umask: what it writes (recordings, logs, astdb) only its owner may read."""
_POLL_S = 0.05


class AsteriskProcess:
    """One Asterisk: ``root`` (read-only tree) + ``workdir`` (everything it writes).

    With ``cfg``, ``start()`` renders the configuration from ``conf_dir`` first, so a
    restart picks up a changed ``cfg``. Without it, the caller has rendered ``etc_dir``
    already (``render(conf_dir, pbx.etc_dir, cfg, pbx.stock_etc_dir)``) and ``start()``
    reads the AMI login and ports back from the rendered files.
    """

    def __init__(
        self,
        root: Path,
        workdir: Path,
        cfg: PbxConfig | None = None,
        conf_dir: Path = CONF_DIR,
    ) -> None:
        self.root = Path(root).absolute()
        self.workdir = Path(workdir).absolute()
        self.cfg = cfg
        self.conf_dir = Path(conf_dir)
        self._link: _Link | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._adopted: int | None = None  # the PID of an Asterisk we did not start
        self._console: IO[bytes] | None = None
        self.boot_seconds: float | None = None

    # ---- paths and commands -------------------------------------------------------------

    @property
    def etc_dir(self) -> Path:
        return self.workdir / "etc"

    @property
    def stock_etc_dir(self) -> Path:
        """The root's own configuration (indications.conf is taken from there)."""
        return self.root / "etc/asterisk"

    @property
    def spool_dir(self) -> Path:
        """Asterisk's spool; MixMonitor's relative file names land in ``spool_dir/monitor``."""
        return self.workdir / "var/spool"

    @property
    def log_dir(self) -> Path:
        return self.workdir / "var/log"

    @property
    def cel_path(self) -> Path:
        """Asterisk's own call records (CEL), read by the engine (callflow/pbx/cel.py)."""
        return database_path(self.log_dir)

    @property
    def console_log(self) -> Path:
        return self.workdir / "console.log"

    def command(self) -> list[str]:
        """The Asterisk command line (loader + library path) without mode flags."""
        libs = ":".join(str(self.root / d) for d in LIB_DIRS)
        return [
            str(self.root / LOADER),
            "--library-path",
            libs,
            str(self.root / "usr/sbin/asterisk"),
            "-C",
            str(self.etc_dir / "asterisk.conf"),
        ]

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else self._adopted

    @property
    def running(self) -> bool:
        if self._proc is not None:
            return self._proc.poll() is None
        return self._adopted is not None and self._ours(self._adopted)

    @property
    def adopted(self) -> bool:
        return self._adopted is not None

    @property
    def version(self) -> str:
        """The root's Asterisk package version (log it beside test results: sid drifts)."""
        return installed_version(self.root)

    # ---- work dir -----------------------------------------------------------------------

    def prepare(self) -> None:
        """Lay out the work dir and render the configuration into it."""
        if not is_complete(self.root):
            raise PbxError(f"{self.root} is not a built Asterisk root (see callflow.pbx.root)")
        for sub in WRITABLE:
            private_dir(self.workdir / sub)
        self._link_data_dir()
        if self.cfg is not None:
            render(self.conf_dir, self.etc_dir, self.cfg, self.stock_etc_dir)
        self._write_asterisk_conf()
        self._link = _Link.from_cfg(self.cfg) if self.cfg else _Link.from_etc(self.etc_dir)

    def _in_root(self, path: Path) -> Path:
        """Resolve ``path`` (inside the root) as the root would: absolute links stay inside it."""
        for _ in range(40):
            if not path.is_symlink():
                return path
            target = Path(os.readlink(path))
            path = (
                self.root / target.relative_to("/")
                if target.is_absolute()
                else path.parent / target
            )
        raise PbxError(f"symlink loop under {path}")

    def _link_data_dir(self) -> None:
        """``astdatadir`` = a dir of links into the root (its sounds/en link is absolute)."""
        share = self.root / "usr/share/asterisk"
        data = self.workdir / "data"
        for entry in share.iterdir():
            if entry.name not in ("sounds", "moh"):
                _symlink(data / entry.name, self._in_root(entry))
        (data / "sounds").mkdir(exist_ok=True)
        for entry in (share / "sounds").iterdir():
            target = self._in_root(entry)
            if target.exists():
                _symlink(data / "sounds" / entry.name, target)
        moh = data / "moh"
        if moh.is_symlink():
            moh.unlink()
        moh.mkdir(exist_ok=True)
        for root_moh in (share / "moh", self.root / "var/lib/asterisk/moh"):
            resolved = self._in_root(root_moh)
            if resolved.is_dir():
                for music in resolved.iterdir():
                    _symlink(moh / music.name, music)
        tone = moh / "callflow-hold.sln"
        if not tone.exists():
            tone.write_bytes(hold_tone())

    def _write_asterisk_conf(self) -> None:
        w, r = self.workdir, self.root
        dirs = {
            "astcachedir": w / "var/cache",
            "astetcdir": w / "etc",
            "astmoddir": r / "usr/lib/x86_64-linux-gnu/asterisk/modules",
            "astvarlibdir": w / "var/lib",
            "astdbdir": w / "var/lib",
            "astkeydir": w / "var/lib",
            "astdatadir": w / "data",
            "astagidir": r / "usr/share/asterisk/agi-bin",
            "astspooldir": w / "var/spool",
            "astrundir": w / "var/run",
            "astlogdir": w / "var/log",
            "astsbindir": r / "usr/sbin",
        }
        text = (
            "; written by callflow.pbx.process: the root is read-only, the work dir writable\n"
            "[directories]\n"
            + "".join(f"{k} => {v}\n" for k, v in dirs.items())
            + "\n[options]\ndocumentation_language = en_US\nhideconnect = yes\n"
        )
        (self.etc_dir / "asterisk.conf").write_text(text)

    # ---- life cycle ---------------------------------------------------------------------

    def start(self, timeout: float = 15.0) -> None:
        """Render, launch ``asterisk -f``, return once AMI logs in and ``FullyBooted`` arrived."""
        if self.running:
            raise PbxError(f"Asterisk is already running (pid {self.pid})")
        self.prepare()
        self._refuse_if_taken()
        prepare_database(self.cel_path)  # before Asterisk opens it: WAL, our indexes
        self._console = self.console_log.open("ab")
        self._console.write(f"---- callflow: starting Asterisk at {time.ctime()} ----\n".encode())
        self._console.flush()
        t0 = time.monotonic()
        self._proc = subprocess.Popen(
            [*self.command(), "-f", "-n", "-vvv"],
            stdin=subprocess.DEVNULL,
            stdout=self._console,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            # its own session: a Ctrl-C reaches only our caller, which stops the engine
            # first and then Asterisk (by PID), instead of Asterisk dying mid-shutdown
            start_new_session=True,
            umask=UMASK,
        )
        log.info("Asterisk pid %s starting (work dir %s)", self._proc.pid, self.workdir)
        try:
            self._wait_fully_booted(t0 + timeout)
        except BaseException:
            self._kill()
            raise
        self.boot_seconds = time.monotonic() - t0
        log.info("Asterisk pid %s fully booted in %.2fs", self._proc.pid, self.boot_seconds)

    def adopt_or_start(self, timeout: float = 15.0) -> bool:
        """Take over the Asterisk of this work dir that is still running (an engine that
        died left it: its calls go on), else start one. True when adopted."""
        pid = self._left_running()
        if pid is None:
            self.start(timeout)
            return False
        self.prepare()
        self._adopted = pid
        self._proc = None
        try:
            self._wait_fully_booted(time.monotonic() + timeout)
        except BaseException:
            self._adopted = None
            raise
        log.info("adopted the running Asterisk pid %s (work dir %s)", pid, self.workdir)
        return True

    def _left_running(self) -> int | None:
        try:
            pid = int((self.workdir / "var/run/asterisk.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if self._ours(pid) else None

    def _ours(self, pid: int) -> bool:
        """``pid`` is alive and is an Asterisk of this work dir (not a reused PID)."""
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        return state != "Z" and str(self.etc_dir / "asterisk.conf").encode() in cmdline

    def _refuse_if_taken(self) -> None:
        """Fail early on busy ports: Asterisk would boot anyway, half deaf, and a login
        on a taken AMI port would reach someone else's PBX."""
        self._refuse_if_left_running()
        link = self._ready_link()
        with (
            contextlib.suppress(OSError),
            socket.create_connection((link.ami_host, link.ami_port), timeout=0.5),
        ):
            raise PbxError(
                f"AMI port {link.ami_host}:{link.ami_port} is already in use (another "
                "Asterisk?); stop it or choose other ports"
            )
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            try:
                udp.bind((link.bind_host, link.sip_port))
            except OSError as exc:
                raise PbxError(
                    f"SIP port {link.bind_host}:{link.sip_port}/udp is already in use: {exc}"
                ) from None

    def _refuse_if_left_running(self) -> None:
        """``start`` never starts a second Asterisk over one left running by an earlier run
        (``adopt_or_start`` takes it over instead); never kill it here: only the caller
        knows whether it is theirs to kill."""
        pid = self._left_running()
        if pid is not None:
            raise PbxError(
                f"an Asterisk from {self.workdir} is still running (pid {pid}), left by an "
                f"earlier run; `callflow run` adopts it, or stop it with `kill {pid}`"
            )

    def _wait_fully_booted(self, deadline: float) -> None:
        while True:
            self._check_alive()
            if time.monotonic() > deadline:
                raise PbxError(
                    "Asterisk did not accept an AMI login in time\n" + self.console_tail()
                )
            try:
                sock = socket.create_connection(
                    (self._ready_link().ami_host, self._ready_link().ami_port),
                    timeout=max(0.1, deadline - time.monotonic()),
                )
            except OSError:
                time.sleep(_POLL_S)
                continue
            with sock:
                if self._booted_over(sock, deadline):
                    return

    def _booted_over(self, sock: socket.socket, deadline: float) -> bool:
        """Log in with only system events and wait for FullyBooted (it follows the login)."""
        f = sock.makefile("rwb", buffering=0)
        try:
            f.readline()  # banner
            action_id = secrets.token_hex(4)
            login = {
                "Action": "Login",
                "Username": self._ready_link().ami_username,
                "Secret": self._ready_link().ami_secret,
                "Events": "system",
                "ActionID": action_id,
            }
            f.write("".join(f"{k}: {v}\r\n" for k, v in login.items()).encode() + b"\r\n")
            while True:
                self._check_alive()
                sock.settimeout(max(0.05, deadline - time.monotonic()))
                msg = _read_message(f)
                if msg.get("Response") == "Error" and msg.get("ActionID") == action_id:
                    raise PbxError(f"AMI refused our login: {msg.get('Message', '')}")
                if msg.get("Event") == "FullyBooted":
                    with contextlib.suppress(OSError):
                        f.write(b"Action: Logoff\r\n\r\n")
                    return True
        except (OSError, EOFError):
            if time.monotonic() > deadline:
                raise PbxError(
                    "Asterisk did not finish booting in time\n" + self.console_tail()
                ) from None
            time.sleep(_POLL_S)
            return False
        finally:
            f.close()

    def _ready_link(self) -> _Link:
        if self._link is None:
            raise PbxError("prepare() has not run: no AMI login known")
        return self._link

    def _check_alive(self) -> None:
        if self._adopted is not None and not self._ours(self._adopted):
            raise PbxError(f"the adopted Asterisk pid {self._adopted} exited")
        if self._proc is not None and self._proc.poll() is not None:
            rc = self._proc.returncode
            raise PbxError(
                f"Asterisk exited with status {rc} while starting\n" + self.console_tail()
            )

    def cli(self, command: str, timeout: float = 10.0) -> str:
        """Run one CLI command over the control socket (``asterisk -rx``); return its output."""
        if not self.running:
            raise PbxError(f"Asterisk is not running; cannot run {command!r}")
        try:
            done = subprocess.run(
                [*self.command(), "-rx", command],
                capture_output=True,
                text=True,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
                cwd=self.workdir,
            )
        except subprocess.TimeoutExpired as exc:
            raise PbxError(f"asterisk -rx {command!r} took longer than {timeout}s") from exc
        except OSError as exc:
            raise PbxError(f"cannot run Asterisk's CLI from {self.root} ({exc.strerror}): "
                           f"check CALLFLOW_ASTERISK_ROOT") from None
        if done.returncode != 0:
            raise PbxError(
                f"asterisk -rx {command!r} failed ({done.returncode}): {done.stderr or done.stdout}"
            )
        return done.stdout

    def live_channels(self) -> int:
        """How many channels Asterisk has up now (``core show channels count``): whether
        stopping it would cut calls."""
        out = self.cli("core show channels count")
        found = re.search(r"^(\d+) active channels?$", out, re.MULTILINE)
        if found:
            return int(found.group(1))
        raise PbxError(f"unexpected `core show channels count` output: {out[:200]!r}")

    def find_running(self) -> bool:
        """Adopt the Asterisk of this work dir if one runs (``callflow pbx status|stop``);
        never starts one."""
        if self.running:
            return True
        pid = self._left_running()
        if pid is None:
            return False
        self._adopted = pid
        return True

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM by PID (Asterisk ends cleanly, ~1.5 s); SIGKILL if it outlives ``timeout``."""
        if self._adopted is not None:
            self._stop_adopted(timeout)
            return None
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            t0 = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
                log.info("Asterisk pid %s stopped in %.2fs", proc.pid, time.monotonic() - t0)
            except subprocess.TimeoutExpired:
                log.warning(
                    "Asterisk pid %s ignored SIGTERM for %ss; killing it", proc.pid, timeout
                )
                self._kill()
        self._close_console()
        return proc.returncode

    def _stop_adopted(self, timeout: float) -> None:
        pid, self._adopted = self._adopted, None
        if pid is None or not self._ours(pid):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self._ours(pid) and time.monotonic() < deadline:
            time.sleep(_POLL_S)
        if self._ours(pid):
            log.warning("adopted Asterisk pid %s ignored SIGTERM for %ss; killing it", pid,
                        timeout)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def restart(self, timeout: float = 15.0) -> None:
        self.stop()
        self.start(timeout)

    def _kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._close_console()

    def _close_console(self) -> None:
        if self._console is not None:
            self._console.close()
            self._console = None

    def console_tail(self, lines: int = 40) -> str:
        try:
            text = self.console_log.read_text(errors="replace")
        except OSError:
            return "(no console log)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> AsteriskProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass(frozen=True)
class _Link:
    """Where and how the harness itself reaches this Asterisk (its readiness check)."""

    bind_host: str  # SIP's
    ami_host: str
    ami_port: int
    sip_port: int
    ami_username: str
    ami_secret: str

    @classmethod
    def from_cfg(cls, cfg: PbxConfig) -> _Link:
        return cls(cfg.bind_host, AMI_HOST, cfg.ami_port, cfg.sip_port, cfg.ami_username,
                   cfg.ami_secret)

    @classmethod
    def from_etc(cls, etc_dir: Path) -> _Link:
        """Read the AMI login and SIP bind back from a rendered manager.conf / pjsip.conf."""
        manager = _read_conf(etc_dir / "manager.conf")
        general = next((kv for name, kv in manager if name == "general"), {})
        users = [(name, kv) for name, kv in manager if name != "general" and "secret" in kv]
        if not users:
            raise PbxError(f"{etc_dir / 'manager.conf'} defines no AMI user with a secret")
        binds = [kv["bind"] for _, kv in _read_conf(etc_dir / "pjsip.conf") if "bind" in kv]
        if not binds:
            raise PbxError(f"{etc_dir / 'pjsip.conf'} defines no transport bind")
        sip_host, _, sip_port = binds[0].rpartition(":")
        try:
            return cls(
                bind_host=sip_host or "127.0.0.1",
                ami_host=general.get("bindaddr", AMI_HOST),
                ami_port=int(general.get("port", "5038")),
                sip_port=int(sip_port or "5060"),
                ami_username=users[0][0],
                ami_secret=users[0][1]["secret"],
            )
        except ValueError as exc:
            raise PbxError(f"bad port in {etc_dir}: {exc}") from exc


def _read_conf(path: Path) -> list[tuple[str, dict[str, str]]]:
    """Asterisk's ini dialect, enough for our own rendered files: ``[name](tpl)``, ``k = v``."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise PbxError(f"cannot read {path}: {exc}") from exc
    sections: list[tuple[str, dict[str, str]]] = []
    for raw in lines:
        line = raw.split(";", 1)[0].strip()
        if line.startswith("["):
            sections.append((line[1 : line.index("]")], {}))
        elif "=" in line and sections:
            key, _, value = line.partition("=")
            sections[-1][1][key.strip()] = value.lstrip(">").strip()
    return sections


def hold_tone(rate: int = 8000) -> bytes:
    """A quiet two-note chime with a pause (raw 16-bit 8 kHz), so a held caller hears that
    the line is alive even when the root ships no music (no asterisk-moh package)."""
    samples: list[int] = []
    for freq, seconds in ((440.0, 0.4), (0.0, 0.15), (554.4, 0.4), (0.0, 2.0)):
        n = int(rate * seconds)
        fade = int(rate * 0.02)
        for i in range(n):
            envelope = min(1.0, i / fade, (n - i) / fade) if freq else 0.0
            samples.append(int(6000 * envelope * math.sin(2 * math.pi * freq * i / rate)))
    return array.array("h", samples).tobytes()


def _symlink(link: Path, target: Path) -> None:
    if link.is_symlink() or link.exists():
        if link.is_symlink() and Path(os.readlink(link)) == target:
            return
        link.unlink()
    link.symlink_to(target)


def _read_message(f: socket.SocketIO | IO[bytes]) -> dict[str, str]:
    """One AMI message (``Key: Value`` lines up to a blank line); EOFError at end of stream."""
    msg: dict[str, str] = {}
    while True:
        raw = f.readline()
        if not raw:
            raise EOFError
        line = raw.decode(errors="replace").rstrip("\r\n")
        if not line:
            if msg:
                return msg
            continue
        key, _, value = line.partition(": ")
        msg[key] = value
