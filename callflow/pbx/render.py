"""Asterisk's configuration, rendered from the templates in ``asterisk-conf/``.

One code path for ``make run`` and the integration tests: both build a ``PbxConfig``
and call ``render``; only the values differ (ports, secrets, how agents are reached).
Nothing secret is shipped: the AMI secret and softphone passwords come from the
config, which takes them from generated state (``callflow.settings``) or the test
session.

The dialplan keeps every call alive when the engine is away (design.md, "Who routes
calls"; STD-001): a failed FastAGI connection falls back to a plain ``Queue()`` over
all agents.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from callflow.errors import PbxConfigError, SettingsError
from callflow.pbx import cel, midcall_pin
from callflow.pbx.demo_carrier import DEMO_CARRIER_CONTEXT, DemoCarrier
from callflow.settings import REPO_ROOT, FeatureCodes, Settings, persistent_secret
from callflow.trunks import Trunk, outbound_trunk

log = logging.getLogger(__name__)

CONF_DIR = REPO_ROOT / "asterisk-conf"
FALLBACK_QUEUE = "callflow-fallback"
#: Where callers arrive (extensions.conf.j2 [inbound], pjsip.conf.j2's caller endpoints):
#: a call whose first channel started here is an inbound call of ours.
INBOUND_CONTEXT = "inbound"
AGENTS_CONTEXT = "agents"
"""The dialplan context of the agents' softphones: feature codes count only from there."""
AMI_HOST = "127.0.0.1"
"""AMI listens on loopback only, whatever address SIP uses (issue 15, least privilege)."""
AMI_READ = "call,system,dtmf"
AMI_WRITE = "call,system,originate"
"""The AMI classes the engine reads and writes (manager.conf.j2 says which of its events
and actions need each); nothing else."""
RESUME_CONTEXT = "callflow-resume"
"""Where the engine, back after an outage, sends the callers the fallback queue still holds
(``callflow/recovery.py``): into its own flow again, the fallback queue behind it."""
INBOUND_FLOW_CONTEXT = "callflow-inbound"
"""The dialplan context whose ``AGI()`` runs the inbound flow, once ``[inbound]`` has
checked the DID and cleaned the caller's number and name."""
DID_DIGITS = range(2, 33)
"""How many digits a DID may have; any other request URI is answered 404 (issue 15)."""
NUMBER_CHARS = "0-9+"
"""``FILTER()``'s allowed characters for a caller's number: what a number may hold."""
NAME_CHARS = r"-a-zA-Z0-9\x20.'_\x80-\xff"
"""``FILTER()``'s allowed characters for a caller's name: letters, digits, space and
``-.'_``, and UTF-8's non-ASCII bytes (a Chinese name stays; invalid UTF-8 is refused
by the FastAGI environment parser). No control character, quote, backslash, comma,
parenthesis, ``$``, ``{``, ``}`` or ``;``: nothing that means something to AGI, AMI,
the dialplan or a config file."""
_HOLDS_SECRETS = frozenset({"manager.conf", "pjsip.conf"})

_EXT = re.compile(r"[0-9]{2,8}")
_TOKEN = re.compile(r"[A-Za-z0-9_.~+/=-]{8,128}")
_USERNAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,31}")
_SIP_URI = re.compile(r"sip:[A-Za-z0-9_.+-]+@[A-Za-z0-9.-]+(:[0-9]{1,5})?")
_COUNTRY = re.compile(r"[a-z]{2}")
_MOH_CLASS = re.compile(r"[A-Za-z0-9_-]{1,32}")


@dataclass(frozen=True)
class AgentEndpoint:
    """One agent's softphone as Asterisk knows it (endpoint, AOR and auth ``agent<ext>``).

    Either ``static_contact`` (a SIPp UAS on a fixed port in tests; no registration,
    no auth) or ``password`` (a real softphone that REGISTERs with digest auth).
    """

    ext: str
    static_contact: str | None = None
    password: str | None = None
    qualify_frequency: int = 5
    # seconds an OPTIONS may go unanswered before the contact counts as Unreachable
    qualify_timeout: float = 3.0

    @property
    def name(self) -> str:
        return f"agent{self.ext}"

    @property
    def interface(self) -> str:
        return f"PJSIP/{self.name}"


