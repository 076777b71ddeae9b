"""Carrier trunks: the file that says how calls reach the public network (issue 16).

A deployment names one TOML file with ``CALLFLOW_TRUNKS_FILE`` (none: no trunk, and
outbound calls have no way out). Each ``[trunks.<name>]`` table is one carrier; the
keys, their defaults and a complete example are in ``docs/trunks.md``. This module reads
and checks the file: every bad value is one ``SettingsError`` line naming the trunk and
the key, before anything starts. It renders nothing (``callflow.pbx.render`` does) and
decides nothing about calls (``callflow.engine``): a ``Trunk`` hands the core its
``OutboundRoute`` and the inbound flow its DID map.

Secrets: a trunk's digest password is never in this file. ``secret_file`` names a file
that must exist, belong to whoever runs callflow and be readable by them alone (mode
0600 or stricter): a password in git or in a world-readable file is refused.
"""

from __future__ import annotations

import ipaddress
import re
import stat
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from callflow.engine import numbers
from callflow.engine.outbound import OutboundRoute
from callflow.engine.policy import Policy
from callflow.errors import SettingsError

TrunkAuth = Literal["register", "ip"]
Transport = Literal["udp", "tcp"]
CODECS = ("alaw", "ulaw", "g722", "g729", "opus", "gsm")
TASK_KINDS = ("callback", "dropped_call", "follow_up", "manual", "named_agent")

_NAME = re.compile(r"[a-z][a-z0-9_-]{0,23}")
_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")
_USER = re.compile(r"[A-Za-z0-9_.+-]{1,64}")
_PASSWORD = re.compile(r"[!-~]{1,128}")  # printable ASCII, no space: a config-file value
_NUMBER = re.compile(r"[0-9]{2,32}")
_QUEUE = re.compile(r"[a-z][a-z0-9_-]*")
_KEYS = frozenset({
    "host", "port", "transport", "auth", "username", "secret_file", "from_domain", "match",
    "codecs", "country", "number_format", "outbound", "presented_number",
    "presented_numbers", "dids", "registration_expiry_s", "registration_retry_s",
    "qualify_frequency_s",
})


@dataclass(frozen=True)
class Trunk:
    """One carrier trunk, checked (see ``docs/trunks.md`` for every key)."""

    name: str
    host: str
    port: int = 5060
    transport: Transport = "udp"
    auth: TrunkAuth = "register"
    username: str = ""
    password: str = field(default="", repr=False)
    from_domain: str = ""
    match: tuple[str, ...] = ()
    codecs: tuple[str, ...] = ("alaw", "ulaw")
    country: str = numbers.DEFAULT_COUNTRY
    number_format: numbers.NumberFormat = "national"
    outbound: bool = False
    presented_number: str = ""
    presented_numbers: Mapping[str, str] = field(default_factory=dict)
    dids: Mapping[str, str] = field(default_factory=dict)  # DID -> queue
    registration_expiry_s: int = 3600
    registration_retry_s: int = 60
    qualify_frequency_s: int = 30

    @property
    def endpoint(self) -> str:
        """The PJSIP endpoint, aor, auth, registration and identify section name."""
        return f"trunk-{self.name}"

    @property
    def context(self) -> str:
        """The dialplan context the carrier's calls arrive in (its DIDs only)."""
        return f"trunk-{self.name}-in"

    @property
    def server_uri(self) -> str:
        return f"sip:{self.host}:{self.port}"

    @property
    def client_uri(self) -> str:
        return f"sip:{self.username}@{self.from_domain or self.host}"

    @property
    def matches(self) -> tuple[str, ...]:
        """Where the carrier's requests come from (identify): ``match``, else its host."""
        return self.match or (f"{self.host}:{self.port}",)

    def route(self) -> OutboundRoute:
        """What the pure core needs of this trunk to dial a customer through it."""
        return OutboundRoute(country=self.country, number_format=self.number_format,
                             presented_number=self.presented_number,
                             presented_numbers=dict(self.presented_numbers))


