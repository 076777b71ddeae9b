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
import re
import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path

from callflow.errors import SettingsError
from callflow.gc_tuning import GcSetup
from callflow.trunks import Trunk, load_trunks

REPO_ROOT = Path(__file__).resolve().parent.parent
PORT_BLOCK = 3000  # the ports one instance takes from CALLFLOW_PORT_BASE
DEFAULT_ROOT = REPO_ROOT / "build" / "asterisk-root"


def _env(name: str, default: str) -> str:
    return os.environ.get(f"CALLFLOW_{name}", default)


def _env_int(name: str, default: int) -> int:
    raw = _env(name, str(default)).strip()
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"CALLFLOW_{name} must be an integer, got {raw!r}") from None


def _env_port(name: str, default: int) -> int:
    port = _env_int(name, default)
    if not 1 <= port <= 65535:
        raise SettingsError(f"CALLFLOW_{name} must be a port number 1..65535, got {port}")
    return port


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
        if not 1 <= base <= 65535 - PORT_BLOCK + 1:
            raise SettingsError(f"CALLFLOW_PORT_BASE must be 1..{65535 - PORT_BLOCK + 1} "
                                f"(it uses {PORT_BLOCK} ports from there), got {base}")
        return cls(ami=base + 38, sip=base + 60, agi=base + 573, api=base + 800,
                   rtp_start=base + 2000, rtp_end=base + 2999)


#: What a feature code may hold: DTMF digits, ``*`` and ``#`` (features.conf takes them
#: as typed; anything else could never be pressed, or would break the file).
FEATURE_CODE_CHARS = frozenset("0123456789*#")
FEATURE_CODE_MAX = 8


@dataclass(frozen=True)
class FeatureCodes:
    """The attended-transfer codes Asterisk listens for on an agent's leg (features.conf):
    rendered into the configuration and used by the engine itself, one copy. AMI
    ``Atxfer`` types ``atxfer`` for the desktop's warm transfer; the engine types
    ``threeway`` (AMI ``PlayDTMF`` with ``Receive``) to make the consultation a three-way
    conference; ``abort`` and ``complete`` are what a softphone user presses.
    ``CALLFLOW_ATXFER_CODE``, ``_ATXFER_ABORT_CODE``, ``_ATXFER_COMPLETE_CODE``,
    ``_ATXFER_THREEWAY_CODE``, ``_ATXFER_SWAP_CODE``."""

    atxfer: str = "*7"
    abort: str = "*1"
    complete: str = "*2"
    threeway: str = "*3"
    swap: str = "*4"

    def validate(self) -> None:
        """Each code is 1-``FEATURE_CODE_MAX`` of ``0-9*#``, and no two are equal or one a
        prefix of another (Asterisk matches digit by digit: the shorter would always win)."""
        codes = {"ATXFER": self.atxfer, "ATXFER_ABORT": self.abort,
                 "ATXFER_COMPLETE": self.complete, "ATXFER_THREEWAY": self.threeway,
                 "ATXFER_SWAP": self.swap}
        for name, code in codes.items():
            if not 1 <= len(code) <= FEATURE_CODE_MAX or not set(code) <= FEATURE_CODE_CHARS:
                raise SettingsError(f"CALLFLOW_{name}_CODE must be 1-{FEATURE_CODE_MAX} of "
                                    f"the DTMF keys 0-9 * #, got {code!r}")
        for name, code in codes.items():
            for other, other_code in codes.items():
                if name != other and other_code.startswith(code):
                    raise SettingsError(f"CALLFLOW_{name}_CODE ({code!r}) and CALLFLOW_{other}"
                                        f"_CODE ({other_code!r}) must differ, neither a "
                                        "prefix of the other")


def load_feature_codes() -> FeatureCodes:
    """The transfer feature codes from the environment, checked (one SettingsError)."""
    default = FeatureCodes()
    codes = FeatureCodes(
        atxfer=_env("ATXFER_CODE", default.atxfer).strip(),
        abort=_env("ATXFER_ABORT_CODE", default.abort).strip(),
        complete=_env("ATXFER_COMPLETE_CODE", default.complete).strip(),
        threeway=_env("ATXFER_THREEWAY_CODE", default.threeway).strip(),
        swap=_env("ATXFER_SWAP_CODE", default.swap).strip())
    codes.validate()
    return codes


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
    #: Asterisk's work dir when it is not ``state_dir/pbx`` (tests run one Asterisk per
    #: session beside many engines' state dirs)
    pbx_workdir: Path | None = None
    #: carrier trunks (``CALLFLOW_TRUNKS_FILE``, docs/trunks.md); none: no way out
    trunks: tuple[Trunk, ...] = ()
    #: Rows one CSV upload (campaign numbers, do-not-call list) may hold; larger files
    #: are refused whole with one error (CALLFLOW_CSV_MAX_ROWS).
    csv_max_rows: int = 50_000
    #: the garbage collector's set-up after start-up (callflow/gc_tuning.py):
    #: CALLFLOW_GC_FREEZE (1/0) and CALLFLOW_GC_GEN0 (0: Python's own threshold)
    gc: GcSetup = field(default_factory=GcSetup)
    #: the pages' language for people who chose none (CALLFLOW_UI_LANGUAGE, one of
    #: UI_LANGUAGES); None: the Policy's greetings.language (api/language.py)
    ui_language: str | None = None
    #: the attended-transfer feature codes (features.conf and the engine's three-way)
    feature_codes: FeatureCodes = field(default_factory=FeatureCodes)
    #: the feature code the desktop presses on the agent's leg to take the caller to the
    #: PIN step mid-call (CALLFLOW_PIN_FEATURE_CODE; callflow/pbx/midcall_pin.py)
    pin_feature_code: str = "*8"

    @property
    def pbx_dir(self) -> Path:
        """Asterisk's writable tree for this instance (etc, spool, logs, ctl socket)."""
        return self.pbx_workdir if self.pbx_workdir is not None else self.state_dir / "pbx"

    def with_ports(self, ports: Ports) -> Settings:
        return replace(self, ports=ports)