@dataclass(frozen=True)
class AmiLogin:
    """An AMI user and its secret."""

    username: str
    secret: str


@dataclass(frozen=True)
class PbxConfig:
    """Every value the Asterisk configuration depends on; nothing else is read at render time."""

    ami_port: int
    ami_username: str
    ami_secret: str
    sip_port: int
    rtp_start: int
    rtp_end: int
    agi_host: str
    agi_port: int
    bind_host: str = "127.0.0.1"
    country: str = "cn"
    agents: Sequence[AgentEndpoint] = field(default_factory=list)
    customer_contact: str | None = None
    # external callers: requests from these addresses that name no endpoint (STD-001 inbound)
    caller_match: str = "127.0.0.1"
    # ring time per agent in the fallback queue and for agent-to-agent calls (STD-008: 3 rings)
    agent_ring_seconds: int = 15
    # a second AMI user with every class, for a test harness that watches everything
    # (tests/integration/amitap.py); `make run` never sets it
    observer: AmiLogin | None = None
    # carrier trunks (callflow.trunks, CALLFLOW_TRUNKS_FILE): pjsip sections and dialplan
    trunks: Sequence[Trunk] = ()
    # no outbound trunk configured -> the outbound route dials the demo carrier
    # (callflow/pbx/demo_carrier.py); None = off. Never together with a real trunk.
    demo_carrier: DemoCarrier | None = None
    # the attended-transfer codes of features.conf (settings.FeatureCodes, CALLFLOW_*_CODE)
    feature_codes: FeatureCodes = field(default_factory=FeatureCodes)
    # the mid-call PIN step (callflow/pbx/midcall_pin.py): the feature code the desktop
    # presses on the agent's leg, and the hold music the agent hears meanwhile
    pin_feature_code: str = midcall_pin.DEFAULT_FEATURE_CODE
    pin_moh_class: str = "default"

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        agents: Sequence[AgentEndpoint],
        customer_contact: str | None = None,
        demo_carrier: DemoCarrier | None = None,
    ) -> PbxConfig:
        """The deployment's config (``make run``): ports, bind host, AMI login from Settings."""
        return cls(
            ami_port=settings.ports.ami,
            ami_username=settings.ami_username,
            ami_secret=settings.ami_secret,
            sip_port=settings.ports.sip,
            rtp_start=settings.ports.rtp_start,
            rtp_end=settings.ports.rtp_end,
            agi_host=settings.bind_host,
            agi_port=settings.ports.agi,
            bind_host=settings.bind_host,
            country=settings.country,
            agents=list(agents),
            customer_contact=customer_contact,
            caller_match=settings.bind_host,
            trunks=settings.trunks,
            demo_carrier=demo_carrier,
            feature_codes=settings.feature_codes,
            pin_feature_code=settings.pin_feature_code,
        )

    def validate(self) -> None:
        """Refuse values that would break a config file or open the PBX to the network."""
        for name in ("ami_port", "sip_port", "rtp_start", "rtp_end", "agi_port"):
            value = getattr(self, name)
            if not 1 <= value <= 65535:
                raise PbxConfigError(f"{name} must be a port number 1-65535, got {value}")
        if self.rtp_start >= self.rtp_end:
            raise PbxConfigError(f"rtp_start {self.rtp_start} must be below rtp_end {self.rtp_end}")
        for login in (AmiLogin(self.ami_username, self.ami_secret), self.observer):
            if login is not None:
                _check_login(login)
        if self.observer is not None and self.observer.username == self.ami_username:
            raise PbxConfigError("the observer's AMI username must differ from the engine's")
        for name in ("bind_host", "agi_host", "caller_match"):
            try:
                ipaddress.IPv4Address(getattr(self, name))
            except ValueError:
                raise PbxConfigError(
                    f"{name} must be an IPv4 address, got {getattr(self, name)!r}"
                ) from None
        if not _COUNTRY.fullmatch(self.country):
            raise PbxConfigError(
                f"country must be a two-letter code like 'cn', got {self.country!r}"
            )
        try:
            self.feature_codes.validate()
        except SettingsError as exc:
            raise PbxConfigError(str(exc)) from None
        if not midcall_pin.valid_feature_code(self.pin_feature_code):
            raise PbxConfigError("pin_feature_code must be 1-4 of 0-9, * and #, got "
                                 f"{self.pin_feature_code[:16]!r}")
        if not _MOH_CLASS.fullmatch(self.pin_moh_class):
            raise PbxConfigError(f"pin_moh_class must be a word, got {self.pin_moh_class[:32]!r}")
        fc = self.feature_codes
        for code in (fc.atxfer, fc.abort, fc.complete, fc.threeway, fc.swap):
            if code.startswith(self.pin_feature_code) or self.pin_feature_code.startswith(code):
                # Asterisk matches the agent leg's keys digit by digit across all features
                raise PbxConfigError(f"the PIN feature code {self.pin_feature_code!r} and the "
                                     f"transfer code {code!r} must differ, neither a prefix "
                                     "of the other")
        if self.agent_ring_seconds < 1:
            raise PbxConfigError("agent_ring_seconds must be at least 1")
        seen: set[str] = set()
        for agent in self.agents:
            if not _EXT.fullmatch(agent.ext):
                raise PbxConfigError(f"agent extension {agent.ext!r} must be 2-8 digits")
            if agent.ext in seen:
                raise PbxConfigError(f"agent extension {agent.ext} is listed twice")
            seen.add(agent.ext)
            if (agent.static_contact is None) == (agent.password is None):
                raise PbxConfigError(
                    f"agent {agent.ext}: give exactly one of static_contact (fixed address) "
                    "or password (registering softphone)"
                )
            if agent.static_contact is not None and not _SIP_URI.fullmatch(agent.static_contact):
                raise PbxConfigError(
                    f"agent {agent.ext}: bad static_contact {agent.static_contact!r}"
                )
            if agent.password is not None and not _TOKEN.fullmatch(agent.password):
                raise PbxConfigError(
                    f"agent {agent.ext}: password must be 8-128 characters of [A-Za-z0-9_.~+/=-]"
                )
            if not 0 <= agent.qualify_frequency <= 3600:
                raise PbxConfigError(f"agent {agent.ext}: qualify_frequency must be 0-3600 s")
            if not 0.1 <= agent.qualify_timeout <= 60:
                raise PbxConfigError(f"agent {agent.ext}: qualify_timeout must be 0.1-60 s")
        if self.customer_contact is not None and not _SIP_URI.fullmatch(self.customer_contact):
            raise PbxConfigError(f"bad customer_contact {self.customer_contact!r}")
        names = [t.name for t in self.trunks]
        if len(set(names)) != len(names):
            raise PbxConfigError(f"trunk names must differ, got {names}")
        for trunk in self.trunks:
            if trunk.dids and any(len(d) not in DID_DIGITS for d in trunk.dids):
                raise PbxConfigError(f"trunk {trunk.name}: a DID has {DID_DIGITS.start}-"
                                     f"{DID_DIGITS.stop - 1} digits")
        if self.demo_carrier is not None:
            if self.customer_contact is not None or outbound_trunk(tuple(self.trunks)):
                raise PbxConfigError("the demo carrier is for a deployment with no outbound "
                                     "trunk: turn it off (CALLFLOW_DEMO_CARRIER=off) or "
                                     "remove the trunk")
            self.demo_carrier.validate()


