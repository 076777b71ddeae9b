"""``callflow demo`` says it is running with a pid file in the state directory, so the
engine (a separate ``callflow run`` process) marks every page as demo while it runs."""

from __future__ import annotations

import os
from pathlib import Path

PID_FILE = "demo.pid"


def pid_path(state_dir: Path) -> Path:
    return state_dir / PID_FILE


def write_pid(state_dir: Path) -> Path:
    path = pid_path(state_dir)
    path.write_text(f"{os.getpid()}\n")
    path.chmod(0o600)
    return path


def remove_pid(state_dir: Path) -> None:
    path = pid_path(state_dir)
    try:
        if path.read_text().strip() == str(os.getpid()):
            path.unlink()
    except OSError:
        pass


def demo_running(state_dir: Path) -> bool:
    """A pid file naming a live process (a stale file, left by a killed demo, is not)."""
    try:
        pid = int(pid_path(state_dir).read_text().strip())
    except (OSError, ValueError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
