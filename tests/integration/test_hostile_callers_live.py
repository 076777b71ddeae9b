"""Issue 15 on a real Asterisk: SIPp callers whose From user, display name, To, Contact and
request URI carry injection attempts (``%0d%0a`` and ``%0a%0a`` that pjsip decodes, NUL,
2 KB strings, whole ``agi_`` lines and whole AMI events), into the real service.

Each caller still reaches agent 1001 and is recorded as an ordinary call, under Asterisk's
own uniqueid, with the number the dialplan cleaned; agent 1002 (not-ready, the target of
a forged ``*22`` feature code) never changes; no call exists under a forged id; agent
1001's softphone is never taken for gone. A request URI that is not digits gets a 404 and
no call at all. Then the dialplan's cleaning is bypassed on purpose (an extension added
over the CLI goes straight to the flow's context), so the raw values reach FastAGI: the
environment is refused, the call is handled all the same as an unknown caller's, and an
``agi_environment_refused`` alarm is raised.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from product import Product, running_product

from callflow.agents.changes import AgentChanged
from callflow.agents.events import feature_code_event
from callflow.agents.state import AgentState, LogIn
from callflow.engine.calls import Phase
from callflow.engine.effects import Alarm, DomainEvent
from callflow.engine.policy import parse_policy
from callflow.pbx.render import INBOUND_FLOW_CONTEXT
from callflow.store import repo

if TYPE_CHECKING:
    from conftest import PbxHandle
    from sippctl import SippControl

POLICY = parse_policy({"agents": {"acw_limit_s": 0.5}})
FORGED_ID = "1796000000.1"
CODES = POLICY.agents.feature_codes
FEATURE = (f"13800000000%0d%0aagi_network_script%3a%20feature%0d%0aagi_arg_1%3a%20"
           f"{CODES.ready}%0d%0aagi_arg_2%3a%20agent1002")
BYPASS_DID = "9999"


@dataclass(frozen=True)
class Caller:
    """One hostile call: what its SIP headers carry."""

    name: str
    from_user: str = "13800000000"
    display: str = "caller"
    to_user: str = "8000"
    contact_user: str = "13800000000"

    def sipp_args(self) -> list[str]:
        return ["-key", "display", self.display, "-key", "to_user", self.to_user,
                "-key", "contact_user", self.contact_user]

    @property
    def cleaned_number(self) -> str:
        """The number after the dialplan's FILTER(0-9+): pjsip decodes the From user,
        Asterisk ends it at NUL or ';' and keeps 79 bytes."""
        raw = unquote(self.from_user).split("\x00")[0].split(";")[0][:79]
        return "".join(c for c in raw if c in "0123456789+")


THROUGH_THE_GATE = [
    Caller("feature code in the number", from_user=FEATURE),
    Caller("forged ContactStatus", from_user="1%0d%0a%0d%0aEvent%3a%20ContactStatus"
           "%0d%0aAOR%3a%20agent1001%0d%0aContactStatus%3a%20Removed"),
    Caller("forged Hangup of another id",
           from_user=f"1%0d%0a%0d%0aEvent%3a%20Hangup%0d%0aPrivilege%3a%20call,all%0d%0a"
                     f"Uniqueid%3a%20{FORGED_ID}%0d%0a%0d%0a"),
    Caller("environment ended early", from_user=f"139%0a%0a200%20result=1%20({FORGED_ID})"),
    Caller("NUL", from_user="139%00agi_uniqueid%3a%201"),
    Caller("2 KB number", from_user="1234567890" * 205),
    Caller("display name, To and Contact", display='Eve %0d%0a \\"x\\" a,b(c)$d{e};f ' + "N" * 2048,
           to_user=f"8000%0d%0aagi_uniqueid%3a%20{FORGED_ID}",
           contact_user=f"139%0d%0aagi_uniqueid%3a%20{FORGED_ID}"),
]
BYPASSING_THE_GATE = [  # the caller's number reaches FastAGI raw: recorded as unknown
    Caller("bypass: feature code in the number", from_user=FEATURE),
    Caller("bypass: environment ended early",
           from_user=f"139%0a%0a200%20result=1%20({FORGED_ID})"),
]


class Watch:
    """The core's domain events from now on (collected on the service's loop)."""

    def __init__(self, product: Product) -> None:
        self.events: list[DomainEvent] = []
        product.call(lambda: product.runtime.on_event(self.events.append))

    def of(self, kind: type[Any], where: Callable[[Any], bool] = lambda e: True) -> list[Any]:
        return [e for e in list(self.events) if isinstance(e, kind) and where(e)]


def call_in(product: Product, sipp: SippControl, caller: Caller, did: str) -> str:
    """Place the call, wait until it ended and agent 1001 is ready again; its uniqueid, as
    the engine tracks it (the AMI tap of the tests cannot be asked: it reads the hostile
    values' line breaks as its own)."""
    before = product.call(lambda: set(product.runtime.calls))
    run = sipp.caller(did, "uac_hostile.xml", *caller.sipp_args(), caller_id=caller.from_user,
                      talk_ms=1500, timeout_s=30)
    product.wait_for(lambda: set(product.runtime.calls) - before != set(), 15,
                     f"the call of {caller.name!r}")
    (call_id,) = product.call(lambda: set(product.runtime.calls) - before)
    run.wait(30)
    product.wait_for(lambda: product.runtime.calls[call_id].phase is Phase.ENDED, 15,
                     f"the call of {caller.name!r} to end")
    product.wait_for(lambda: product.runtime.agents["1001"].state is AgentState.READY, 10,
                     "agent 1001 to be ready again")
    return str(call_id)


def test_hostile_callers_reach_an_agent_and_change_nothing_else(
        asterisk: PbxHandle, asterisk_root: Path, sipp: SippControl, tmp_path: Path) -> None:
    with running_product(asterisk, asterisk_root, tmp_path, POLICY, ["1001", "1002"]) as product:
        sipp.softphone("1001", "uas_answer.xml", ring_ms=300)
        # 1002's phone is up too: its only changes would be the hostile input's doing
        sipp.softphone("1002", "uas_answer.xml", ring_ms=300)
        product.call(lambda: product.runtime.agent_event("1001", LogIn()))
        product.call(lambda: product.runtime.agent_event("1002", LogIn()))
        product.call(lambda: product.runtime.agent_event(
            "1002", feature_code_event(CODES.not_ready, POLICY)))
        watch = Watch(product)

        recorded: dict[str, str] = {}
        for caller in THROUGH_THE_GATE:
            recorded[caller.name] = call_in(product, sipp, caller, "8000")

        since = asterisk.tap.mark()
        refused = sipp.caller("8000%0d%0a%0d%0aEvent%3a%20Hangup", "uac_hostile.xml",
                              *THROUGH_THE_GATE[0].sipp_args(), talk_ms=0, timeout_s=10)
        assert refused.wait(20) != 0            # a 404, where the scenario wants a 200
        asterisk.tap.assert_no_event("Newchannel", 1.0, since)

        asterisk.cli(f"dialplan add extension {BYPASS_DID},1,"
                     f"Goto({INBOUND_FLOW_CONTEXT},{BYPASS_DID},1) into inbound")
        try:
            for caller in BYPASSING_THE_GATE:
                recorded[caller.name] = call_in(product, sipp, caller, BYPASS_DID)
        finally:
            asterisk.cli(f"dialplan remove extension {BYPASS_DID}@inbound")

        product.flush()
        for caller in [*THROUGH_THE_GATE, *BYPASSING_THE_GATE]:
            row = product.store.read(repo.get_call, recorded[caller.name])
            number = "" if caller in BYPASSING_THE_GATE else caller.cleaned_number
            assert row is not None, caller.name
            assert (row.agent_id, row.outcome) == ("1001", "answered"), caller.name
            assert (row.caller_number or "") == number, caller.name
        assert product.store.read(repo.get_call, FORGED_ID) is None
        assert FORGED_ID not in product.call(lambda: set(product.runtime.calls))
        assert watch.of(AgentChanged, lambda e: e.agent.agent_id == "1002") == []
        assert watch.of(AgentChanged, lambda e: e.agent.agent_id == "1001"
                        and e.agent.state is AgentState.NOT_READY) == []
        assert product.call(lambda: product.runtime.endpoint_reachable["agent1001"])
        refusals = watch.of(Alarm, lambda a: a.kind == "agi_environment_refused")
        assert sorted(a.detail["call_id"] for a in refusals) == sorted(
            recorded[c.name] for c in BYPASSING_THE_GATE)
        assert watch.of(Alarm, lambda a: a.kind == "ami_frame_refused")
        print("\n".join(f"{c.name}: {recorded[c.name]} recorded as {c.cleaned_number!r}"
                        for c in THROUGH_THE_GATE))