def outbound_target(cfg: PbxConfig) -> str | None:
    """The one place the way out of ``[callflow-outbound]`` is decided: the ``Dial()``
    target of a customer's number (``${EXTEN}``), None when nothing carries outbound calls
    (then the dialplan says "number not in service").

    A trunk with ``outbound = true`` wins; else the test harness's fixed ``customer``
    endpoint; else the demo carrier when it is on (a Local channel into its context, so
    the dialer sees its rings, busy and causes as a trunk's); else none."""
    trunk = outbound_trunk(tuple(cfg.trunks))
    if trunk is not None:
        return f"PJSIP/${{EXTEN}}@{trunk.endpoint}"
    if cfg.customer_contact:
        return "PJSIP/${EXTEN}@customer"
    if cfg.demo_carrier is not None:
        return f"Local/${{EXTEN}}@{DEMO_CARRIER_CONTEXT}/n"
    return None


def _check_login(login: AmiLogin) -> None:
    if not _USERNAME.fullmatch(login.username):
        raise PbxConfigError(f"ami_username {login.username!r}: letters, digits, _ or -")
    if not _TOKEN.fullmatch(login.secret or ""):
        raise PbxConfigError(
            "ami_secret must be 8-128 characters of [A-Za-z0-9_.~+/=-] (it is generated; "
            "never left empty)"
        )


