"""Where callflow runs: ports, paths, credentials, database.

These are deployment facts, not service standards (those live in
``callflow.engine.policy``). Every value comes from a ``CALLFLOW_*`` environment
variable with an embedded default, so ``make run`` works on a fresh machine with
no configuration at all. Secrets are never defaulted: the AMI secret and the API
token are generated on first run and kept in the state directory (mode 0600).

The state directory holds the database, secrets, the roster's SIP passwords and the
recordings: it is its owner's alone (0700, tightened if an older run left it open), and
so is every directory callflow makes in it (``private_dir``; issue 15).
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ROOT = REPO_ROOT / "build" / "asterisk-root"


def _env(name: str, default: str) -> str:
    return os.environ.get(f"CALLFLOW_{name}", default)


def _env_int(name: str, default: int) -> int:
    raw = _env(name, str(default))
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"CALLFLOW_{name} must be an integer, got {raw!r}") from None


PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """``path`` as a directory only its owner may enter: created 0700 with any missing
    parents (``mkdir``'s mode is cut by the umask and skips parents, so each is set), and
    tightened to 0700 if it was there already."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    path.mkdir(parents=True, exist_ok=True)
    for created in (*missing, path):
        created.chmod(PRIVATE_DIR_MODE)
    return path


def persistent_secret(state_dir: Path, name: str) -> str:
    """Read a generated secret from the state dir, creating it on first use (0600)."""
    path = state_dir / "secrets" / name
    if path.exists():
        return path.read_text().strip()
    private_dir(path.parent)
    value = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    return value


@dataclass(frozen=True)
class Ports:
    """TCP/UDP ports on 127.0.0.1 (or the bind host) that one callflow + Asterisk use."""

    ami: int = 5038
    sip: int = 5060
    agi: int = 4573
    api: int = 8080
    rtp_start: int = 10000
    rtp_end: int = 10999

    @classmethod
    def from_base(cls, base: int) -> Ports:
        """A whole port set inside [base, base+3000), so test instances never collide."""
        return cls(ami=base + 38, sip=base + 60, agi=base + 573, api=base + 800,
                   rtp_start=base + 2000, rtp_end=base + 2999)


@dataclass(frozen=True)
class Settings:
    state_dir: Path
    database_url: str
    asterisk_root: Path
    policy_file: Path | None
    ports: Ports = field(default_factory=Ports)
    bind_host: str = "127.0.0.1"
    ami_username: str = "callflow"
    ami_secret: str = ""
    api_token: str = ""
    country: str = "cn"

    @property
    def pbx_dir(self) -> Path:
        """Asterisk's writable tree for this instance (etc, spool, logs, ctl socket)."""
        return self.state_dir / "pbx"

    def with_ports(self, ports: Ports) -> Settings:
        return replace(self, ports=ports)


def _secret(name: str, state_dir: Path) -> str:
    return os.environ.get(f"CALLFLOW_{name}") or persistent_secret(state_dir, name.lower())


def load_settings() -> Settings:
    state_dir = private_dir(Path(_env("STATE_DIR", str(REPO_ROOT / ".run"))).resolve())
    base = os.environ.get("CALLFLOW_PORT_BASE")
    ports = Ports.from_base(int(base)) if base else Ports(
        ami=_env_int("AMI_PORT", 5038), sip=_env_int("SIP_PORT", 5060),
        agi=_env_int("AGI_PORT", 4573), api=_env_int("API_PORT", 8080))
    policy = _env("POLICY_FILE", "")
    return Settings(
        state_dir=state_dir,
        database_url=_env("DATABASE_URL", f"sqlite:///{state_dir / 'callflow.db'}"),
        asterisk_root=Path(_env("ASTERISK_ROOT", str(DEFAULT_ROOT))).resolve(),
        policy_file=Path(policy) if policy else None,
        ports=ports,
        bind_host=_env("BIND_HOST", "127.0.0.1"),
        ami_username=_env("AMI_USERNAME", "callflow"),
        ami_secret=_secret("AMI_SECRET", state_dir),
        api_token=_secret("API_TOKEN", state_dir),
        country=_env("COUNTRY", "cn"),
    )
