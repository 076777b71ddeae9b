"""Special-call procedures and who hangs up first, as a pure state machine per call.

Why the system runs these scripts: the seeds fix both the words and the pauses
(STD-056 silent call: prompt, 5 s, prompt, 5 s, "please call from another phone",
5 s, release), so every agent's caller hears the same thing and the release at the
end is compliant by construction (STD-112). The agent only chooses the procedure.

Procedures (``Start`` by the agent's desktop, or the feature for an automatic start):

* ``silent`` (STD-056 / STD-057, C-1): the configured prompts with ``silent_gap_s``
  after each, the last followed by ``silent_release_delay_s`` and the release. Any
  caller speech (TALK_DETECT) cancels it and the call goes on.
* ``quiet_line`` (STD-059), ``noisy_line`` (STD-060), ``wrong_number`` (STD-067): one
  script, the configured delay, the release.
* ``nuisance`` (STD-064/STD-065, C-2): each ``Warn`` plays the scope statement; after
  the ``nuisance_warnings``-th the final action runs (transfer to the automated
  attendant, escalate to the duty supervisor, or release). The number is flagged.

Who hangs up first (STD-110, STD-111, C-6): an agent-first release is compliant only
``closing_grace_s`` after the agent's closing action (never in strict mode) or when a
procedure released; otherwise it is a violation, alarmed to the board for QA.

Events carry ``at`` (monotonic, the timers' time) and ``wall`` (epoch, for records).
Bad input raises StateError with the state unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

from callflow.engine.effects import (
    Alarm,
    CancelTimer,
    DomainEvent,
    Effect,
    Logged,
    Notice,
    StartTimer,
)
from callflow.engine.policy import Policy
from callflow.engine.rules import enforces
from callflow.errors import StateError

TIMER_PREFIX = "special"
PROCEDURES = ("silent", "quiet_line", "noisy_line", "nuisance", "wrong_number")
Procedure = Literal["silent", "quiet_line", "noisy_line", "nuisance", "wrong_number"]
#: Prompt names in the language packs (prompts/<lang>/prompts.toml).
SILENT_PROMPTS = ("silent_1", "silent_2", "silent_3")  # STD-056, 004:271-272
SILENT_SHORT = "silent_short"  # STD-057, 002:83
SCRIPT = {"quiet_line": "quiet_line", "noisy_line": "noisy_line",
          "wrong_number": "wrong_number", "nuisance": "nuisance_scope"}
STD = {"silent": "STD-056", "quiet_line": "STD-059", "noisy_line": "STD-060",
       "nuisance": "STD-064", "wrong_number": "STD-067"}


@dataclass(frozen=True)
class SpecialRules:
    silent_prompts: tuple[str, ...]
    silent_gap_s: float
    silent_release_delay_s: float
    release_delay_s: dict[str, float]
    nuisance_warnings: int
    nuisance_final_action: Literal["transfer_attendant", "escalate", "hangup"]
    attendant_target: str
    closing_grace_s: float
    strict: bool
    silent_auto_start: bool = False

    @classmethod
    def from_policy(cls, policy: Policy) -> SpecialRules:
        sc = policy.special_calls
        if sc.silent_form == "short":  # C-1: 002's short prompt, 1-2 times
            prompts: tuple[str, ...] = (SILENT_SHORT,) * sc.silent_short_repeats
        else:  # 004's procedure; fewer prompts keep the last one ("call from another phone")
            prompts = SILENT_PROMPTS[:sc.silent_prompts - 1] + SILENT_PROMPTS[-1:]
        return cls(
            silent_prompts=prompts, silent_gap_s=sc.silent_gap_s,
            silent_release_delay_s=sc.silent_release_delay_s,
            release_delay_s={"quiet_line": sc.quiet_line_release_delay_s,
                             "noisy_line": sc.noisy_line_release_delay_s,
                             "wrong_number": sc.wrong_number_release_delay_s,
                             "nuisance": 0.0},
            nuisance_warnings=sc.nuisance_warnings,
            nuisance_final_action=sc.nuisance_final_action,
            attendant_target=sc.attendant_target,
            closing_grace_s=policy.hangup.closing_grace_s, strict=policy.hangup.strict_mode,
            silent_auto_start=sc.silent_auto_start)


@dataclass(frozen=True)
class SpecialCall:
    call_id: str
    agent_id: str
    caller: str = ""
    procedure: str | None = None  # the procedure started (kept after it finished)
    run: int = 0  # counts starts; stale timers and playback reports carry an older run
    step: int = 0  # prompts started in this run
    playing: bool = False
    done: bool = False  # the running procedure finished its script (or was cancelled)
    cancelled: bool = False
    warnings: int = 0  # nuisance statements played
    closing_at: float | None = None  # monotonic; STD-111
    closing_wall: float | None = None
    ending: str | None = None  # the procedure that released or transferred the call
    ended: bool = False
    spoke: bool = False  # the caller has been heard on this call (TALK_DETECT)
    started_wall: float | None = None  # epoch: when the current procedure started

    @property
    def running(self) -> bool:
        return self.procedure is not None and not self.done


# --- events -----------------------------------------------------------------------


@dataclass(frozen=True)
class Start:
    call_id: str
    agent_id: str
    procedure: str
    at: float
    wall: float


@dataclass(frozen=True)
class Warn:
    """One nuisance scope statement (the desktop's "nuisance" button; C-2)."""

    call_id: str
    agent_id: str
    at: float
    wall: float


@dataclass(frozen=True)
class PromptPlayed:
    """The feature reports the end of the playback ``token`` (from ``Play``)."""

    call_id: str
    token: str
    at: float
    wall: float


@dataclass(frozen=True)
class CallerSpeech:
    call_id: str
    at: float
    wall: float


@dataclass(frozen=True)
class Connected:
    """The caller is through to the agent, the opening said (STD-056's automatic start)."""

    call_id: str
    at: float
    wall: float


@dataclass(frozen=True)
class Closing:
    """The agent's closing action: the goodbye was said (STD-034, STD-111)."""

    call_id: str
    agent_id: str
    at: float
    wall: float


@dataclass(frozen=True)
class SpecialTimer:
    key: str
    at: float
    wall: float


@dataclass(frozen=True)
class Released:
    """The call ended; ``by`` is who released first (caller, agent, system, unknown);
    ``dropped``: that party's line dropped (a Q.850 cause the Policy calls a drop, the
    record's ``network_drop``), nobody's choice."""

    call_id: str
    by: str
    at: float
    wall: float
    dropped: bool = False


SpecialEvent = (Start | Warn | PromptPlayed | CallerSpeech | Connected | Closing | SpecialTimer
                | Released)


# --- commands for the feature -------------------------------------------------------


@dataclass(frozen=True)
class Play(Effect):
    """Play ``prompt`` on the call so the caller hears it; report ``PromptPlayed(token)``."""

    call_id: str
    prompt: str
    token: str


@dataclass(frozen=True)
class Release(Effect):
    """The system ends the call (a compliant release tagged ``procedure``, STD-112)."""

    call_id: str
    procedure: str


@dataclass(frozen=True)
class Transfer(Effect):
    """Send the caller to ``target`` (exten@context): the automated attendant (C-2)."""

    call_id: str
    target: str


# --- the machine ----------------------------------------------------------------------


def new(call_id: str, agent_id: str, caller: str = "") -> SpecialCall:
    return SpecialCall(call_id=call_id, agent_id=agent_id, caller=caller)


def timer_key(call_id: str, run: int, what: str) -> str:
    return f"{TIMER_PREFIX}:{call_id}:{run}:{what}"


def step(call: SpecialCall, event: SpecialEvent,
         rules: SpecialRules) -> tuple[SpecialCall, list[Effect]]:
    """Apply one event; illegal requests raise StateError with the state unchanged."""
    if isinstance(event, SpecialTimer):
        return _timer(call, event, rules)
    if event.call_id != call.call_id:
        raise StateError("wrong_call", f"event for {event.call_id}, machine of {call.call_id}")
    if isinstance(event, Released):
        return _released(call, event, rules)
    if call.ended:
        raise StateError("call_ended", f"call {call.call_id} has ended")
    if isinstance(event, Start | Warn | Closing) and event.agent_id != call.agent_id:
        raise StateError("not_your_call",
                         f"call {call.call_id} is agent {call.agent_id}'s, not {event.agent_id}'s")
    if call.ending is not None and not isinstance(event, PromptPlayed | CallerSpeech):
        raise StateError("call_ending", f"call {call.call_id} is being ended by {call.ending}")
    if isinstance(event, Start):
        return _start(call, event, rules)
    if isinstance(event, Warn):
        return _warn(call, event, rules)
    if isinstance(event, Closing):
        call = replace(call, closing_at=event.at, closing_wall=event.wall)
        return call, [Notice("closing", call.agent_id, {
            "call_id": call.call_id, "grace_s": rules.closing_grace_s}, std="STD-111")]
    if isinstance(event, CallerSpeech):
        return _speech(call)
    if isinstance(event, Connected):
        if not rules.silent_auto_start or call.spoke or call.procedure is not None:
            return call, []
        # ASSUMPTION (STD-056 "optionally started automatically"): a caller silent for one
        # gap after the opening gets the procedure without the agent asking
        return call, [StartTimer(timer_key(call.call_id, 0, "auto"),
                                 event.at + rules.silent_gap_s)]
    return _played(call, event, rules)


@enforces("STD-056", "STD-057", "STD-059", "STD-060", "STD-067",
          policy=("special_calls.silent_form", "special_calls.silent_prompts",
                  "special_calls.silent_short_repeats"))
def _start(call: SpecialCall, event: Start,
           rules: SpecialRules) -> tuple[SpecialCall, list[Effect]]:
    if event.procedure not in PROCEDURES:
        raise StateError("unknown_procedure",
                         f"{event.procedure!r}; known: {', '.join(PROCEDURES)}")
    if event.procedure == "nuisance":  # each mark is one more statement (C-2)
        return _warn(call, Warn(call.call_id, event.agent_id, event.at, event.wall), rules)
    if call.running and (call.procedure != "nuisance" or call.playing):
        raise StateError("procedure_running", f"{call.procedure} is running on {call.call_id}")
    call = replace(call, procedure=event.procedure, run=call.run + 1, step=0, done=False,
                   cancelled=False, started_wall=event.wall)
    return _play_next(call, rules, [_notice(call, "special_started")])


@enforces("STD-064", policy=("special_calls.nuisance_warnings",))
def _warn(call: SpecialCall, event: Warn,
          rules: SpecialRules) -> tuple[SpecialCall, list[Effect]]:
    if call.running and call.procedure != "nuisance":
        raise StateError("procedure_running", f"{call.procedure} is running on {call.call_id}")
    if call.playing:
        raise StateError("prompt_playing", "the previous statement is still playing")
    if call.warnings >= rules.nuisance_warnings:
        raise StateError("warnings_used", f"all {rules.nuisance_warnings} warnings were given")
    effects: list[Effect] = []
    if call.procedure != "nuisance":
        call = replace(call, procedure="nuisance", run=call.run + 1, step=0, done=False,
                       cancelled=False, started_wall=event.wall)
        effects.append(Logged("number_flag", call.call_id, event.wall, {  # STD-064: flagged
            "number": call.caller, "flag": "nuisance", "agent_id": call.agent_id}))
    call = replace(call, warnings=call.warnings + 1)
    effects.append(_notice(call, "nuisance_warning", warning=call.warnings,
                           of=rules.nuisance_warnings))
    return _play(call, SCRIPT["nuisance"], effects)


def _prompts(call: SpecialCall, rules: SpecialRules) -> tuple[str, ...]:
    if call.procedure == "silent":
        return rules.silent_prompts
    return (SCRIPT[str(call.procedure)],)


def _play(call: SpecialCall, prompt: str,
          effects: list[Effect]) -> tuple[SpecialCall, list[Effect]]:
    call = replace(call, step=call.step + 1, playing=True)
    return call, [*effects, Play(call.call_id, prompt, f"{call.run}:{call.step}")]


def _play_next(call: SpecialCall, rules: SpecialRules,
               effects: list[Effect]) -> tuple[SpecialCall, list[Effect]]:
    return _play(call, _prompts(call, rules)[call.step], effects)


def _played(call: SpecialCall, event: PromptPlayed,
            rules: SpecialRules) -> tuple[SpecialCall, list[Effect]]:
    if event.token != f"{call.run}:{call.step}" or not call.playing:
        return call, []  # a report of an older playback
    call = replace(call, playing=False)
    if call.done or call.ending is not None:
        return call, []
    if call.procedure == "nuisance":
        if call.warnings < rules.nuisance_warnings:
            return call, []
        return _nuisance_final(call, rules)
    last = call.step >= len(_prompts(call, rules))
    wait = pause_after(str(call.procedure), last, rules)
    what = "release" if last else "gap"
    return call, [StartTimer(timer_key(call.call_id, call.run, what), event.at + wait)]


@enforces("STD-056", "STD-059", "STD-060", "STD-067",
          policy=("special_calls.silent_gap_s", "special_calls.silent_release_delay_s",
                  "special_calls.quiet_line_release_delay_s",
                  "special_calls.noisy_line_release_delay_s",
                  "special_calls.wrong_number_release_delay_s"))
def pause_after(procedure: str, last: bool, rules: SpecialRules) -> float:
    """The silence a script keeps after one of its prompts: the gap after each silent-call
    prompt but the last, the release delay after the last (every script's)."""
    if procedure == "silent":
        return rules.silent_release_delay_s if last else rules.silent_gap_s
    return rules.release_delay_s.get(procedure, 0.0)


def script_pauses_s(procedure: str, rules: SpecialRules) -> float:
    """The script's pauses from its start to its release (its prompts' playback adds to
    them): the least time a script that kept its pauses can take."""
    prompts = len(rules.silent_prompts) if procedure == "silent" else 1
    return sum(pause_after(procedure, n == prompts, rules) for n in range(1, prompts + 1))


@enforces("STD-065",
          policy=("special_calls.nuisance_final_action", "special_calls.attendant_target"))
def _nuisance_final(call: SpecialCall,
                    rules: SpecialRules) -> tuple[SpecialCall, list[Effect]]:
    action = rules.nuisance_final_action
    detail = {"call_id": call.call_id, "agent_id": call.agent_id, "number": call.caller,
              "warnings": call.warnings, "action": action}
    board = Notice("nuisance", None, detail, std="STD-065", to_board=True)
    if action == "escalate":  # the duty supervisor takes it (C-10); the call goes on
        return replace(call, done=True), [
            board, Alarm("nuisance_escalated", detail, std="STD-065")]
    call = replace(call, done=True, ending="nuisance")
    if action == "transfer_attendant":
        return call, [board, Transfer(call.call_id, rules.attendant_target)]
    return call, [board, Release(call.call_id, "nuisance")]


def _speech(call: SpecialCall) -> tuple[SpecialCall, list[Effect]]:
    """STD-056: the caller spoke, so the line works: the silent procedure stops."""
    if not call.spoke:
        call = replace(call, spoke=True)
    if call.procedure != "silent" or not call.running:
        return call, [CancelTimer(timer_key(call.call_id, 0, "auto"))] if call.run == 0 else []
    call = replace(call, done=True, cancelled=True)
    return call, [CancelTimer(timer_key(call.call_id, call.run, what))
                  for what in ("gap", "release")] + [_notice(call, "special_cancelled",
                                                             why="caller_speech")]


@enforces("STD-056", "STD-057", "STD-059", "STD-060", "STD-067",
          policy=("special_calls.silent_gap_s", "special_calls.silent_release_delay_s",
                  "special_calls.quiet_line_release_delay_s",
                  "special_calls.noisy_line_release_delay_s",
                  "special_calls.wrong_number_release_delay_s"))
def _timer(call: SpecialCall, event: SpecialTimer,
           rules: SpecialRules) -> tuple[SpecialCall, list[Effect]]:
    try:
        prefix, call_id, run, what = event.key.split(":")
        if prefix != TIMER_PREFIX or what not in ("gap", "release", "auto"):
            raise ValueError(event.key)
        run_no = int(run)
    except ValueError:
        raise StateError("bad_timer", f"not a special-call timer: {event.key!r}") from None
    if call_id != call.call_id:
        raise StateError("wrong_call", f"timer {event.key} is not for call {call.call_id}")
    if what == "auto":
        if call.ended or call.spoke or call.procedure is not None or call.ending is not None:
            return call, []
        call = replace(call, procedure="silent", run=call.run + 1, step=0, done=False,
                       cancelled=False, started_wall=event.wall)
        return _play_next(call, rules, [_notice(call, "special_started", by="system")])
    if call.ended or run_no != call.run or not call.running:
        return call, []  # cancelled or superseded
    if what == "gap":
        return _play_next(call, rules, [])
    call = replace(call, done=True, ending=str(call.procedure))
    return call, [Release(call.call_id, str(call.procedure))]


@enforces("STD-110", "STD-111", "STD-112", policy=("hangup.closing_grace_s", "hangup.strict_mode"))
def _released(call: SpecialCall, event: Released,
              rules: SpecialRules) -> tuple[SpecialCall, list[Effect]]:
    """STD-110..112: judge the release once and record it."""
    if call.ended:
        return call, []
    ended = replace(call, ended=True, playing=False, done=True)
    effects: list[Effect] = [CancelTimer(timer_key(call.call_id, call.run, what))
                             for what in ("gap", "release")] if call.running else []
    if call.run == 0 and rules.silent_auto_start:
        effects.append(CancelTimer(timer_key(call.call_id, 0, "auto")))
    by = event.by
    outcome = None
    if call.procedure is not None and not call.cancelled and call.procedure != "nuisance":
        outcome = call.procedure  # the caller may hang up during the script: still that call
    if call.procedure == "nuisance" and call.warnings:
        outcome = "nuisance"
    verdict: bool | None
    why = ""
    if call.ending is not None:
        verdict, by = True, "system"
    elif by in ("caller", "system") or event.dropped:
        verdict = True  # (STD-110 judges an agent's choice: a dropped line is none)
    elif by == "agent":
        since = None if call.closing_at is None else event.at - call.closing_at
        if since is None:
            why = "no_closing"
        elif rules.strict:
            why = "strict_mode"
        elif since < rules.closing_grace_s:
            why = "within_grace"
        verdict = not why
    else:
        verdict = None  # the link was down: nobody knows who released first
    script_s = None if call.ending is None or call.started_wall is None \
        else round(event.wall - call.started_wall, 3)
    effects.append(ReleaseJudged(call.call_id, verdict, call.ending, by, call.closing_wall,
                                 outcome, script_s,
                                 script_pauses_s(call.ending, rules) if call.ending else None))
    if verdict is False:
        detail = {"call_id": call.call_id, "agent_id": call.agent_id, "why": why,
                  "closing_s": None if call.closing_at is None
                  else round(event.at - call.closing_at, 3)}
        effects += [Alarm("agent_hung_up_first", detail, std="STD-110"),
                    Notice("release_violation", call.agent_id, detail, std="STD-110")]
    return ended, effects


def _notice(call: SpecialCall, kind: str, **extra: object) -> Notice:
    return Notice(kind, call.agent_id, {"call_id": call.call_id, "procedure": call.procedure,
                                        **extra}, std=STD.get(str(call.procedure), ""))


@dataclass(frozen=True)
class ReleaseJudged(DomainEvent):
    """Who released first and whether that was allowed (STD-110..112, C-6); a special-call
    ending also gives the call its outcome (silent, noisy_line, nuisance...). ``compliant``
    is None when nobody knows who released first (the AMI link was down)."""

    call_id: str
    compliant: bool | None
    procedure: str | None  # the script that ended the call, if one did
    released_by: str
    closing_at: float | None  # epoch of the closing, if said
    outcome: str | None = None
    script_s: float | None = None  # a script ended the call: from its start to the release
    script_pauses_s: float | None = None  # ... and the pauses the Policy gives it

    def as_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "uniqueid": self.call_id, "release_compliant": self.compliant,
            "release_procedure": self.procedure, "released_by": self.released_by,
            "closing_at": self.closing_at}
        if self.outcome is not None:
            record["outcome"] = self.outcome
        return record