def _fail(where: str, key: str, what: str) -> SettingsError:
    return SettingsError(f"CALLFLOW_TRUNKS_FILE {where}: {key} {what}")


def _int(where: str, data: Mapping[str, Any], key: str, default: int, low: int,
         high: int) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _fail(where, key, f"must be an integer {low}..{high}, got {value!r}")
    return value


def _choice(where: str, data: Mapping[str, Any], key: str, choices: tuple[str, ...],
            default: str) -> str:
    value = data.get(key, default)
    if value not in choices:
        raise _fail(where, key, f"must be one of {', '.join(choices)}, got {value!r}")
    return str(value)


def read_secret(where: str, path_value: object) -> str:
    """The password in ``path_value``: the file must exist, be a regular file of ours and
    readable by its owner only (0600 or stricter)."""
    if not isinstance(path_value, str) or not path_value:
        raise _fail(where, "secret_file", "must name the file holding the password "
                                          "(never the password itself)")
    path = Path(path_value)
    try:
        info = path.stat()
    except OSError as exc:
        raise _fail(where, "secret_file", f"{path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise _fail(where, "secret_file", f"{path} is not a regular file")
    if info.st_mode & 0o077:
        raise _fail(where, "secret_file", f"{path} has mode {stat.S_IMODE(info.st_mode):04o}: "
                                          "it must be readable by its owner only "
                                          f"(chmod 600 {path})")
    try:
        password = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(where, "secret_file", f"{path} cannot be read: {exc}") from None
    if not _PASSWORD.fullmatch(password):
        raise _fail(where, "secret_file", f"{path} must hold one password of 1-128 printable "
                                          "characters without spaces")
    return password


def _numbers_map(where: str, data: Mapping[str, Any], key: str, keys: re.Pattern[str] | None,
                 values: re.Pattern[str], what: str) -> dict[str, str]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise _fail(where, key, f"must be a table, got {value!r}")
    out: dict[str, str] = {}
    for k, v in value.items():
        if keys is not None and not keys.fullmatch(k):
            raise _fail(where, f"{key}.{k}", "is not a DID (2-32 digits)")
        if keys is None and k not in TASK_KINDS:
            raise _fail(where, f"{key}.{k}", f"is not a task kind ({', '.join(TASK_KINDS)})")
        if not isinstance(v, str) or not values.fullmatch(v):
            raise _fail(where, f"{key}.{k}", f"must be {what}, got {v!r}")
        out[k] = v
    return out


def parse_trunk(name: str, data: object) -> Trunk:
    """One ``[trunks.<name>]`` table, checked; ``SettingsError`` on the first bad value."""
    where = f"[trunks.{name}]"
    if not _NAME.fullmatch(name):
        raise SettingsError(f"CALLFLOW_TRUNKS_FILE {where}: a trunk name is 1-24 of a-z, "
                            "0-9, _ and -, starting with a letter")
    if not isinstance(data, dict):
        raise SettingsError(f"CALLFLOW_TRUNKS_FILE {where} must be a table")
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise _fail(where, unknown[0], "is not a trunk key (see docs/trunks.md)")
    host = data.get("host")
    if not isinstance(host, str) or not _HOST.fullmatch(host):
        raise _fail(where, "host", f"must be a host name or IPv4 address, got {host!r}")
    auth = _choice(where, data, "auth", ("register", "ip"), "register")
    username = data.get("username", "")
    if not isinstance(username, str) or (username and not _USER.fullmatch(username)):
        raise _fail(where, "username", f"must be 1-64 of A-Za-z0-9_.+-, got {username!r}")
    password = ""
    if auth == "register":
        if not username:
            raise _fail(where, "username", "is required when auth = \"register\"")
        password = read_secret(where, data.get("secret_file"))
    elif "secret_file" in data or username:
        if not username:
            raise _fail(where, "username", "is required with a secret_file")
        password = read_secret(where, data.get("secret_file"))
    match = data.get("match", [])
    if not isinstance(match, list):
        raise _fail(where, "match", f"must be a list of addresses, got {match!r}")
    for item in match:
        try:
            text = str(item)
            addr = text.rsplit(":", 1)[0] if text.count(":") == 1 else text
            ipaddress.ip_network(addr, strict=False)
        except ValueError:
            raise _fail(where, "match", f"{item!r} is not an address, network or "
                                        "address:port") from None
    codecs = data.get("codecs", ["alaw", "ulaw"])
    if not isinstance(codecs, list) or not codecs or any(c not in CODECS for c in codecs):
        raise _fail(where, "codecs", f"must be a non-empty list of {', '.join(CODECS)}, "
                                     f"got {codecs!r}")
    country = data.get("country", numbers.DEFAULT_COUNTRY)
    if country not in numbers.PLANS:
        raise _fail(where, "country", f"must be one of {', '.join(sorted(numbers.PLANS))}, "
                                      f"got {country!r}")
    outbound = data.get("outbound", False)
    if not isinstance(outbound, bool):
        raise _fail(where, "outbound", f"must be true or false, got {outbound!r}")
    presented = data.get("presented_number", "")
    if not isinstance(presented, str) or (presented and not _NUMBER.fullmatch(presented)):
        raise _fail(where, "presented_number", f"must be 2-32 digits, got {presented!r}")
    from_domain = data.get("from_domain", "")
    if not isinstance(from_domain, str) or (from_domain and not _HOST.fullmatch(from_domain)):
        raise _fail(where, "from_domain", f"must be a host name, got {from_domain!r}")
    return Trunk(
        name=name, host=host, port=_int(where, data, "port", 5060, 1, 65535),
        transport=_choice(where, data, "transport", ("udp", "tcp"), "udp"),  # type: ignore[arg-type]
        auth=auth,  # type: ignore[arg-type]
        username=username, password=password, from_domain=from_domain,
        match=tuple(str(m) for m in match), codecs=tuple(codecs), country=country,
        number_format=_choice(where, data, "number_format", numbers.NUMBER_FORMATS,  # type: ignore[arg-type]
                              "national"),
        outbound=outbound, presented_number=presented,
        presented_numbers=_numbers_map(where, data, "presented_numbers", None, _NUMBER,
                                       "2-32 digits"),
        dids=_numbers_map(where, data, "dids", _NUMBER, _QUEUE, "a queue name"),
        registration_expiry_s=_int(where, data, "registration_expiry_s", 3600, 60, 86400),
        registration_retry_s=_int(where, data, "registration_retry_s", 60, 1, 3600),
        qualify_frequency_s=_int(where, data, "qualify_frequency_s", 30, 0, 3600),
    )


def parse_trunks(data: Mapping[str, Any]) -> tuple[Trunk, ...]:
    """Every trunk of a parsed file, checked together: one outbound trunk at most, a DID
    on one trunk only."""
    unknown = sorted(set(data) - {"trunks"})
    if unknown:
        raise SettingsError(f"CALLFLOW_TRUNKS_FILE: unknown table [{unknown[0]}] "
                            "(trunks are [trunks.<name>])")
    tables = data.get("trunks", {})
    if not isinstance(tables, dict):
        raise SettingsError("CALLFLOW_TRUNKS_FILE: trunks must be tables [trunks.<name>]")
    trunks = tuple(parse_trunk(name, table) for name, table in tables.items())
    outbound = [t.name for t in trunks if t.outbound]
    if len(outbound) > 1:
        raise SettingsError(f"CALLFLOW_TRUNKS_FILE: only one trunk may carry outbound calls, "
                            f"got {', '.join(outbound)}")
    seen: dict[str, str] = {}
    for trunk in trunks:
        for did in trunk.dids:
            if did in seen:
                raise SettingsError(f"CALLFLOW_TRUNKS_FILE: DID {did} is on both "
                                    f"[trunks.{seen[did]}] and [trunks.{trunk.name}]")
            seen[did] = trunk.name
    return trunks


def load_trunks(path: Path | None) -> tuple[Trunk, ...]:
    """The trunks of ``path`` (None: no trunk file, no trunk)."""
    if path is None:
        return ()
    try:
        text = path.read_text()
    except OSError as exc:
        raise SettingsError(f"CALLFLOW_TRUNKS_FILE {path}: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"CALLFLOW_TRUNKS_FILE {path}: not valid TOML: {exc}") from None
    return parse_trunks(data)


def with_trunk_dids(policy: Policy, trunks: tuple[Trunk, ...]) -> Policy:
    """``policy`` whose ``routing.did_queues`` also routes every trunk's DIDs: the inbound
    flow reads one map. A DID both files route, to different queues, is refused."""
    extra = did_queues(trunks)
    if not extra:
        return policy
    own = policy.routing.did_queues
    for did, queue in extra.items():
        if own.get(did, queue) != queue:
            raise SettingsError(f"CALLFLOW_TRUNKS_FILE: DID {did} goes to queue {queue!r} but "
                                f"the Policy's routing.did_queues sends it to {own[did]!r}")
    data = policy.model_dump()
    data["routing"]["did_queues"] = {**own, **extra}
    return Policy.model_validate(data)


def outbound_trunk(trunks: tuple[Trunk, ...]) -> Trunk | None:
    """The trunk outbound calls leave through; None: no trunk carries them."""
    return next((t for t in trunks if t.outbound), None)


def did_queues(trunks: tuple[Trunk, ...]) -> dict[str, str]:
    """Every trunk's DID -> queue map, merged (``parse_trunks`` made DIDs unique)."""
    return {did: queue for trunk in trunks for did, queue in trunk.dids.items()}


@dataclass(frozen=True)
class TrunkStatus:
    """One trunk as Asterisk sees it now (``callflow trunk check``)."""

    trunk: Trunk
    registration: str  # Registered, Rejected, Unregistered... or "n/a" (IP authentication)
    reachability: str  # Reachable, Unreachable, NonQualified, Unknown
    rtt_ms: float | None = None

    @property
    def down(self) -> bool:
        """Carries no call: a registration that does not hold, or a carrier that does not
        answer OPTIONS (a trunk that is not qualified is not judged on that)."""
        refused = self.trunk.auth == "register" and self.registration != "Registered"
        return refused or self.reachability == "Unreachable"

    def line(self) -> str:
        rtt = f" rtt {self.rtt_ms:.1f} ms" if self.rtt_ms is not None else ""
        return (f"{self.trunk.name}: {'DOWN' if self.down else 'up'} -- registration "
                f"{self.registration}, {self.trunk.server_uri} {self.reachability}{rtt}")


def trunk_statuses(trunks: tuple[Trunk, ...], registrations: Sequence[Mapping[str, str]],
                   contacts: Sequence[Mapping[str, str]]) -> list[TrunkStatus]:
    """Each trunk's status from AMI's ``PJSIPShowRegistrationsOutbound`` items
    (``OutboundRegistrationDetail``: ObjectName, Status) and the trunk endpoints'
    ``PJSIPShowEndpoint`` items (``ContactStatusDetail``: AOR, Status, RoundtripUsec; a
    static contact is in no ``PJSIPShowContacts`` listing). A trunk missing from a listing
    is ``Unknown`` there (Asterisk did not load it: the config is not the one rendered)."""
    regs = {r.get("ObjectName", ""): r.get("Status", "Unknown") for r in registrations}
    out = []
    for trunk in trunks:
        contact = next((c for c in contacts if c.get("AOR") == trunk.endpoint), None)
        reach = contact.get("Status", "Unknown") if contact is not None else "Unknown"
        rtt = None
        if contact is not None and reach == "Reachable":
            try:
                rtt = int(contact.get("RoundtripUsec", "")) / 1000
            except ValueError:
                rtt = None
        registration = regs.get(trunk.endpoint, "Unknown") if trunk.auth == "register" \
            else "n/a"
        out.append(TrunkStatus(trunk, registration, reach, rtt))
    return out
