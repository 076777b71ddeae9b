"""The Asterisk root: a minimal Debian sid tree that carries the Asterisk we run.

Debian 12 ships no Asterisk, sid ships 22.x, so ``mmdebstrap`` builds a small sid
tree once (about 20 s, 340 MB) and everything runs from it without chroot (see
``process.py``). The tree is built beside its final place and renamed into it only
when complete, so an interrupted build is never mistaken for a good root.

Run as ``python -m callflow.pbx.root [ROOTDIR]`` to build it ahead of time.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from callflow.errors import PbxError

log = logging.getLogger(__name__)

DEFAULT_MIRROR = "http://deb.debian.org/debian"
SUITE = "sid"
PACKAGES = ("asterisk", "asterisk-modules", "asterisk-core-sounds-en-gsm")
DEB822_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
ONE_LINE_SOURCES = Path("/etc/apt/sources.list")
_TMP_PREFIX = ".building-"
_HEARTBEAT_S = 5.0


def is_complete(root: Path) -> bool:
    """A root is usable when the binary and the loader we start it with are there."""
    return (root / "usr/sbin/asterisk").exists() and (root / "lib64/ld-linux-x86-64.so.2").exists()


def debian_mirror(deb822: Path = DEB822_SOURCES, one_line: Path = ONE_LINE_SOURCES) -> str:
    """The Debian mirror this machine's apt already uses (CI machines may only reach that one)."""
    try:
        for line in deb822.read_text().splitlines():
            if line.startswith("URIs:") and "security" not in line:
                uris = line.split()[1:]
                if uris:
                    return uris[0]
    except OSError:
        pass
    try:
        for line in one_line.read_text().splitlines():
            m = re.match(r"\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s", line)
            if m and "security" not in m.group(1):
                return m.group(1)
    except OSError:
        pass
    return DEFAULT_MIRROR


def installed_version(root: Path, package: str = "asterisk") -> str:
    """The Debian version of ``package`` in the root, from the root's own dpkg database.

    Versions drift with sid, so callers log it next to test results.
    """
    status = root / "var/lib/dpkg/status"
    try:
        text = status.read_text(errors="replace")
    except OSError as exc:
        raise PbxError(f"cannot read {status}: {exc}") from exc
    for stanza in text.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in stanza.splitlines() if ": " in line and line[0] != " "
        )
        if fields.get("Package") == package and "installed" in fields.get("Status", ""):
            return fields.get("Version", "")
    raise PbxError(f"package {package!r} is not installed in {root}")


def mmdebstrap_command(target: Path, mirror: str) -> list[str]:
    return [
        "mmdebstrap",
        "--variant=minbase",
        '--aptopt=Acquire::Check-Valid-Until "false"',
        f"--include={','.join(PACKAGES)}",
        SUITE,
        str(target),
        mirror,
    ]


def _remove_stale_builds(parent: Path, name: str) -> None:
    """Drop half-built trees left by an interrupted build whose process is gone."""
    for stale in parent.glob(f"{_TMP_PREFIX}{name}-*"):
        pid_text = stale.name.rsplit("-", 2)[-2]
        if pid_text.isdigit() and Path(f"/proc/{pid_text}").exists():
            continue
        log.info("removing interrupted build %s", stale)
        _remove_tree(stale)


def _mounts_under(path: Path) -> list[str]:
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return []
    prefix = str(path)
    points = [line.split()[1].replace("\\040", " ") for line in lines if len(line.split()) > 1]
    return [p for p in points if p == prefix or p.startswith(prefix + "/")]


def _remove_tree(path: Path) -> None:
    """Delete a half-built tree, never through a mount: mmdebstrap (root mode) mounts
    /proc, /sys and /dev nodes inside it, and deleting through a bind mount of /dev
    would delete the host's device nodes."""
    for point in sorted(_mounts_under(path), reverse=True):
        subprocess.run(["umount", "--lazy", point], check=False, capture_output=True)
    left = _mounts_under(path)
    if left:
        log.error("not removing %s: still mounted inside it: %s", path, ", ".join(left))
        return
    shutil.rmtree(path, ignore_errors=True)


def _stream(proc: subprocess.Popen[str], progress: Callable[[str], None], t0: float) -> deque[str]:
    """Forward mmdebstrap's lines with elapsed time; say something every few seconds of silence."""
    lines: queue.Queue[str | None] = queue.Queue()
    tail: deque[str] = deque(maxlen=40)

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=reader, name="mmdebstrap-output", daemon=True).start()
    while True:
        try:
            line = lines.get(timeout=_HEARTBEAT_S)
        except queue.Empty:
            progress(f"[{time.monotonic() - t0:5.1f}s] ... still building")
            continue
        if line is None:
            return tail
        tail.append(line)
        progress(f"[{time.monotonic() - t0:5.1f}s] {line}")


def build_root(
    root: Path, progress: Callable[[str], None] = print, mirror: str | None = None
) -> None:
    """Build the root with mmdebstrap into a temporary sibling, then rename it into place."""
    root = root.absolute()
    if root.exists() and any(root.iterdir()):
        raise PbxError(
            f"{root} exists but holds no Asterisk (usr/sbin/asterisk missing); "
            "remove it or point ASTERISK_ROOT elsewhere"
        )
    if shutil.which("mmdebstrap") is None:
        raise PbxError(
            "mmdebstrap is not installed, so the Asterisk root cannot be built: "
            "run `apt-get install mmdebstrap` (as root), or point ASTERISK_ROOT at a built root"
        )
    if root.exists():
        root.rmdir()
    root.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_builds(root.parent, root.name)
    mirror = mirror or debian_mirror()
    tmp = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{root.name}-{os.getpid()}-", dir=root.parent))
    cmd = mmdebstrap_command(tmp, mirror)
    progress(f"building the Asterisk root in {root} from {mirror} (about a minute)")
    log.info("running %s", " ".join(cmd))
    t0 = time.monotonic()
    proc: subprocess.Popen[str] | None = None
    try:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,  # its own process group: stopped as a whole on abort
        )
        tail = _stream(proc, progress, t0)
        rc = proc.wait()
        if rc != 0:
            raise PbxError(
                f"mmdebstrap failed (exit {rc}) after {time.monotonic() - t0:.1f}s; "
                "last lines:\n" + "\n".join(tail)
            )
        if not is_complete(tmp):
            raise PbxError(f"mmdebstrap finished but {tmp} holds no usr/sbin/asterisk")
        try:
            os.rename(tmp, root)
        except OSError:
            if not is_complete(root):
                raise
            progress(f"another build finished {root} first; keeping that one")
            _remove_tree(tmp)
    except BaseException:
        if proc is not None and proc.poll() is None:
            # as a Ctrl-C would: every mmdebstrap process unmounts what it mounted, then exits
            # (a SIGTERM to the parent alone leaves it waiting for its workers for minutes)
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        _remove_tree(tmp)
        raise
    progress(f"Asterisk root ready in {time.monotonic() - t0:.1f}s")


def ensure_root(root: Path, progress: Callable[[str], None] = print) -> str:
    """Make sure a complete Asterisk root exists at ``root``; return its Asterisk version."""
    root = Path(root)
    if not is_complete(root):
        build_root(root, progress)
    return installed_version(root)


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through build_root's clean-up


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    args = sys.argv[1:] if argv is None else argv
    default = os.environ.get("ASTERISK_ROOT", "build/asterisk-root")
    root = Path(args[0] if args else default)
    try:
        version = ensure_root(root)
    except PbxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: the half-built root was removed", file=sys.stderr)
        return 130
    print(f"Asterisk {version} in {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