def _secret(name: str, state_dir: Path) -> str:
    return os.environ.get(f"CALLFLOW_{name}") or persistent_secret(state_dir, name.lower())


def load_settings() -> Settings:
    """The deployment from the environment, checked: a bad value is one SettingsError
    line naming its variable, before anything is started."""
    state_dir = Path(_env("STATE_DIR", str(REPO_ROOT / ".run"))).resolve()
    try:
        private_dir(state_dir)
    except OSError as exc:
        raise SettingsError(f"cannot create the state directory {state_dir} "
                            f"(CALLFLOW_STATE_DIR): {exc.strerror or exc}") from None
    base = os.environ.get("CALLFLOW_PORT_BASE")
    ports = Ports.from_base(_env_int("PORT_BASE", 0)) if base else Ports(
        ami=_env_port("AMI_PORT", 5038), sip=_env_port("SIP_PORT", 5060),
        agi=_env_port("AGI_PORT", 4573), api=_env_port("API_PORT", 8080))
    used = [p for p in (ports.ami, ports.sip, ports.agi, ports.api)]
    if len(set(used)) != len(used):
        raise SettingsError(f"the AMI, SIP, AGI and API ports must differ, got {used}")
    ports = _rtp_range(ports)
    policy = _env("POLICY_FILE", "")
    trunks_file = _env("TRUNKS_FILE", "")
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
        trunks=load_trunks(Path(trunks_file) if trunks_file else None),
        csv_max_rows=_csv_max_rows(),
        gc=_gc_setup(),
        ui_language=_ui_language(),
        feature_codes=load_feature_codes(),
        pin_feature_code=_pin_feature_code(),
    )


def _rtp_range(ports: Ports) -> Ports:
    """``CALLFLOW_RTP_START``/``_END`` over the range that follows the port base: Asterisk's
    media ports (two per call), checked to be a range that misses the signalling ports."""
    start = _env_port("RTP_START", ports.rtp_start)
    end = _env_port("RTP_END", ports.rtp_end)
    if end - start < 1:
        raise SettingsError(f"CALLFLOW_RTP_END ({end}) must be above CALLFLOW_RTP_START "
                            f"({start})")
    for name, port in (("AMI", ports.ami), ("SIP", ports.sip), ("AGI", ports.agi),
                       ("API", ports.api)):
        if start <= port <= end:
            raise SettingsError(f"the RTP range {start}-{end} (CALLFLOW_RTP_START/_END) holds "
                                f"the {name} port {port}")
    return replace(ports, rtp_start=start, rtp_end=end)


#: The languages the pages come in: one language pack each (api/i18n/<language>.json).
UI_LANGUAGES: tuple[str, ...] = ("zh-CN", "en")


def _pin_feature_code() -> str:
    code = _env("PIN_FEATURE_CODE", "*8")
    if not re.fullmatch(r"[0-9*#]{1,4}", code):
        raise SettingsError(f"CALLFLOW_PIN_FEATURE_CODE must be 1-4 of 0-9, * and #, "
                            f"got {code[:16]!r}")
    return code


def _ui_language() -> str | None:
    raw = _env("UI_LANGUAGE", "").strip()
    if raw and raw not in UI_LANGUAGES:
        raise SettingsError(f"CALLFLOW_UI_LANGUAGE must be one of {', '.join(UI_LANGUAGES)}, "
                            f"got {raw!r}")
    return raw or None


def _csv_max_rows() -> int:
    rows = _env_int("CSV_MAX_ROWS", 50_000)
    if rows < 1:
        raise SettingsError(f"CALLFLOW_CSV_MAX_ROWS must be at least 1, got {rows}")
    return rows


def _gc_setup() -> GcSetup:
    freeze = _env("GC_FREEZE", "1").strip()
    if freeze not in ("0", "1"):
        raise SettingsError(f"CALLFLOW_GC_FREEZE must be 1 or 0, got {freeze!r}")
    gen0 = _env_int("GC_GEN0", 0)
    if gen0 < 0:
        raise SettingsError(f"CALLFLOW_GC_GEN0 must be 0 (Python's threshold) or more, got {gen0}")
    return GcSetup(freeze=freeze == "1", gen0=gen0)
