"""The ``callflow`` command: set up, run, and inspect a deployment.

Every subcommand reads the deployment from ``CALLFLOW_*`` environment variables
(see ``callflow.settings``) and the service standards from the Policy file, so the
same command works for ``make run`` on a laptop and on a contact centre's server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import logging
import re
import secrets
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from callflow.errors import CallflowError, StoreError
from callflow.settings import Settings, load_settings

if TYPE_CHECKING:
    from callflow.agents.roster import Roster
    from callflow.engine.policy import Policy
    from callflow.feature import Feature
    from callflow.pbx.demo_carrier import DemoCarrier
    from callflow.pbx.process import AsteriskProcess
    from callflow.pbx.render import PbxConfig
    from callflow.store.db import Store

log = logging.getLogger("callflow")

#: A login name: what fits the users table, printable, no spaces.
USERNAME = re.compile(r"[^\s\x00-\x1f\x7f]{1,64}")


def _roster(settings: Settings) -> Roster:
    from callflow.pbx.roster import load_roster, write_default_roster

    path = settings.state_dir / "agents.toml"
    if not path.exists():
        roster = write_default_roster(path)
        print(f"wrote a roster of {len(roster.agents)} agents with generated SIP passwords: {path}")
        return roster
    return load_roster(path)


def default_features() -> list[Feature]:
    """The capabilities a deployment runs beside the inbound flow (one line each).

    Features that need each other get each other here, as constructor arguments."""
    from callflow.board.feature import BoardFeature
    from callflow.desktop.feature import AgentDesktop
    from callflow.outbound.feature import OutboundFeature
    from callflow.recordings.feature import RecordingsFeature
    from callflow.special_calls.feature import SpecialCallsFeature
    from callflow.tickets.feature import TicketsFeature

    # the special-calls feature keeps the hold beep, the caller's reassurance, the board,
    # alarms and records; the desktop feature sends the hold reminders to the desktop
    special_calls = SpecialCallsFeature(desktop_hold_reminders=False)
    desktop = AgentDesktop(hold_reminders=not special_calls.desktop_hold_reminders)
    outbound = OutboundFeature()
    return [desktop, BoardFeature(), outbound, special_calls,
            RecordingsFeature(outbound=outbound), TicketsFeature()]


def _pbx_config(settings: Settings, roster: Roster) -> PbxConfig:
    from callflow.pbx.render import AgentEndpoint, PbxConfig

    return PbxConfig.from_settings(settings, [
        AgentEndpoint(ext=a.agent_id, password=a.password, static_contact=a.static_contact)
        for a in roster.agents], demo_carrier=_demo_carrier(settings))


def _demo_carrier(settings: Settings) -> DemoCarrier | None:
    """The demo carrier, on while no outbound trunk is configured (CALLFLOW_DEMO_CARRIER)."""
    from callflow.demo.config import demo_carrier_from_env

    # no trunk carrying outbound calls (CALLFLOW_TRUNKS_FILE) -> the demo carrier
    from callflow.trunks import outbound_trunk

    return demo_carrier_from_env(_policy(settings).ring_cycle_s,
                                 trunk_configured=outbound_trunk(settings.trunks) is not None)


def _policy(settings: Settings) -> Policy:
    from callflow.engine.policy import load_policy

    return load_policy(settings.policy_file)


def cmd_setup(args: argparse.Namespace, settings: Settings) -> int:
    """Build what `run` needs: the Asterisk root, the roster, the prompts, the database."""
    from callflow.pbx.prompts import LanguagePack, PromptLibrary
    from callflow.pbx.root import ensure_root
    from callflow.store.db import open_store

    t0 = time.monotonic()
    version = ensure_root(settings.asterisk_root)
    print(f"[setup] Asterisk root {settings.asterisk_root}: {version}")
    roster = _roster(settings)
    policy = _policy(settings)
    library = PromptLibrary(LanguagePack.load(policy.greetings.language),
                            settings.state_dir / "prompts",
                            {"centre": policy.greetings.centre_name})
    built = library.build_all(policy, [(a.agent_id, a.name) for a in roster.agents],
                              datetime.date.today())
    print(f"[setup] {len(built)} prompts ready in {library.out_dir}")
    open_store(settings.database_url).close()
    print(f"[setup] database ready: {_safe_url(settings.database_url)}")
    print(f"[setup] done in {time.monotonic() - t0:.1f}s")
    return 0


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    """Start Asterisk (or take over the one an earlier run left with its calls), the engine
    and the API; Ctrl-C stops the engine, and Asterisk too unless it still carries calls.

    Start order (issue 14): settings, roster and Policy are read and checked, the store is
    opened and migrated, the engine's own ports are checked free, and only then is
    Asterisk touched: a start that fails leaves no process of ours behind."""
    from callflow.service import Service, ServiceOptions, describe_urls

    roster = _roster(settings)
    policy = _policy(settings)
    try:
        created = ensure_first_logins(settings, roster)  # opens and migrates the store
    except StoreError as exc:
        raise CallflowError(f"the database {_safe_url(settings.database_url)} "
                            f"(CALLFLOW_DATABASE_URL) cannot be used: {exc}") from None
    if created:
        print(f"created logins {', '.join(created)}; passwords in "
              f"{settings.state_dir / 'secrets'}/login_<name>")
    _refuse_taken_ports(settings)
    pbx = None
    started_pbx = False
    demo_carrier = _demo_carrier(settings)
    if not args.no_pbx:
        pbx = _pbx_process(settings, roster, Path(args.conf_dir))
        adopted = pbx.adopt_or_start()
        started_pbx = not adopted
        if adopted:
            print(f"took over the running Asterisk (pid {pbx.pid}) and its calls")
        else:
            print(f"Asterisk {pbx.version} running (pid {pbx.pid}), SIP on "
                  f"{settings.bind_host}:{settings.ports.sip}, console log {pbx.console_log}")

    async def main() -> None:
        service = Service(settings, policy, roster,
                          ServiceOptions(features=default_features(), pbx=pbx,
                                         demo_carrier=demo_carrier, tune_gc=True))
        try:
            await service.start()
        except BaseException:
            await service.stop()
            raise
        for name, url in describe_urls(settings).items():
            print(f"{name:>17}: {url}")
        print(f"{'API token':>17}: {settings.state_dir / 'secrets' / 'api_token'}")
        print(f"{'agents':>17}: {settings.state_dir / 'agents.toml'} (SIP passwords)")
        if demo_carrier is not None:
            print("DEMO: no outbound trunk configured; outbound calls reach the demo carrier:")
            for number, what in demo_carrier.numbers():
                print(f"{number:>17}: {what}")
            print("`callflow demo` in another terminal places simulated calls")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        print("stopping the engine…")
        await service.stop()

    ok = False
    try:
        asyncio.run(main())
        ok = True
    finally:
        if pbx is not None:
            _leave_or_stop_pbx(pbx, started_pbx=started_pbx, clean_exit=ok,
                               stop_anyway=args.stop_pbx)
    return 0


def _pbx_process(settings: Settings, roster: Roster, conf_dir: Path) -> AsteriskProcess:
    from callflow.pbx.process import AsteriskProcess

    return AsteriskProcess(settings.asterisk_root, settings.pbx_dir,
                           _pbx_config(settings, roster), conf_dir)


def _refuse_taken_ports(settings: Settings) -> None:
    """The engine's own listeners (API, FastAGI) must be free before Asterisk is touched:
    found taken later, the start would fail with Asterisk already up."""
    from callflow.errors import SettingsError

    for what, variable, port in (("API", "CALLFLOW_API_PORT", settings.ports.api),
                                 ("FastAGI", "CALLFLOW_AGI_PORT", settings.ports.agi)):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((settings.bind_host, port))
            except OSError as exc:
                raise SettingsError(
                    f"the {what} port {settings.bind_host}:{port} is in use ({exc.strerror}): "
                    f"stop what holds it (`ss -ltnp 'sport = :{port}'`, perhaps an engine "
                    f"still running) or set {variable} / CALLFLOW_PORT_BASE") from None


def _leave_or_stop_pbx(pbx: AsteriskProcess, *, started_pbx: bool, clean_exit: bool,
                       stop_anyway: bool) -> None:
    """After the engine stopped: an Asterisk with live calls keeps them (its dialplan's
    fallback serves new callers; the next ``callflow run`` takes it over) unless told
    otherwise; an idle one stops. A failed start stops only an Asterisk it started."""
    from callflow.errors import PbxError

    if not pbx.running:
        return
    if not clean_exit and not started_pbx:
        print(f"the running Asterisk (pid {pbx.pid}) is left as it was", file=sys.stderr)
        return
    try:
        live = 0 if stop_anyway or not clean_exit else pbx.live_channels()
    except PbxError as exc:
        log.warning("could not count Asterisk's live channels (%s): stopping it", exc)
        live = 0
    if live:
        print(f"Asterisk (pid {pbx.pid}) keeps its {live} live channel(s) up; new callers "
              f"reach the fallback queue. `callflow run` takes them over again; "
              f"`callflow pbx stop` ends them.")
        return
    print(f"stopping Asterisk (pid {pbx.pid})…")
    pbx.stop()


def cmd_pbx(args: argparse.Namespace, settings: Settings) -> int:
    """The deployment's Asterisk on its own: its state, a start, or a stop (which ends the
    calls it carries, so it refuses while there are any unless --force)."""
    roster = _roster(settings)
    pbx = _pbx_process(settings, roster, Path(args.conf_dir))
    running = pbx.find_running()
    if args.action == "status":
        if not running:
            print("Asterisk is not running")
            return 3
        print(f"Asterisk running, pid {pbx.pid}, {pbx.live_channels()} live channel(s); "
              f"console log {pbx.console_log}")
        return 0
    if args.action == "start":
        if running:
            print(f"Asterisk already running (pid {pbx.pid})")
            return 0
        pbx.start()
        print(f"Asterisk {pbx.version} running (pid {pbx.pid})")
        return 0
    if not running:
        print("Asterisk is not running")
        return 0
    live = pbx.live_channels()
    if live and not args.force:
        raise CallflowError(f"Asterisk (pid {pbx.pid}) carries {live} live channel(s); "
                            f"stopping it ends those calls: add --force to do it anyway")
    pbx.stop()
    print(f"Asterisk stopped ({live} live channel(s) ended)")
    return 0


def cmd_trunk(args: argparse.Namespace, settings: Settings) -> int:
    """Each carrier trunk of CALLFLOW_TRUNKS_FILE as the running Asterisk sees it, one line
    a trunk: its registration (PJSIPShowRegistrationsOutbound) and whether the carrier
    answers OPTIONS (its qualified contact, PJSIPShowEndpoint). Exit 1 when a trunk is
    down."""
    from callflow.ami.client import AmiClient
    from callflow.pbx.render import AMI_HOST
    from callflow.trunks import trunk_statuses

    if not settings.trunks:
        print("no trunk configured (CALLFLOW_TRUNKS_FILE): outbound calls have no way out")
        return 0
    keys = ("ObjectName", "Status", "ServerUri", "AOR", "URI", "RoundtripUsec")

    async def listings() -> tuple[list[dict[str, str]], list[dict[str, str]]]:
        ami = AmiClient(AMI_HOST, settings.ports.ami, settings.ami_username,
                        settings.ami_secret)
        await ami.start()
        try:
            await ami.wait_up(args.timeout)
            regs = await ami.action_list("PJSIPShowRegistrationsOutbound")
            contacts = [e for t in settings.trunks for e in (await ami.action_list(
                "PJSIPShowEndpoint", Endpoint=t.endpoint)).events]
        finally:
            await ami.stop()
        return ([{k: e.get(k) for k in keys} for e in regs.events
                 if e.name == "OutboundRegistrationDetail"],
                [{k: e.get(k) for k in keys} for e in contacts
                 if e.name == "ContactStatusDetail"])

    registrations, contacts = asyncio.run(listings())
    statuses = trunk_statuses(settings.trunks, registrations, contacts)
    for status in statuses:
        print(status.line())
    return 1 if any(s.down for s in statuses) else 0


def cmd_policy(args: argparse.Namespace, settings: Settings) -> int:
    """Show the Policy in force (every number, unit and the standard it enforces)."""
    from callflow.engine.policy import load_policy
    from callflow.policy_docs import policy_table

    policy = load_policy(Path(args.file) if args.file else settings.policy_file)
    rows = policy_table(policy)
    if args.json:
        print(json.dumps([row._asdict() if hasattr(row, "_asdict") else row for row in rows],
                         default=str, ensure_ascii=False, indent=1))
        return 0
    for row in rows:
        key, value, unit, std = (row[0], row[1], row[2], row[3])
        print(f"{key:<45} {value!s:<22} {unit or '':<6} {std or ''}")
    return 0


def cmd_conf(args: argparse.Namespace, settings: Settings) -> int:
    """Render the Asterisk configuration into a directory (to inspect or deploy by hand)."""
    from callflow.pbx.render import render

    cfg = _pbx_config(settings, _roster(settings))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stock = settings.asterisk_root / "etc" / "asterisk"
    for path in render(Path(args.conf_dir), out, cfg, stock):
        print(path)
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    """Place simulated callers and run simulated agents' softphones against a running
    `callflow run` (`make run`), so the board, desktop and reports fill with real calls
    through the real Asterisk; Ctrl-C stops cleanly."""
    from callflow.demo.runner import Demo, DemoOptions

    options = DemoOptions(
        agents=args.agents, rate_per_min=args.rate, duration_s=args.duration,
        ring_ms=int(args.ring * 1000), talk_s=args.talk, wrap_s=args.wrap,
        patience_s=args.patience, max_callers=args.max_callers, did=args.did,
        port_base=args.port_base)
    demo = Demo(settings, _roster(settings), options)
    carrier = _demo_carrier(settings)
    if carrier is not None:
        print("demo carrier test numbers for outbound tasks and callbacks:")
        for number, what in carrier.numbers():
            print(f"  {number}: {what}")
    api = f"http://{settings.bind_host}:{settings.ports.api}"
    print(f"watch it: {api}/board (login supervisor, password in "
          f"{settings.state_dir / 'secrets' / 'login_supervisor'}), {api}/desktop")
    return asyncio.run(demo.run())


def cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    """Replay a recorded day (the store's, or a queue_log file's) through the engine's own
    rules with a simulated clock, under a changed Policy or staffing, and print the
    predicted service level, ring compliance, waits, abandons and callbacks beside the
    recorded ones (docs/simulate.md)."""
    from callflow import simulate
    from callflow.engine.policy import load_policy

    return simulate.command(args, settings, load_policy)


def cmd_user(args: argparse.Namespace, settings: Settings) -> int:
    """Create a login (or reset its password): supervisors see everything, agents their own.

    A reset ends every session of the login at once (the old password's holder is out)."""
    from callflow.api.accounts import ROLES
    from callflow.api.passwords import hash_password
    from callflow.store import records, repo

    username = args.username
    if not USERNAME.fullmatch(username):
        raise CallflowError(f"username {username!r}: 1-64 characters, no spaces or control "
                            "characters")
    if args.role not in ROLES:
        raise CallflowError(f"role {args.role!r}: use one of {', '.join(ROLES)}")
    if args.role == "agent" and not args.agent:
        raise CallflowError("an agent login needs --agent WORK_NUMBER")
    if args.role != "agent" and args.agent:
        raise CallflowError(f"--agent is for agent logins only, not {args.role}")
    team = getattr(args, "team", None)
    if team is not None and (args.role != "shift_lead" or not 1 <= len(team) <= 64):
        raise CallflowError("--team (1-64 characters) is for shift_lead logins only")
    roster = _roster(settings)
    if args.agent and roster.by_id(args.agent) is None:
        known = ", ".join(a.agent_id for a in roster.agents[:10]) or "none"
        raise CallflowError(f"agent {args.agent} is not in the roster "
                            f"{settings.state_dir / 'agents.toml'} (work numbers: {known}"
                            f"{', ...' if len(roster.agents) > 10 else ''}); add them there first")
    password = args.password or secrets.token_urlsafe(12)
    password_hash = hash_password(password)
    with _database(settings) as store:
        records.sync_roster(store, roster)  # the login points at the agents table
        with store.session() as s:
            repo.set_user(s, username, args.role, password_hash, agent_id=args.agent,
                          team=team)
            ended = repo.revoke_user_sessions(s, username, datetime.datetime.now(datetime.UTC),
                                              "password_reset")
    print(f"login {username} ({args.role}) password: {password}")
    if ended:
        print(f"ended {ended} session(s) of {username}")
    return 0


def ensure_first_logins(settings: Settings, roster: Roster) -> list[str]:
    """First run: a supervisor login and one per roster agent, with generated passwords.

    Passwords are written (mode 0600) to the state dir and shown once; nothing ships
    a default secret.
    """
    from callflow.api.passwords import hash_password
    from callflow.settings import persistent_secret
    from callflow.store import records, repo
    from callflow.store.db import open_store

    store = open_store(settings.database_url)
    created = []
    try:
        records.sync_roster(store, roster)
        wanted = [("supervisor", "supervisor", None)] + [
            (a.agent_id, "agent", a.agent_id) for a in roster.agents]
        with store.session() as s:
            for username, role, agent_id in wanted:
                if repo.get_user(s, username) is None:
                    password = persistent_secret(settings.state_dir, f"login_{username}")
                    repo.set_user(s, username, role, hash_password(password), agent_id=agent_id)
                    created.append(username)
    finally:
        store.close()
    return created


def cmd_db(args: argparse.Namespace, settings: Settings) -> int:
    """Bring the database schema to the newest migration."""
    with _database(settings):
        print(f"database at head: {_safe_url(settings.database_url)}")
    return 0


@contextlib.contextmanager
def _database(settings: Settings) -> Iterator[Store]:
    """The deployment's database, migrated; a failure is one line naming the database
    (the URL without its password) and what the driver said."""
    from callflow.errors import StoreError
    from callflow.store.db import open_store

    where = _safe_url(settings.database_url)
    try:
        store = open_store(settings.database_url)
    except StoreError as exc:
        raise CallflowError(f"database {where}: {' '.join(str(exc).split())}") from None
    try:
        yield store
    except StoreError as exc:
        raise CallflowError(f"database {where}: {' '.join(str(exc).split())}") from None
    finally:
        store.close()


def _safe_url(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="callflow",
        description="Call-flow engine for contact centres on Asterisk. Configuration comes "
                    "from CALLFLOW_* environment variables (state dir, database URL, ports, "
                    "policy file); see README.md.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("setup", help="build the Asterisk root, roster, prompts and database",
                       description=cmd_setup.__doc__)
    p.set_defaults(fn=cmd_setup)

    p = sub.add_parser("run", help="run Asterisk, the engine and the API until Ctrl-C",
                       description=cmd_run.__doc__)
    p.add_argument("--no-pbx", action="store_true",
                   help="do not start or supervise Asterisk: connect to one run elsewhere")
    p.add_argument("--stop-pbx", action="store_true",
                   help="on Ctrl-C stop Asterisk even if it still carries calls")
    p.add_argument("--conf-dir", default=str(_default_conf_dir()),
                   help="Asterisk configuration templates (default: asterisk-conf/)")
    p.set_defaults(fn=cmd_run)

    p = sub.add_parser("pbx", help="the deployment's Asterisk: status, start or stop",
                       description=cmd_pbx.__doc__)
    p.add_argument("action", choices=("status", "start", "stop"))
    p.add_argument("--force", action="store_true", help="stop even with live calls")
    p.add_argument("--conf-dir", default=str(_default_conf_dir()), help="templates")
    p.set_defaults(fn=cmd_pbx)

    p = sub.add_parser("trunk", help="carrier trunks: registration and reachability",
                       description=cmd_trunk.__doc__)
    p.add_argument("action", choices=("check",))
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to reach AMI")
    p.set_defaults(fn=cmd_trunk)

    p = sub.add_parser("policy", help="print the service-standard Policy in force",
                       description=cmd_policy.__doc__)
    p.add_argument("file", nargs="?", help="a Policy TOML file (default: CALLFLOW_POLICY_FILE)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(fn=cmd_policy)

    p = sub.add_parser("conf", help="render the Asterisk configuration into a directory",
                       description=cmd_conf.__doc__)
    p.add_argument("out", help="output directory")
    p.add_argument("--conf-dir", default=str(_default_conf_dir()), help="templates")
    p.set_defaults(fn=cmd_conf)

    p = sub.add_parser("user", help="create a login or reset its password",
                       description=cmd_user.__doc__)
    p.add_argument("username")
    p.add_argument("--role", default="supervisor",
                   help="agent, supervisor, qa, admin, shift_lead or department_manager")
    p.add_argument("--team", help="the team a shift_lead leads (agents.team)")
    p.add_argument("--agent", help="the agent's work number (agent logins)")
    p.add_argument("--password", help="default: a generated one, printed once")
    p.set_defaults(fn=cmd_user)

    p = sub.add_parser("demo", help="simulated callers and agents against a running "
                       "`callflow run`", description=cmd_demo.__doc__)
    p.add_argument("--agents", type=int, default=4, help="agents to simulate [4]")
    p.add_argument("--rate", type=float, default=6.0, help="new callers a minute [6]")
    p.add_argument("--duration", type=float, default=0.0,
                   help="seconds to run, then stop as on Ctrl-C [0: until Ctrl-C]")
    p.add_argument("--ring", type=float, default=2.0,
                   help="seconds an agent's phone rings before the agent answers [2]")
    p.add_argument("--talk", type=float, default=30.0,
                   help="seconds an agent talks at most, if the other side has not hung up [30]")
    p.add_argument("--wrap", type=float, default=3.0,
                   help="seconds of after-call work before the agent is ready again [3]")
    p.add_argument("--patience", type=float, default=30.0,
                   help="seconds a caller stays on the line (waiting, then talking) "
                        "before hanging up [20]")
    p.add_argument("--max-callers", type=int, default=10, help="callers at once at most [10]")
    p.add_argument("--did", default="100", help="the number the callers dial [100]")
    p.add_argument("--port-base", type=int, default=0,
                   help="first UDP port of the demo's SIPp phones [SIP port + 300]")
    p.set_defaults(fn=cmd_demo)

    p = sub.add_parser("simulate", help="replay a recorded day under a changed Policy or "
                       "staffing: predicted beside recorded", description=cmd_simulate.__doc__)
    p.add_argument("--date", help="the day to replay, YYYY-MM-DD in the centre's time zone "
                   "[today]")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--from-store", action="store_true",
                        help="read the day from the database (the default)")
    source.add_argument("--queue-log", metavar="FILE", help="read the day from a queue_log")
    p.add_argument("--policy", metavar="FILE", help="the Policy to try (TOML) [the one in "
                   "force, CALLFLOW_POLICY_FILE]")
    staff = p.add_mutually_exclusive_group()
    staff.add_argument("--agents", type=int, help="this many agents all day, every queue")
    staff.add_argument("--staffing", metavar="FILE",
                       help="agents per hour (TOML: [agents] HOUR = COUNT) [as recorded]")
    p.add_argument("--seed", type=int, default=0, help="seed of the random draws [0]")
    p.add_argument("--runs", type=int, default=5,
                   help="simulate the day this many times (seeds SEED, SEED+1...) and show "
                        "the mean [5]")
    p.add_argument("--rona-recovery", type=float, metavar="S",
                   help="seconds an agent takes to be ready again after a ring-no-answer "
                        "[the recorded day's average, else 30]")
    p.add_argument("--callback-acceptance", type=float, default=0.3, metavar="P",
                   help="share of callers taking a callback when nobody in the recorded "
                        "day heard the offer [0.3]")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(fn=cmd_simulate)

    p = sub.add_parser("db", help="migrate the database to the newest schema",
                       description=cmd_db.__doc__)
    p.set_defaults(fn=cmd_db)
    return parser


def _default_conf_dir() -> Path:
    from callflow.settings import REPO_ROOT

    return REPO_ROOT / "asterisk-conf"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.verbose:  # alembic announces each of its plugins at INFO: noise here
        logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    try:
        return int(args.fn(args, load_settings()))
    except CallflowError as exc:
        print(f"callflow: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a path the command needs: missing, not writable...
        where = f": {exc.filename}" if exc.filename else ""
        print(f"callflow: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
