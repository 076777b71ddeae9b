"""Issue 5 on a real Asterisk: softphones, calls and feature codes reach the agent desktop.

A SIPp softphone becomes reachable -> the desktop shows it; the agent logs in at the
extension they sit at; a SIPp caller rings them -> ringing -> answer -> on-call ->
the caller hangs up -> after-call work -> ready by itself at the Policy's ACW limit;
the softphone dials *21 -> not-ready. A desktop (the websockets library) sees each
change in order, and the time from Asterisk's own event stamp (AMI ``Timestamp``) to
the frame's arrival is measured and printed. Also: registration and unregistration,
hot-desking, desktops misbehaving during a live call, and an engine restart in the
middle of a call. Every frame received is checked against docs/agent-protocol.md.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from agent_protocol_schema import frame_errors
from product import Product, make_roster, make_settings
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from callflow.agents.roster import Roster, RosterAgent
from callflow.agents.state import AgentState, RequestState
from callflow.desktop.feature import AgentDesktop
from callflow.engine.calls import Phase
from callflow.engine.policy import Policy, parse_policy
from callflow.service import ServiceOptions
from callflow.settings import Settings
from callflow.store import repo

if TYPE_CHECKING:
    from conftest import PbxHandle
    from sippctl import SippControl

ACW_LIMIT_S = 3.0
# a desk with no phone at the start counts as unreachable after the start grace (issue 14,
# 15 s by default): these tests begin there, so the grace is short
POLICY = parse_policy({"agents": {"acw_limit_s": ACW_LIMIT_S},
                       "supervision": {"softphone_grace_s": 1.0}})
LATENCY_BOUND_S = 0.2  # issue 5: each change within 200 ms of the AMI event
CALLER = "13912345678"
AGENTS = ["1001", "1002", "1003", "1005"]
Frame = dict[str, Any]


class LiveStream:
    """A websocket client in its own thread, each frame stamped with its arrival time."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.frames: list[tuple[float, Frame]] = []
        self.closed: tuple[int, str] | None = None
        self._cond = threading.Condition()
        self._connection = connect(self.url, open_timeout=5, max_size=None)
        self._ws: ClientConnection = self._connection.__enter__()
        self._ws.send(json.dumps({"type": "auth", "token": token}))  # as the pages do
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for raw in self._ws:
                arrived = time.time()
                frame = json.loads(raw)
                with self._cond:
                    self.frames.append((arrived, frame))
                    self._cond.notify_all()
        except ConnectionClosed as closed:
            with self._cond:
                rcvd = closed.rcvd
                self.closed = (rcvd.code, rcvd.reason) if rcvd else (0, "")
                self._cond.notify_all()

    def send(self, frame: Frame | str) -> None:
        self._ws.send(frame if isinstance(frame, str) else json.dumps(frame))

    def wait(self, pred: Callable[[Frame], bool], timeout: float, what: str,
             after: int = 0) -> tuple[float, Frame, int]:
        """The first frame (from index ``after``) matching ``pred``: arrival, frame, index."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for i, (arrived, frame) in enumerate(self.frames[after:], after):
                    if pred(frame):
                        return arrived, frame, i
                left = deadline - time.monotonic()
                if left <= 0 or self.closed is not None:
                    kinds = [(f["type"], f.get("payload", {}).get("state"))
                             for _, f in self.frames[-12:]]
                    raise AssertionError(f"no frame {what} within {timeout}s "
                                         f"(closed={self.closed}); last: {kinds}")
                self._cond.wait(left)

    def close(self) -> None:
        self._connection.__exit__(None, None, None)
        self._thread.join(5)


class LiveDesk(LiveStream):
    """An agent desktop on /ws/desktop (an agent's session token unless given)."""

    def __init__(self, product: Product, agent_id: str, token: str | None = None,
                 **query: Any) -> None:
        token = token or product.session(agent_id, "agent", agent_id)
        params = "&".join(f"{k}={v}" for k, v in query.items())
        super().__init__(f"ws://127.0.0.1:{product.settings.ports.api}/ws/desktop"
                         f"?{params}", token)
        self.next_id = 0
        # live once the server has read the auth frame and subscribed: the hello, and
        # without since= the snapshot (sent from the subscription)
        self.wait(lambda f: f["type"] == "snapshot" if "since" not in query
                  else f["type"] == "hello", 5, "the desktop to be live")

    def request(self, kind: str, timeout: float = 5, **fields: Any) -> Frame:
        self.next_id += 1
        rid = self.next_id
        self.send({"type": kind, "id": rid, **fields})
        return self.wait(lambda f: f["type"] in ("ack", "error") and f.get("id") == rid,
                         timeout, f"the reply to {kind}")[1]

    def state_event(self, state: str, timeout: float, after: int = 0,
                    **match: Any) -> tuple[float, Frame, int]:
        def pred(f: Frame) -> bool:
            p = f.get("payload", {})
            return (f["type"] == "event" and p.get("type") == "agent_state"
                    and p.get("state") == state and all(p.get(k) == v for k, v in match.items()))
        return self.wait(pred, timeout, f"agent_state {state} {match}", after)

    def events(self) -> list[Frame]:
        with self._cond:
            return [f for _, f in self.frames if f["type"] == "event"]

    def check_schema(self) -> None:
        with self._cond:
            bad = [(f, frame_errors(f)) for _, f in self.frames if frame_errors(f)]
        assert not bad, bad[:3]


def board_stream(product: Product) -> LiveStream:
    """A supervisor's /ws/events stream of the board and alarms."""
    return LiveStream(f"ws://127.0.0.1:{product.settings.ports.api}/ws/events"
                      "?topics=board,alarms", product.settings.api_token)


@pytest.fixture
def settings(asterisk: PbxHandle, asterisk_root: Path, tmp_path: Path) -> Settings:
    return make_settings(tmp_path, asterisk, asterisk_root)


def start_product(asterisk: PbxHandle, settings: Settings,
                  policy: Policy = POLICY) -> Product:
    static = make_roster([a for a in AGENTS if a != "1005"], asterisk.agent_port)
    registering = RosterAgent("1005", "Agent 1005", "agent1005",
                              password=asterisk.agent_password("1005"))
    product = Product(settings, policy, Roster((*static.agents, registering)),
                      ServiceOptions(features=[AgentDesktop()]))
    product.start()
    return product


@pytest.fixture
def product(asterisk: PbxHandle, settings: Settings) -> Iterator[Product]:
    running = start_product(asterisk, settings)
    try:
        yield running
    finally:
        running.stop()


def stamp(event: dict[str, str]) -> float:
    return float(event["Timestamp"])


def agent(product: Product, agent_id: str) -> Any:
    return product.call(lambda: product.runtime.agents[agent_id])


def wait_unreachable(product: Product, agent_id: str) -> None:
    product.wait_for(lambda: not product.runtime.agents[agent_id].softphone_reachable, 8,
                     f"agent {agent_id}'s softphone to count as unreachable")


def latency_table(rows: list[tuple[str, str, float]]) -> str:
    lines = [f"  {change:<24} {source:<34} {delta * 1000:8.1f} ms" for change, source, delta
             in rows]
    return "\n".join(["desktop frame arrival - Asterisk event time:", *lines])


# --- the whole cycle, measured ------------------------------------------------------------


@pytest.mark.std("STD-098")
def test_softphone_call_acw_and_feature_code_reach_the_desktop_in_order_within_200ms(
        asterisk: PbxHandle, sipp: SippControl, product: Product) -> None:
    tap = asterisk.tap
    desk = LiveDesk(product, "1001")
    hello = desk.wait(lambda f: f["type"] == "hello", 5, "hello")[1]
    assert hello["timers"]["acw_limit_s"] == ACW_LIMIT_S
    wait_unreachable(product, "1001")
    rows: list[tuple[str, str, float]] = []

    # the softphone comes up: Asterisk's qualify finds it -> the desktop shows it reachable
    t_phone = tap.mark()
    sipp.softphone("1001", "uas_answer.xml", ring_ms=1500)
    contact = tap.wait_event("ContactStatus", 5, t_phone, AOR="agent1001",
                             ContactStatus="Reachable")
    arrived, _, _ = desk.wait(
        lambda f: f.get("payload", {}).get("softphone_reachable") is True
        and f["type"] == "event", 5, "softphone reachable")
    rows.append(("softphone reachable", "ContactStatus Reachable", arrived - stamp(contact)))

    # log in at the extension the agent sits at
    ack = desk.request("login", extension="1001")
    assert (ack["type"], ack["state"]) == ("ack", "ready"), ack
    _, _, mark = desk.state_event("ready", 2, cause="login")

    # a caller rings the agent; the softphone answers after 1.5 s; the caller hangs up
    t_call = tap.mark()
    caller = sipp.caller("100", "uac_call.xml", talk_ms=12000, caller_id=CALLER)
    begin = tap.wait_event("DialBegin", 10, t_call)
    assert begin["DestChannel"].startswith("PJSIP/agent1001-")
    call_id, leg = begin["Uniqueid"], begin["DestUniqueid"]
    arrived, _, mark = desk.state_event("ringing", 5, mark, call_id=call_id)
    rows.append(("ringing", "DialBegin (engine reserves first)", arrived - stamp(begin)))
    _, offer, _ = desk.wait(lambda f: f.get("payload", {}).get("type") == "call", 5,
                            "the call's details")
    details = offer["payload"]["call"]
    assert (details["uniqueid"], details["caller_number"]) == (call_id, CALLER)
    assert details["greeting"] == "normal" and isinstance(details["history"], list)
    up = tap.wait_event("Newstate", 10, t_call, Uniqueid=leg, ChannelStateDesc="Up")
    arrived, _, mark = desk.state_event("on_call", 5, mark, call_id=call_id)
    rows.append(("on_call", "Newstate Up (agent leg)", arrived - stamp(up)))
    assert caller.wait(60) == 0, caller.diagnostics()
    gone = tap.wait_event("Hangup", 10, t_call, Uniqueid=leg)
    arrived, acw, mark = desk.state_event("acw", 5, mark, call_id=call_id)
    rows.append(("acw", "Hangup (agent leg)", arrived - stamp(gone)))
    deadline = acw["payload"]["acw_deadline_epoch"]
    assert deadline == pytest.approx(acw["payload"]["since_epoch"] + ACW_LIMIT_S, abs=0.01)

    # nobody presses anything: ready by itself at the ACW limit (STD-100)
    arrived, ready, mark = desk.state_event("ready", ACW_LIMIT_S + 3, mark)
    assert ready["payload"]["cause"] == "acw_limit"
    rows.append(("ready (ACW limit)", "the limit (acw_deadline_epoch)", arrived - deadline))

    # the softphone dials *21 -> not-ready with the Policy's reason, a prompt answers
    codes = POLICY.agents.feature_codes
    t_code = tap.mark()
    dialled = sipp.caller(codes.not_ready, "uac_wait_bye.xml", caller_id="agent1001",
                          talk_ms=0, timeout_s=30)
    agi = tap.wait_event(lambda e: e.get("Event") == "Newexten" and e.get("Application") == "AGI"
                         and e.get("Exten") == codes.not_ready, 10, t_code)
    assert "/feature," in agi["AppData"] and agi["Context"] == "agents"
    arrived, not_ready, mark = desk.state_event("not_ready", 5, mark)
    assert (not_ready["payload"]["reason"], not_ready["payload"]["by"]) == (
        codes.not_ready_reason, "feature_code")
    rows.append(("not_ready (*21)", "Newexten AGI(feature)", arrived - stamp(agi)))
    assert dialled.wait(30) == 0, dialled.diagnostics()
    asked = [e["Command"] for e in tap.events_since(t_code, "AGIExecStart")
             if e["Uniqueid"] == agi["Uniqueid"]]
    # who dialled is Asterisk's word (issue 15), then the prompt
    assert asked[1:3] == ['GET VARIABLE "CHANNEL(endpoint)"', "GET VARIABLE CONTEXT"]
    played = asked[3:]
    assert played[0] == "ANSWER" and "feature_not_ready-" in played[1]

    # every change in order, each once, seq increasing; every frame as documented
    states = [(f["payload"]["state"], f["payload"].get("cause"))
              for f in desk.events() if f["payload"]["type"] == "agent_state"
              and "prev_state" in f["payload"]]  # transitions, not flag updates
    assert states == [("ready", "login"), ("ringing", "offered"), ("on_call", "answered"),
                      ("acw", "call_ended"), ("ready", "acw_limit"),
                      ("not_ready", "request")], states
    seqs = [f["seq"] for f in desk.events()]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    desk.check_schema()
    print("\n" + latency_table(rows))
    for change, source, delta in rows:
        if change != "ringing":  # the engine sets ringing before it asks Asterisk to dial
            assert 0 <= delta < LATENCY_BOUND_S, (change, source, delta)
        else:
            assert delta < LATENCY_BOUND_S, (change, source, delta)
    desk.close()


# --- registration ---------------------------------------------------------------------------


@pytest.mark.std("STD-099")
def test_registering_softphone_shows_reachable_and_unregistering_takes_the_agent_out(
        asterisk: PbxHandle, sipp: SippControl, product: Product) -> None:
    tap = asterisk.tap
    wait_unreachable(product, "1005")  # no contact at the resync: not registered
    desk = LiveDesk(product, "1005")
    board = board_stream(product)
    sipp.softphone("1005", "uas_answer.xml", wait=False)
    t_reg = tap.mark()
    sent = time.time()
    registered = sipp.register("1005", asterisk.agent_password("1005"))
    assert registered.wait(15) == 0, registered.diagnostics()

    def contact_up(e: dict[str, str]) -> bool:
        return (e.get("Event") == "ContactStatus" and e.get("AOR") == "agent1005"
                and e.get("ContactStatus") in ("Created", "Reachable"))

    tap.wait_event(contact_up, 5, t_reg)  # Created (the REGISTER), Reachable (the qualify)
    arrived, _, mark = desk.wait(
        lambda f: f["type"] == "event" and f["payload"].get("softphone_reachable") is True,
        5, "the desktop to show the softphone reachable")
    assert arrived >= sent  # caused by this REGISTER, not left over
    # Asterisk may publish Reachable (first qualify) and Created in either order, and
    # stamps each when its manager queue takes it: measure from the earliest of them
    first_up = min(stamp(e) for e in tap.events_since(t_reg) if contact_up(e))
    reachable_ms = (arrived - first_up) * 1000
    board.wait(lambda f: f.get("payload", {}).get("agent_id") == "1005"
               and f["payload"].get("softphone_reachable") is True, 5, "reachable on the board")
    assert desk.request("login", extension="1005")["state"] == "ready"

    t_unreg = tap.mark()
    gone = sipp.register("1005", asterisk.agent_password("1005"), expires=0)
    assert gone.wait(15) == 0, gone.diagnostics()
    removed = tap.wait_event("ContactStatus", 5, t_unreg, AOR="agent1005",
                             ContactStatus="Removed")
    arrived, out, _ = desk.state_event("not_ready", 5, mark, reason="unreachable")
    unreachable_ms = (arrived - stamp(removed)) * 1000
    assert out["payload"]["softphone_reachable"] is False
    _, alarm, _ = board.wait(lambda f: f.get("topic") == "alarms"
                             and f["payload"].get("kind") == "softphone_unreachable", 5,
                             "the unreachable alarm on the board")
    assert alarm["payload"]["detail"]["agent_id"] == "1005"
    assert desk.request("ready")["error"] == "softphone_unreachable"
    product.flush()
    alarms = product.store.read(repo.open_alarms)
    assert any(a.kind == "softphone_unreachable" and a.detail["agent_id"] == "1005"
               for a in alarms)
    desk.check_schema()
    print(f"\nREGISTER -> desktop reachable {reachable_ms:.1f} ms; "
          f"unREGISTER -> desktop not_ready(unreachable) {unreachable_ms:.1f} ms")
    assert reachable_ms < LATENCY_BOUND_S * 1000
    assert 0 <= unreachable_ms < LATENCY_BOUND_S * 1000
    desk.close()
    board.close()


# --- hot-desking ----------------------------------------------------------------------------


def test_an_agent_at_another_desk_gets_that_desks_calls_and_feature_codes(
        asterisk: PbxHandle, sipp: SippControl, product: Product) -> None:
    tap = asterisk.tap
    sipp.softphone("1003", "uas_answer.xml", ring_ms=500)
    desk = LiveDesk(product, "1002")
    assert desk.request("login", extension="1003")["state"] == "ready"
    t0 = tap.mark()
    caller = sipp.caller("100", "uac_call.xml", talk_ms=9000, caller_id=CALLER)
    begin = tap.wait_event("DialBegin", 10, t0)
    assert begin["DestChannel"].startswith("PJSIP/agent1003-")  # the desk, not agent1002
    desk.state_event("on_call", 10, call_id=begin["Uniqueid"])
    assert agent(product, "1003").state is AgentState.LOGGED_OUT
    assert caller.wait(60) == 0, caller.diagnostics()
    desk.state_event("acw", 5)
    dialled = sipp.caller(POLICY.agents.feature_codes.end_acw, "uac_wait_bye.xml",
                          caller_id="agent1003", talk_ms=0, timeout_s=30)
    _, ended, _ = desk.state_event("ready", 5, cause="end_acw")
    assert ended["payload"]["by"] == "feature_code"
    assert dialled.wait(30) == 0, dialled.diagnostics()
    product.flush()
    call = product.store.read(repo.get_call, begin["Uniqueid"])
    assert call is not None and call.agent_id == "1002"
    desk.check_schema()
    desk.close()


# --- misbehaving desktops during a live call ---------------------------------------------------


def test_desktops_misbehave_during_a_live_call_and_nothing_else_notices(
        asterisk: PbxHandle, sipp: SippControl, product: Product) -> None:
    tap = asterisk.tap
    sipp.softphone("1001", "uas_answer.xml", ring_ms=1000)
    main = LiveDesk(product, "1001")
    other = LiveDesk(product, "1001")  # a second desktop for the same agent
    assert main.request("login", extension="1001")["state"] == "ready"
    _, first, _ = other.state_event("ready", 5)
    # an agent session cannot open another agent's stream, on either websocket
    token = product.session("1001", "agent", "1001")
    for path in ("/ws/desktop?agent=1002", "/ws/events?topics=agent:1002"):
        with connect(f"ws://127.0.0.1:{product.settings.ports.api}{path}",
                     open_timeout=5) as refused:
            refused.send(json.dumps({"type": "auth", "token": token}))
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    refused.recv(5)
            assert closed.value.rcvd is not None
            assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (
                1008, "forbidden topics for this principal")
    errors_before = product.call(lambda: product.runtime.stats.errors)

    t0 = tap.mark()
    caller = sipp.caller("100", "uac_call.xml", talk_ms=10000, caller_id=CALLER)
    begin = tap.wait_event("DialBegin", 10, t0)
    call_id = begin["Uniqueid"]
    _, ringing, _ = other.state_event("ringing", 5, call_id=call_id)
    other.close()  # the second desktop drops mid-stream
    # garbage, unknown types and a request that is illegal now, all during the call
    for bad, code in (("{]", "bad_json"), ('{"type":"transfer","to":"1002"}', "bad_frame"),
                      ('{"type":"steal","call":"x"}', "unknown_type"),
                      ('{"type":"subscribe","topic":"agent:1002"}', "unknown_type")):
        main.send(bad)
        main.wait(lambda f, c=code: f["type"] == "error" and f["error"] == c, 5, code)
    assert main.request("busy", reason="meal")["error"] == "on_call"
    main.state_event("on_call", 10, call_id=call_id)
    assert caller.wait(60) == 0, caller.diagnostics()
    main.state_event("acw", 5, call_id=call_id)

    # the second desktop comes back with since= and gets exactly what it missed, in order
    back = LiveDesk(product, "1001", since=ringing["seq"])
    _, _, _ = back.state_event("acw", 5, call_id=call_id)
    resumed = [f for f in back.events() if f["payload"]["type"] == "agent_state"
               and f["payload"]["cause"] != "phone"]  # (the desk's channel came and went)
    assert [f["payload"]["state"] for f in resumed][:2] == ["on_call", "acw"]
    assert all(f["seq"] > ringing["seq"] for f in back.events())
    assert not [f for _, f in back.frames if f["type"] == "snapshot"]
    assert first["seq"] < ringing["seq"]
    # an oversized frame: an error frame, then a clean close; the engine goes on
    back.send(json.dumps({"type": "end_acw", "pad": "x" * 70_000}))
    back.wait(lambda f: f["type"] == "error" and f["error"] == "frame_too_large", 5, "1009")
    deadline = time.monotonic() + 5
    while back.closed is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert back.closed == (1009, "frame_too_large")
    main.state_event("ready", ACW_LIMIT_S + 3, cause="acw_limit")
    product.wait_for(lambda: product.runtime.calls[call_id].phase is Phase.ENDED, 5,
                     "the call to end")
    product.flush()
    call = product.store.read(repo.get_call, call_id)
    assert call is not None and call.outcome == "answered" and call.agent_id == "1001"
    assert product.call(lambda: product.runtime.stats.errors) == errors_before
    main.check_schema()
    back.check_schema()
    main.close()
    back.close()


# --- engine restart mid-call --------------------------------------------------------------------


def test_engine_restart_mid_call_restores_the_agent_and_follows_the_call_to_its_end(
        asterisk: PbxHandle, sipp: SippControl, settings: Settings) -> None:
    tap = asterisk.tap
    running: list[Product] = []
    try:
        first = start_product(asterisk, settings)
        running.append(first)
        sipp.softphone("1001", "uas_answer.xml", ring_ms=500)
        assert LiveDesk(first, "1001").request("login", extension="1001")["state"] == "ready"
        first.call(lambda: first.runtime.log_in("1002"))
        first.call(lambda: first.runtime.agent_event(
            "1002", RequestState(AgentState.BUSY, "meal")))
        t0 = tap.mark()
        caller = sipp.caller("100", "uac_call.xml", talk_ms=14000, caller_id=CALLER)
        begin = tap.wait_event("DialBegin", 10, t0)
        call_id, leg = begin["Uniqueid"], begin["DestUniqueid"]
        first.wait_for(lambda: first.runtime.agents["1001"].state is AgentState.ON_CALL, 15,
                       "agent 1001 on the call")
        busy_since = first.call(lambda: first.runtime.epoch_of(first.runtime.agents["1002"].since))
        running.remove(first)
        first.stop(check_invariants=False)  # the engine goes down mid-call; Asterisk keeps it

        second = start_product(asterisk, settings)
        running.append(second)
        restored = agent(second, "1001")
        assert (restored.state, restored.call_id) == (AgentState.ON_CALL, call_id)
        assert restored.softphone_reachable  # nothing said otherwise (static contact)
        meal = agent(second, "1002")
        assert (meal.state, meal.reason) == (AgentState.BUSY, "meal")
        assert second.call(lambda: second.runtime.epoch_of(meal.since)) == pytest.approx(
            busy_since, abs=0.01)
        desk = LiveDesk(second, "1001")
        snapshot = desk.wait(lambda f: f["type"] == "snapshot", 5, "snapshot")[1]
        assert snapshot["state"]["agents"][0]["state"] == "on_call"
        assert caller.wait(60) == 0, caller.diagnostics()
        gone = tap.wait_event("Hangup", 10, t0, Uniqueid=leg)
        arrived, _, mark = desk.state_event("acw", 5, call_id=call_id)
        assert arrived - stamp(gone) < LATENCY_BOUND_S
        desk.state_event("ready", ACW_LIMIT_S + 3, mark, cause="acw_limit")
        desk.check_schema()
        desk.close()
    finally:
        for product in running:
            product.stop()
