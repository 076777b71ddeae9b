"""Install what ``make run`` / ``make test`` need on a fresh Debian 12, before any venv exists.

Run with the system Python (standard library only), from the Makefile:

    python3 callflow/pbx/bootstrap.py packages run|test   # Debian packages
    python3 callflow/pbx/bootstrap.py venv                # .venv + pip install -e '.[test]'

As root, missing packages are installed with apt-get (``apt-get update`` first only
when apt has no package lists at all, so CI's one update is not repeated); as anyone
else the apt command is printed and the step fails. The venv is reinstalled only when
pyproject.toml changed since the last install (a hash in a stamp file).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VENV = REPO / ".venv"
STAMP = VENV / ".callflow-installed"

# sip-tester = SIPp; espeak-ng + sox make the prompts; mmdebstrap builds the Asterisk root
RUN_PACKAGES = ("sip-tester", "espeak-ng", "sox")
TEST_PACKAGES = (*RUN_PACKAGES, "chromium", "postgresql")


def say(message: str) -> None:
    print(f"[setup] {message}", flush=True)


def asterisk_root() -> Path:
    default = REPO / "build" / "asterisk-root"
    return Path(
        os.environ.get("ASTERISK_ROOT") or os.environ.get("CALLFLOW_ASTERISK_ROOT") or default
    )


def needed_packages(target: str) -> list[str]:
    wanted = list(TEST_PACKAGES if target == "test" else RUN_PACKAGES)
    if not (asterisk_root() / "usr/sbin/asterisk").exists():
        wanted.append("mmdebstrap")
    if not _venv_module_works():
        wanted.append("python3-venv")
    return wanted


def _venv_module_works() -> bool:
    """Debian splits ensurepip out of python3: without python3-venv, ``-m venv`` fails."""
    done = subprocess.run(
        [sys.executable, "-c", "import ensurepip, venv"], capture_output=True, check=False
    )
    return done.returncode == 0


def missing(packages: list[str]) -> list[str]:
    absent = []
    for package in packages:
        done = subprocess.run(
            ["dpkg-query", "-W", "-f=${db:Status-Abbrev}", package],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if not done.stdout.startswith("ii"):
            absent.append(package)
    return absent


def _apt_has_lists() -> bool:
    return any(Path("/var/lib/apt/lists").glob("*_Packages*"))


def ensure_packages(target: str) -> int:
    absent = missing(needed_packages(target))
    if not absent:
        say(f"Debian packages for `make {target}`: all present")
        return 0
    command = ["apt-get", "install", "-y", *absent]
    if os.geteuid() != 0:
        say(f"missing Debian packages: {' '.join(absent)}")
        say(f"run as root: {' '.join(command)}   (then `make {target}` again)")
        return 1
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    t0 = time.monotonic()
    if not _apt_has_lists():
        say("apt has no package lists yet: apt-get update")
        subprocess.run(["apt-get", "update"], check=True, env=env, stdin=subprocess.DEVNULL)
    say(f"installing {' '.join(absent)}")
    subprocess.run(command, check=True, env=env, stdin=subprocess.DEVNULL)
    say(f"Debian packages installed in {time.monotonic() - t0:.0f}s")
    return 0


def _pyproject_hash() -> str:
    return hashlib.sha256((REPO / "pyproject.toml").read_bytes()).hexdigest()


def ensure_venv() -> int:
    t0 = time.monotonic()
    python = VENV / "bin" / "python"
    if not python.exists():
        say(f"creating {VENV}")
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    digest = _pyproject_hash()
    if STAMP.exists() and STAMP.read_text().strip() == digest:
        say(".venv is up to date with pyproject.toml")
        return 0
    say("installing callflow and its test tools into .venv (pip install -e '.[test]')")
    pip = [str(python), "-m", "pip", "--disable-pip-version-check"]
    subprocess.run([*pip, "install", "-e", ".[test]"], check=True, cwd=REPO)
    STAMP.write_text(digest + "\n")
    say(f".venv ready in {time.monotonic() - t0:.0f}s")
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["packages"] and len(argv) == 2 and argv[1] in ("run", "test"):
        return ensure_packages(argv[1])
    if argv == ["venv"]:
        return ensure_venv()
    if argv[:1] == ["missing"] and len(argv) == 2 and argv[1] in ("run", "test"):
        print(" ".join(missing(needed_packages(argv[1]))))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except (subprocess.CalledProcessError, OSError) as exc:
        say(f"failed: {exc}")
        sys.exit(1)