def softphone_agents(
    exts: Iterable[str], state_dir: Path, qualify_frequency: int = 30
) -> list[AgentEndpoint]:
    """Registering softphones for ``make run``: one generated password per agent, kept 0600."""
    return [
        AgentEndpoint(
            ext=ext,
            password=persistent_secret(state_dir, f"sip_agent{ext}"),
            qualify_frequency=qualify_frequency,
        )
        for ext in exts
    ]


def _stock_indications(stock_etc_dir: Path, country: str) -> str:
    """The root's own indications.conf with ``country=`` set: the ringback cadence (STD-008).

    Policy converts rings to seconds with the same country's cadence, so this must
    name the country Settings names.
    """
    path = stock_etc_dir / "indications.conf"
    try:
        text = path.read_text()
    except OSError as exc:
        raise PbxConfigError(f"cannot read the stock {path}: {exc}") from exc
    if not re.search(rf"^\[{re.escape(country)}\]", text, re.MULTILINE):
        raise PbxConfigError(f"country {country!r} has no section in {path}")
    text, n = re.subn(r"^country\s*=.*$", f"country={country}", text, count=1, flags=re.MULTILINE)
    if n != 1:
        raise PbxConfigError(f"no country= line in {path}")
    return text


def render(conf_dir: Path, out_etc_dir: Path, cfg: PbxConfig, stock_etc_dir: Path) -> list[Path]:
    """Write every ``*.conf.j2`` of ``conf_dir`` and indications.conf into ``out_etc_dir``.

    ``stock_etc_dir`` is the root's ``etc/asterisk`` (for the stock indications.conf).
    Returns the files written.
    """
    cfg.validate()
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(conf_dir)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    out_etc_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    templates = sorted(conf_dir.glob("*.conf.j2"))
    if not templates:
        raise PbxConfigError(f"no *.conf.j2 templates in {conf_dir}")
    context = {"cfg": cfg, "fallback_queue": FALLBACK_QUEUE, "cel": cel.template_context(),
               "agents_context": AGENTS_CONTEXT,
               "inbound_flow_context": INBOUND_FLOW_CONTEXT, "did_digits": DID_DIGITS,
               "resume_context": RESUME_CONTEXT, "demo_context": DEMO_CARRIER_CONTEXT,
               "ami_host": AMI_HOST, "ami_read": AMI_READ, "ami_write": AMI_WRITE,
               "number_chars": NUMBER_CHARS, "name_chars": NAME_CHARS,
               "outbound_target": outbound_target(cfg),
               "agent_leg_context": midcall_pin.AGENT_LEG_CONTEXT,
               "pin_feature": midcall_pin.PIN_FEATURE, "pin_agi_script": midcall_pin.PIN_AGI_SCRIPT}
    for template in templates:
        target = out_etc_dir / template.name.removesuffix(".j2")
        try:
            text = env.get_template(template.name).render(context)
        except jinja2.TemplateError as exc:
            raise PbxConfigError(f"{template}: {exc}") from exc
        target.write_text(text)
        written.append(target)
    indications = out_etc_dir / "indications.conf"
    indications.write_text(_stock_indications(stock_etc_dir, cfg.country))
    written.append(indications)
    for path in written:
        if path.name in _HOLDS_SECRETS:
            path.chmod(0o600)
    log.info("rendered %d Asterisk config files into %s", len(written), out_etc_dir)
    return written
