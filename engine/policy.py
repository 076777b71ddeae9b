"""Policy: every number of the service standards, with its default, unit and STD id.

The standards (STD-nnn) set numbers: rings, seconds, minutes, working days, counts.
Each lives here exactly once, as a field that declares its unit and the rule it
enforces, so code never holds a literal and a deployment changes a number in one
TOML file. Where the seeds conflict (C-1..C-12) the choice is an enumeration here,
with the shipped default first.

Rings are the seeds' unit of answering time. A ring is one cycle of the national
ringback cadence, which must equal the cadence Asterisk plays (``indications.conf``,
``[general] country=``); ``STOCK_RING_CADENCES_MS`` copies Asterisk 22's stock file,
and ``country = "custom"`` takes ``custom_cadence_ms`` for a PBX with its own tones.
Ring-valued settings stay in rings; the converters (``Policy.rings_to_seconds``,
``ring_limit_seconds(policy)``...) turn them into seconds for timers.

Loading is strict: unknown keys, wrong types ("30" for 30) and out-of-range values
are rejected with a ``PolicyError`` whose message names the dotted key, so a typo
never silently falls back to a default.

Per-queue overrides exist only where a rule allows them (C-4 opening, service-level
target): ``Policy.for_queue(name)`` returns the Policy that queue runs under.

Every field is declared with ``setting(...)``: its unit, STD id and description are
metadata on the model, which callflow/policy_docs.py renders into
``callflow/policy.example.toml``, ``docs/policy.md`` and ``callflow policy``'s table.
"""

from __future__ import annotations

import logging
import math
import re
import string
import tomllib
from collections.abc import Sequence
from datetime import date, time
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.config import JsonDict

from callflow.errors import PolicyError

log = logging.getLogger(__name__)

# Ring cadences (ms on, ms off, ...) of Asterisk 22's stock indications.conf,
# `ringcadence =` of each country section. One ring = one full cycle.
STOCK_RING_CADENCES_MS: dict[str, tuple[int, ...]] = {
    "at": (1000, 5000), "au": (400, 200, 400, 2000), "be": (1000, 3000),
    "bg": (1000, 4000), "br": (1000, 4000), "ch": (1000, 4000), "cl": (1000, 3000),
    "cn": (1000, 4000), "cz": (1000, 4000), "de": (1000, 4000), "dk": (1000, 4000),
    "ee": (1000, 4000), "es": (1500, 3000), "fi": (1000, 4000), "fr": (1500, 3500),
    "gr": (1000, 4000), "hu": (1250, 3750), "id": (1000, 4000), "il": (1000, 3000),
    "in": (400, 200, 400, 2000), "it": (1000, 4000), "jp": (1000, 2000),
    "lt": (1000, 4000), "mx": (2000, 4000), "my": (2000, 4000), "nl": (1000, 4000),
    "no": (1000, 4000), "nz": (400, 200, 400, 2000), "ph": (1000, 4000),
    "pl": (1000, 4000), "pt": (1000, 5000), "ru": (1000, 4000), "se": (1000, 5000),
    "sg": (400, 200, 400, 2000), "th": (1000, 4000), "tw": (1000, 4000),
    "uk": (400, 200, 400, 2000), "us": (2000, 4000), "us-old": (2000, 4000),
    "ve": (1000, 4000), "za": (400, 200, 400, 2000),
}
CUSTOM_COUNTRY = "custom"

# Float noise (e.g. 15.000000000000002 s) must not add a ring.
_RING_EPSILON = 1e-9

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Language = Literal["zh", "en"]
AgentIdentity = Literal["work_number", "name", "none"]
OPENING_PLACEHOLDERS = frozenset({"centre", "agent_no", "agent_name", "department"})
# Outbound campaigns are the task kinds (store.models.TASK_KINDS; a unit test keeps them equal).
CAMPAIGNS = ("callback", "dropped_call", "follow_up", "manual", "named_agent")


def _parse_hhmm(value: object) -> object:
    """TOML 1.0 local times need seconds; "09:00" strings are friendlier, so accept both."""
    if isinstance(value, str):
        try:
            return time.fromisoformat(value)
        except ValueError:
            raise ValueError(f"must be a time HH:MM, got {value!r}") from None
    return value


ClockTime = Annotated[time, BeforeValidator(_parse_hhmm)]


def _parse_optional_hhmm(value: object) -> object:
    """A time of day, or "off" (TOML has no null) for a feature switched off."""
    if isinstance(value, str) and value.strip().lower() == "off":
        return None
    return _parse_hhmm(value)


OptionalClockTime = Annotated[time | None, BeforeValidator(_parse_optional_hhmm)]


def setting(
    default: Any = ...,
    *,
    description: str,
    unit: str = "",
    std: str = "",
    factory: Any = None,
    **constraints: Any,
) -> Any:
    """A Policy field that carries its unit and the STD id it enforces (for docs and tables)."""
    extra: JsonDict = {"unit": unit, "std": std}
    if factory is not None:
        return Field(default_factory=factory, description=description,
                     json_schema_extra=extra, **constraints)
    return Field(default, description=description, json_schema_extra=extra, **constraints)


class Section(BaseModel):
    """Base of every Policy part: immutable, strict types, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Inline(Section):
    """A small value object written as a TOML inline table ({ zh = ..., en = ... })."""


class Label(Inline):
    """A display label in both product languages (C-3: labels configurable, KPIs fixed)."""

    zh: str = setting(description="Chinese label")
    en: str = setting(description="English label")


# --- sections ---------------------------------------------------------------------------


class AnsweringPolicy(Section):
    """Inbound answering (STD-006..009, C-12): how long an agent's phone may ring."""

    ring_limit_rings: int = setting(
        3, unit="rings", std="STD-008", ge=1,
        description="Ring-no-answer timeout of one agent offer; the call then moves on")
    rona_sets_not_ready: bool = setting(
        True, std="STD-008",
        description="An agent whose offer timed out becomes not-ready (ring_no_answer, STD-099)")
    rejection_sets_not_ready: bool = setting(
        True, std="STD-008",
        description="An agent whose phone refused an offer (486 Busy, 603 Decline, a 302 "
                    "forward) becomes not-ready (rejected); else back to ready. Never counted "
                    "as a ring-no-answer")
    agent_release_closing: bool = setting(
        True, std="STD-110",
        description="When the agent hangs up first, the caller hears the standard closing "
                    "before the line is released (off: released at once)")
    apology_after_rings: int = setting(
        3, unit="rings", std="STD-009", ge=0,
        description="A call whose total wait (queue plus all ringing) exceeds this gets the "
                    "late-answer apology opening")
    min_answer_delay_rings: float = setting(
        0, unit="rings", std="C-12", ge=0,
        description="Optional minimum ringing before an answer counts as standard: an "
                    "earlier answer is counted (early answers, STD-007) and not within the "
                    "N-rings standard; 0 = off ('after the 2nd ring' read as a target, not a "
                    "floor)")


class HolidayGreeting(Section):
    """STD-017: a holiday wish that replaces the normal opening on its date."""

    on: str = setting(
        description='"MM-DD" every year, or "YYYY-MM-DD" once', pattern=r"^(\d{4}-)?\d{2}-\d{2}$")
    greeting: str = setting(description="Opening in Chinese")
    greeting_en: str = setting("", description="Opening in English")

    @field_validator("on")
    @classmethod
    def _real_date(cls, value: str) -> str:
        probe = value if len(value) == 10 else f"2000-{value}"  # 2000 is a leap year
        try:
            date.fromisoformat(probe)
        except ValueError:
            raise ValueError(f"not a calendar date: {value!r}") from None
        return value

    def applies(self, day: date) -> bool:
        return day.isoformat().endswith(self.on) if len(self.on) == 5 else (
            day.isoformat() == self.on)


def _check_template(value: str) -> str:
    for _, name, _, _ in string.Formatter().parse(value):
        if name is not None and name not in OPENING_PLACEHOLDERS:
            raise ValueError(f"unknown placeholder {{{name}}}; allowed: "
                             + ", ".join(sorted(OPENING_PLACEHOLDERS)))
    return value


class GreetingsPolicy(Section):
    """Openings (STD-014..018, C-4); every field here may be overridden per queue."""

    language: Language = setting(
        "zh", std="STD-012", description="Language of played prompts and shown scripts")
    centre_name: str = setting(
        "callflow", std="STD-014", description="Centre name filled into {centre}")
    centre_name_en: str = setting(
        "callflow", std="STD-014", description="English centre name")
    opening_template: str = setting(
        "您好,{centre}呼叫中心 {agent_no}号为您服务,请讲!", std="STD-014",
        description="Default opening; placeholders {centre} {agent_no} {agent_name} {department}")
    opening_template_en: str = setting(
        "Hello, {centre} call centre, agent number {agent_no} at your service, "
        "please go ahead!", std="STD-014", description="English opening")
    agent_identity: AgentIdentity = setting(
        "work_number", std="C-4",
        description="How the opening identifies the agent: work number, name or not at all")
    department: str = setting(
        "", std="STD-015", description="Department named in the opening where the template asks")
    holiday_greetings_enabled: bool = setting(
        True, std="STD-017", description="Use holiday_greetings on their dates")
    holiday_greetings: list[HolidayGreeting] = setting(
        std="STD-017", description="Holiday wishes that replace the opening on their dates",
        factory=lambda: [HolidayGreeting(on="01-01", greeting="新年好,请问有什么可帮您?",
                                         greeting_en="Happy New Year, how may I help you?")])

    @field_validator("opening_template", "opening_template_en")
    @classmethod
    def _placeholders(cls, value: str) -> str:
        return _check_template(value)

    def holiday_greeting(self, day: date) -> HolidayGreeting | None:
        """The holiday wish for ``day`` (a one-off date wins over a yearly one), if enabled."""
        if not self.holiday_greetings_enabled:
            return None
        matches = [g for g in self.holiday_greetings if g.applies(day)]
        matches.sort(key=lambda g: len(g.on), reverse=True)
        return matches[0] if matches else None


class WaitingPolicy(Section):
    """Queue waits (STD-047, STD-043 applied to queues by ASSUMPTION)."""

    announcement_interval_s: float = setting(
        15, unit="s", std="STD-047", gt=0,
        description="Progress announcement interval while no agent is free")
    callback_offer_s: float = setting(
        120, unit="s", std="STD-047", gt=0,
        description="Queue wait at which 'keep waiting / be called back' is offered (STD-043)")
    callbacks_enabled: bool = setting(
        True, std="STD-047", description="Offer the callback choice at callback_offer_s")
    caller_hears_while_ringing: Literal["ringback", "moh"] = setting(
        "ringback", std="STD-046",
        description="What the caller hears while an agent's phone rings")
    moh_class: str = setting(
        "default", description="Asterisk music-on-hold class for queue waits")


class HoldPolicy(Section):
    """Hold (STD-040, STD-041, STD-043, C-5)."""

    reminder_s: float = setting(
        15, unit="s", std="STD-041", gt=0,
        description="First 'update the caller' reminder into a hold")
    reminder_repeat_s: float = setting(
        15, unit="s", std="STD-041", ge=0,
        description="Reminder repeats this often after the first; 0 = once")
    limit_s: float = setting(
        30, unit="s", std="STD-040", ge=0, description="Hold breach threshold")
    breach_scope: Literal["episode", "call"] = setting(
        "episode", std="C-5",
        description="limit_s applies to each hold episode, or to all holds of a call together")
    max_wait_s: float = setting(
        120, unit="s", std="STD-043", gt=0,
        description="Hard ceiling of one hold or lookup wait: continue-or-callback is forced")
    auto_retrieve_s: float = setting(
        0, unit="s", std="STD-043", ge=0,
        description="Optional: take the caller off hold automatically after this; 0 = off "
                    "(a hold the system made is retrieved; a softphone's hold is asked back)")
    max_wait_offer: bool = setting(
        True, std="STD-042",
        description="At max_wait_s the held caller hears '1 keep waiting, 2 be called back' "
                    "and may choose by key")
    choice_window_s: float = setting(
        15, unit="s", std="STD-042", gt=0,
        description="How long after that offer the caller's key counts")


class SpecialCallsPolicy(Section):
    """Special calls (STD-056..065, C-1, C-2): scripted endings that are compliant releases."""

    silent_form: Literal["standard", "short"] = setting(
        "standard", std="C-1",
        description="standard = 004's three prompts (STD-056); short = 002's short prompt "
                    "(STD-057)")
    silent_prompts: int = setting(
        3, unit="count", std="STD-056", ge=1, le=3,
        description="Prompts in the standard silent-call procedure")
    silent_short_repeats: int = setting(
        2, unit="count", std="STD-057", ge=1, le=2,
        description="Times the short prompt is said in the short form")
    silent_gap_s: float = setting(
        5, unit="s", std="STD-056", ge=0, description="Silence waited after each prompt")
    silent_release_delay_s: float = setting(
        5, unit="s", std="STD-056", ge=0,
        description="Delay after the last prompt before the line is released")
    silent_auto_start: bool = setting(
        False, std="STD-056",
        description="Start the procedure by itself when no caller speech follows the opening")
    quiet_line_release_delay_s: float = setting(
        5, unit="s", std="STD-059", ge=0,
        description="Release delay after the too-quiet-line script")
    noisy_line_release_delay_s: float = setting(
        5, unit="s", std="STD-060", ge=0,
        description="Release delay after the noisy-line script")
    nuisance_warnings: int = setting(
        3, unit="count", std="STD-064", ge=1, le=3,
        description="Scope statements before the nuisance final action (seed: 2-3)")
    nuisance_final_action: Literal["transfer_attendant", "escalate", "hangup"] = setting(
        "transfer_attendant", std="C-2",
        description="After the last warning: automated attendant, duty supervisor, or release")
    wrong_number_release_delay_s: float = setting(
        5, unit="s", std="STD-067",
        ge=0, description="Release delay after the wrong-number script (ASSUMPTION: as STD-060)")
    attendant_target: str = setting(
        "s@callflow-attendant", std="C-2",
        description="Dialplan exten@context of the automated attendant (自動臺) for transfers")
    nuisance_route_after: int = setting(
        0, unit="count", std="C-2", ge=0,
        description="A number with this many nuisance calls goes straight to the attendant; "
                    "0 = off")
    nuisance_lookback_days: int = setting(
        90, unit="days", std="C-2", ge=1,
        description="How far back nuisance calls of a number are counted (ASSUMPTION)")


class TransfersPolicy(Section):
    """Transfers asked from the agent desktop (STD-049, STD-050)."""

    max_per_call: int = setting(
        3, unit="count", std="STD-049", ge=1,
        description="Transfers one call may go through; a desktop transfer past it is refused "
                    "(a loop guard, ASSUMPTION)")
    backoffice_number: str = setting(
        "", std="STD-049", pattern=r"^\d{0,20}$",
        description="The back office's number, dialled out like an external transfer; "
                    "empty = no back office (a transfer there is refused)")
    backoffice_name: str = setting(
        "后台部门", std="STD-049",
        description="The back office named to the caller (002:683: name the department)")
    queue_names: dict[str, str] = setting(
        factory=dict, std="STD-049",
        description="Department name of each queue said to the caller on a transfer there; "
                    "a queue not listed is named by its id")


class HangupPolicy(Section):
    """Who releases first (STD-110, STD-111, C-6)."""

    closing_grace_s: float = setting(
        2, unit="s", std="STD-111", ge=0,
        description="After the closing, an agent release this long later is compliant")
    strict_mode: bool = setting(
        False, std="C-6",
        description="Count every agent-first release after the closing as a violation")


class IdentityPolicy(Section):
    """The identity gate before personal data is shown (STD-077, STD-078)."""

    method: Literal["questions", "pin", "either"] = setting(
        "either", std="STD-077",
        description="How a caller is verified: the agent's questions, a PIN keyed in "
                    "the IVR, or either")
    pin_in_ivr: bool = setting(
        True, std="STD-077",
        description="Ask a known customer who has a PIN for it before routing "
                    "(with method pin or either)")
    pin_attempts: int = setting(
        3, unit="entries", std="STD-077", ge=1, le=10,
        description="PIN entries allowed before the call is marked failed")
    pin_min_digits: int = setting(
        4, unit="digits", std="STD-077", ge=4, le=12, description="Shortest PIN accepted")
    pin_max_digits: int = setting(
        8, unit="digits", std="STD-077", ge=4, le=12, description="Longest PIN accepted")
    pin_digit_timeout_ms: int = setting(
        5000, unit="ms", std="STD-077", ge=1000, le=30000,
        description="Silence that ends one PIN entry (GET DATA's per-digit wait)")
    pin_ask_timeout_s: float = setting(
        10.0, unit="s", std="STD-077", ge=1, le=120,
        description="After an agent asks for the caller's PIN mid-call, how long the "
                    "request waits for Asterisk to take the caller to the PIN step; then "
                    "it lapses and the agent may ask again")
    personal_fields: list[Literal["account", "address", "id_tail", "given_name",
                                  "numbers"]] = setting(
        factory=lambda: ["account", "address", "id_tail"], std="STD-078",
        description="Customer record fields hidden on the desktop until the caller is "
                    "verified (each reveal is audited)")

    @field_validator("pin_max_digits")
    @classmethod
    def _pin_lengths(cls, value: int, info: ValidationInfo) -> int:
        if value < info.data.get("pin_min_digits", 0):
            raise ValueError("must be at least pin_min_digits")
        return value


class RoutingPolicy(Section):
    """What the core decides when a call arrives or an agent frees up (STD-055, 069-073)."""

    repeat_caller_lookback_days: int = setting(
        30, unit="days", std="STD-073", ge=0,
        description="Earlier contacts of the caller's number shown on the offer")
    callbacks_before_inbound: bool = setting(
        True, std="STD-069",
        description="An agent's own callback tasks are offered before new inbound calls")
    dropped_call_callback: bool = setting(
        True, std="STD-069",
        description="A caller-side drop before the closing creates a callback for the agent")
    named_agent_callback_due_min: float = setting(
        60, unit="min", std="STD-072", gt=0,
        description="Due time of a callback owned by a named agent who was busy (ASSUMPTION)")
    missed_call_callbacks: bool = setting(
        True, std="STD-055",
        description="Each abandoned call with a presented number becomes a callback task")
    default_queue: str = setting(
        "main", std="STD-002",
        description="Queue of calls to a DID that did_queues does not name (logged)")
    did_queues: dict[str, str] = setting(
        factory=dict, std="STD-002",
        description="Queue per dialled number (DID); agents serve the queues the roster lists")
    named_agent_dids: list[str] = setting(
        factory=list, std="STD-071",
        description="DIDs on which the caller is asked for an agent's work number first")
    dropped_call_causes: list[int] = setting(
        factory=lambda: [27, 38, 41, 42, 102], std="STD-069",
        description="Q.850 causes of a caller leg that count as a network drop (27 dest out of "
                    "order, 38 network out of order, 41 temporary failure, 42 congestion, "
                    "102 timer expiry)")


class Disposition(Section):
    """One choice of the wrap-up form (STD-092): what came of the call for the customer."""

    code: str = setting(description="Stable code stored with the call",
                        pattern=r"^[a-z][a-z0-9_]*$")
    label_zh: str = setting(description="Chinese label")
    label_en: str = setting(description="English label")
    follow_up: Literal["none", "general", "fault"] = setting(
        "none", std="STD-086",
        description="This disposition makes a follow-up task for the caller's number, owned "
                    "by the agent: general = due by outbound.followup_general_days (STD-086), "
                    "fault = the next working day (STD-089); none = no task")


def _default_dispositions() -> list[Disposition]:
    pairs = [("resolved", "已解决", "Resolved"), ("follow_up", "需回访", "Follow-up needed"),
             ("not_interested", "不感兴趣", "Not interested"),
             ("wrong_person", "非本人", "Wrong person"),
             ("no_conversation", "未通话", "No conversation (not reached)")]
    return [Disposition(code=c, label_zh=zh, label_en=en,
                        follow_up="general" if c == "follow_up" else "none")
            for c, zh, en in pairs]


class OutboundPolicy(Section):
    """Outbound calls and follow-ups (STD-081..096, C-11)."""

    no_answer_rings: int = setting(
        6, unit="rings", std="STD-081", ge=1,
        description="An unanswered outbound attempt is hung up after this many rings")
    max_attempts: int = setting(
        3, unit="count", std="STD-081", ge=1,
        description="Attempts per contact in a campaign (ASSUMPTION)")
    retry_spacing_min: float = setting(
        30, unit="min", std="STD-081", ge=0,
        description="Minimum gap between attempts to one number (ASSUMPTION)")
    attempts_per_number_per_run: int = setting(
        1, unit="count", std="STD-090", ge=1,
        description="A follow-up run dials a number this often unless rescheduled")
    calling_window_start: ClockTime = setting(
        time(9, 0), unit="HH:MM", std="STD-085",
        description="Earliest local time to call a customer")
    calling_window_end: ClockTime = setting(
        time(21, 0), unit="HH:MM", std="STD-085",
        description="Latest local time to call a customer")
    followup_general_days: float = setting(
        3, unit="days", std="STD-086", ge=0, description="General follow-up call due")
    followup_fault_days: float = setting(
        1, unit="workdays", std="STD-089", ge=0,
        description="Fault follow-up: due on this working day after the call (1 = the next "
                    "working day, 0 = today), done by that day's calling-window end")
    wrapup_required: bool = setting(
        True, std="STD-092",
        description="The wrap-up form must be submitted after every outbound call before "
                    "the agent can be ready again (agents/state.py, the wrap-up gate)")
    wrapup_inbound: bool = setting(
        True, std="STD-092",
        description="Answered inbound calls get the wrap-up form too (disposition and notes "
                    "in ACW, issue 18); what a missing one does: wrapup_missing_inbound")
    wrapup_missing_inbound: Literal["hold", "flag"] = setting(
        "flag", std="STD-092",
        description="An inbound call's form missing when its ACW ends: flag = the ACW ends as "
                    "usual (auto-ready at the limit, the agent's own ready) and the call is "
                    "flagged wrapup_missing; hold = no ready until the form is in (as outbound)")
    wrapup_missing_outbound: Literal["hold", "flag"] = setting(
        "hold", std="STD-092",
        description="An outbound call's form missing: hold = no ready until the form is in "
                    "(STD-092: mandatory before ready; the agent stays in ACW past its limit); "
                    "flag = the ACW ends as usual and the call is flagged wrapup_missing")
    wrapup_missing_alarm: bool = setting(
        True, std="STD-105",
        description="When the ACW limit is reached and the form is still missing: the agent "
                    "stays in after-call work and the board gets a wrapup_missing alarm "
                    "(off: the agent still stays, without an alarm)")
    dispositions: list[Disposition] = setting(
        std="STD-092", factory=_default_dispositions,
        description="The wrap-up form's dispositions (how the call ended for the customer); "
                    "a submitted form must name one of these codes")
    calling_days: Literal["workdays", "all_but_holidays"] = setting(
        "workdays", std="STD-085",
        description="Days customers may be called: the calendar's working days, or every day "
                    "except its holidays (ASSUMPTION)")
    dial_mode: Literal["agent_first", "preview"] = setting(
        "agent_first", std="STD-082",
        description="agent_first: the dialer rings a free agent's softphone, then the "
                    "customer; preview: due tasks go to the agent's desktop, the agent presses "
                    "dial")
    caller_id: str = setting(
        "", pattern=r"^[0-9]{0,32}$",
        description="Number presented to customers (the centre's number); empty = the PBX's "
                    "own")
    caller_ids: dict[str, str] = setting(
        factory=dict,
        description="Per campaign (task kind: callback, dropped_call, follow_up, manual, "
                    "named_agent) number presented instead of caller_id")
    agent_failure_backoff_s: float = setting(
        30, unit="s", std="STD-081", ge=0,
        description="An agent whose own leg failed (softphone refused or did not answer) gets "
                    "no outbound call for this long, and the refunded task is due again no "
                    "sooner, so one broken softphone cannot spin the dialer")
    list_caller_ids: dict[str, str] = setting(
        factory=dict,
        description="Numbers a campaign list may present, by name (the list's caller_id_key "
                    "chooses one); a list with none presents its task kind's number")
    owner_absent_grace_min: float = setting(
        15, unit="min", std="STD-069", ge=0,
        description="A due task whose owner is not logged in goes to the pool this long after "
                    "it fell due (named-agent tasks stay with their agent and alert the board)")

    @field_validator("dispositions")
    @classmethod
    def _disposition_codes(cls, value: list[Disposition]) -> list[Disposition]:
        codes = [d.code for d in value]
        if not codes:
            raise ValueError("at least one disposition is needed")
        dupes = sorted({c for c in codes if codes.count(c) > 1})
        if dupes:
            raise ValueError(f"duplicate disposition codes: {', '.join(dupes)}")
        return value

    def disposition(self, code: str) -> Disposition | None:
        return next((d for d in self.dispositions if d.code == code), None)

    @field_validator("calling_window_end")
    @classmethod
    def _window_order(cls, value: time, info: ValidationInfo) -> time:
        start = info.data.get("calling_window_start")
        if start is not None and value <= start:
            raise ValueError("must be after calling_window_start")
        return value

    @field_validator("list_caller_ids")
    @classmethod
    def _named_numbers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, number in value.items():
            if not name or len(name) > 64:
                raise ValueError(f"a presented number's name must be 1-64 characters: {name!r}")
            if not number.isdigit() or len(number) > 32:
                raise ValueError(f"{name}: caller ID must be 1-32 digits, got {number!r}")
        return value

    @field_validator("caller_ids")
    @classmethod
    def _campaigns(cls, value: dict[str, str]) -> dict[str, str]:
        for campaign, number in value.items():
            if campaign not in CAMPAIGNS:
                raise ValueError(f"unknown campaign {campaign!r}; campaigns are the task kinds "
                                 + ", ".join(CAMPAIGNS))
            if not number.isdigit() or len(number) > 32:
                raise ValueError(f"{campaign}: caller ID must be 1-32 digits, got {number!r}")
        return value


class Reason(Section):
    """A reason an agent is away (busy) or not offered calls (not-ready)."""

    code: str = setting(description="Stable code used in events and KPIs",
                        pattern=r"^[a-z][a-z0-9_]*$")
    label_zh: str = setting(description="Chinese label")
    label_en: str = setting(description="English label")
    max_min: float = setting(
        0, unit="min", std="STD-104", ge=0,
        description="Alert agent and board after this long in the reason; 0 = no limit")
    approval_required: bool = setting(
        False, std="STD-106", description="Needs a supervisor's approval on the board")
    system: bool = setting(
        False, std="STD-099", description="Set only by the engine, never chosen by a person")


def _reason(code: str, zh: str, en: str, *, max_min: float = 0, approval: bool = False,
            system: bool = False) -> Reason:
    return Reason(code=code, label_zh=zh, label_en=en, max_min=max_min,
                  approval_required=approval, system=system)


RING_NO_ANSWER = "ring_no_answer"
UNREACHABLE = "unreachable"
REJECTED = "rejected"  # the phone refused an offer (486, 603, a forward)
LOGGED_IN = "logged_in"  # agents.login_state = not_ready: just logged in, not yet ready
MEAL_MAX_MIN = 30  # STD-104: 「每人用餐时间不超过半小时」


def _default_busy_reasons() -> list[Reason]:
    return [
        _reason("meal", "用餐", "Meal", max_min=MEAL_MAX_MIN),
        _reason("restroom", "洗手间", "Restroom"),
        _reason("leader", "找领导", "With a team leader"),
        _reason("support", "协助其他座席", "Supporting another seat"),
        _reason("forms", "交单", "Handing in forms"),
        _reason("meeting", "会议", "Meeting"),
        _reason("training", "培训", "Training"),
        _reason("away", "离席", "Away from seat", approval=True),
    ]


def _default_not_ready_reasons() -> list[Reason]:
    return [
        _reason(RING_NO_ANSWER, "振铃未接", "Ring no answer", system=True),
        _reason(UNREACHABLE, "话机离线", "Softphone unreachable", system=True),
        _reason(REJECTED, "拒接", "Refused a call", system=True),
        _reason(LOGGED_IN, "已登录", "Logged in", system=True),
        _reason("break", "小休", "Break"),
        _reason("meal", "用餐", "Meal", max_min=MEAL_MAX_MIN),
        _reason("training", "培训", "Training"),
        _reason("meeting", "会议", "Meeting"),
        _reason("back_office", "后台工作", "Back-office work"),
    ]


class StateLabels(Section):
    """Display labels per agent state (C-3): states are defined by behaviour, not labels."""

    logged_out: Label = setting(Label(zh="未登录", en="Logged out"),
                                description="Not logged in")
    ready: Label = setting(Label(zh="就绪", en="Ready"), description="Free for the next call")
    ringing: Label = setting(Label(zh="振铃", en="Ringing"), description="A call is offered")
    on_call: Label = setting(Label(zh="通话中", en="On call"), description="Talking")
    on_hold: Label = setting(Label(zh="保持", en="On hold"), description="Caller on hold")
    acw: Label = setting(Label(zh="话后处理", en="After-call work"),
                         description="Work on the call just ended (the seed's 未就绪; C-3)")
    busy: Label = setting(Label(zh="示忙", en="Busy"),
                          description="Present, away from calls with a reason (STD-097)")
    not_ready: Label = setting(Label(zh="暂停服务", en="Not ready"),
                               description="Set by the engine or chosen with a reason; never "
                                           "labelled 未就绪 (C-3)")

    @field_validator("not_ready")
    @classmethod
    def _not_acw_label(cls, value: Label) -> Label:
        if value.zh == "未就绪":
            raise ValueError("label 未就绪 belongs to after-call work (C-3); choose another")
        return value


class FeatureCodes(Section):
    """Codes dialled from a softphone that reach the agent state machine (no desktop needed)."""

    not_ready: str = setting("*21", description="Go not-ready with not_ready_reason")
    ready: str = setting("*22", description="Go ready")
    busy: str = setting("*23", description="Go busy with busy_reason")
    end_acw: str = setting("*24", description="End after-call work")
    not_ready_reason: str = setting(
        "break", description="Reason recorded for the not-ready code (an agents.not_ready_reasons"
                             " code)")
    busy_reason: str = setting(
        "restroom", std="STD-097",
        description="Reason recorded for the busy code (busy always carries a reason)")

    def codes(self) -> dict[str, str]:
        return {self.not_ready: "not_ready", self.ready: "ready", self.busy: "busy",
                self.end_acw: "end_acw"}


class AgentsPolicy(Section):
    """Agent states and work time (STD-097..107, C-3, C-9)."""

    acw_limit_s: float = setting(
        60, unit="s", std="STD-100", ge=0,
        description="After-call work of one call ends here (0 = no ACW)")
    acw_auto_ready: bool = setting(
        True, std="STD-100",
        description="At acw_limit_s the agent becomes ready by itself (else: alarm only)")
    absence_flag_min: float = setting(
        20, unit="min", std="STD-106", gt=0,
        description="Flag an unapproved absence (approval-required busy reason) this long")
    absence_refused_state: Literal["ready", "busy"] = setting(
        "ready", std="STD-106",
        description="Where a refused absence sends the agent: ready (back to work, calls "
                    "offered again) or busy (stays away, flagged unapproved at once)")
    acw_extension_s: float = setting(
        60, unit="s", std="STD-100", gt=0,
        description="Seconds a supervisor's grant adds to the ACW the agent asked to extend "
                    "(one request per ACW)")
    inactivity_logout_min: float = setting(
        30, unit="min", std="STD-102", ge=0,
        description="Log out a ready, not-ready or busy agent whose desktop had no input this "
                    "long and is not left on the service page; 0 = never")
    login_state: Literal["ready", "not_ready"] = setting(
        "ready", std="STD-099",
        description="Where a desktop or API log-in puts the agent: ready, or not_ready with "
                    "the system reason logged_in (the agent then makes themselves ready)")
    meal_concurrent_cap: int = setting(
        0, unit="count", std="STD-104", ge=0,
        description="Agents on a meal break (busy or not-ready, reason meal) at once: one "
                    "more is refused (meal_cap_reached) until one is back; the roster is "
                    "one team until it carries teams; 0 = no cap")
    busy_reasons: list[Reason] = setting(
        std="STD-097", factory=_default_busy_reasons,
        description="Reasons an agent may choose for busy (示忙); meal max 30 min (STD-104)")
    not_ready_reasons: list[Reason] = setting(
        std="STD-099", factory=_default_not_ready_reasons,
        description="Not-ready reasons: system ones set by the engine, the rest agent-chosen")
    state_labels: StateLabels = setting(
        std="C-3", factory=StateLabels, description="Display labels per state")
    feature_codes: FeatureCodes = setting(
        factory=FeatureCodes, description="Softphone feature codes")

    @field_validator("busy_reasons", "not_ready_reasons")
    @classmethod
    def _unique_codes(cls, value: list[Reason], info: ValidationInfo) -> list[Reason]:
        codes = [r.code for r in value]
        dupes = sorted({c for c in codes if codes.count(c) > 1})
        if dupes:
            raise ValueError(f"duplicate reason codes: {', '.join(dupes)}")
        if not value:
            raise ValueError("at least one reason is needed")
        if info.field_name == "busy_reasons" and any(r.system for r in value):
            raise ValueError("busy reasons are chosen by people; system = true is not allowed")
        if info.field_name == "not_ready_reasons":
            missing = {RING_NO_ANSWER, UNREACHABLE, REJECTED} - {r.code for r in value
                                                                 if r.system}
            if missing:
                raise ValueError("the engine needs system reasons "
                                 + ", ".join(sorted(missing)))
        return value

    @field_validator("feature_codes")
    @classmethod
    def _feature_reasons(cls, value: FeatureCodes, info: ValidationInfo) -> FeatureCodes:
        busy = {r.code for r in info.data.get("busy_reasons", [])}
        not_ready = {r.code for r in info.data.get("not_ready_reasons", []) if not r.system}
        if busy and value.busy_reason not in busy:
            raise ValueError(f"busy_reason {value.busy_reason!r} is not a busy reason code")
        if not_ready and value.not_ready_reason not in not_ready:
            raise ValueError(f"not_ready_reason {value.not_ready_reason!r} is not an "
                             "agent-chosen not-ready reason code")
        if len(value.codes()) != 4:
            raise ValueError("the four feature codes must differ")
        return value

    @model_validator(mode="after")
    def _login_reason(self) -> AgentsPolicy:
        if self.login_state == "not_ready" and not any(
                r.code == LOGGED_IN and r.system for r in self.not_ready_reasons):
            raise ValueError(f"login_state not_ready needs the system not-ready reason "
                             f"{LOGGED_IN!r} in not_ready_reasons")
        return self

    def busy_reason(self, code: str) -> Reason | None:
        return next((r for r in self.busy_reasons if r.code == code), None)

    def not_ready_reason(self, code: str) -> Reason | None:
        return next((r for r in self.not_ready_reasons if r.code == code), None)


class KpiPolicy(Section):
    """KPI thresholds and targets (KPI definitions of the standards)."""

    short_abandon_s: float = setting(
        5, unit="s", std="KPI", ge=0,
        description="Caller hang-ups within this of reaching routing are short abandons")
    service_level_threshold_rings: int = setting(
        3, unit="rings", std="KPI", ge=1,
        description="Service level counts calls answered with total wait within this")
    service_level_target_pct: float = setting(
        80, unit="%", std="KPI", ge=0, le=100,
        description="Service-level target (per queue)")
    average_answer_rings_target: float = setting(
        2, unit="rings", std="STD-006", gt=0,
        description="Alert when an interval's average answer ring exceeds this")
    within_rings_threshold: int = setting(
        3, unit="rings", std="STD-008", ge=1, description="Within-N-rings rate threshold")
    within_rings_target_pct: float = setting(
        100, unit="%", std="STD-008", ge=0, le=100, description="Within-N-rings rate target")
    acw_average_target_s: float = setting(
        60, unit="s", std="STD-100", gt=0,
        description="Alert when an agent's running average ACW exceeds this")
    talk_average_target_s: float = setting(
        180, unit="s", std="STD-101", gt=0, description="Average talk time (ACD) target")
    reply_rate_target_pct: float = setting(
        100, unit="%", std="STD-133", ge=0, le=100,
        description="Every customer issue gets a reply: the tickets' reply-rate target")
    report_interval_min: int = setting(
        15, unit="min", std="STD-006", ge=1, le=1440,
        description="Reporting interval for the average-answer-ring alert (ASSUMPTION)")


class CalendarPolicy(Section):
    """Business calendar that turns working days and working hours into due times."""

    timezone: str = setting(
        "Asia/Shanghai", std="STD-085",
        description="IANA zone of the centre: calling window, shifts, working days, holidays")
    workdays: list[Weekday] = setting(
        std="STD-122", factory=lambda: ["mon", "tue", "wed", "thu", "fri"],
        description="Working weekdays (ASSUMPTION)")
    work_start: ClockTime = setting(
        time(9, 0), unit="HH:MM", std="STD-122", description="Start of working hours")
    work_end: ClockTime = setting(
        time(18, 0), unit="HH:MM", std="STD-126",
        description="End of working hours: working-hour and working-day ticket clocks run "
                    "only between work_start and work_end of working days")
    holidays: list[date] = setting(
        std="STD-122", factory=list, description="Public holidays (not working days)")
    extra_workdays: list[date] = setting(
        std="STD-122", factory=list,
        description="Weekend days that are working days (e.g. 调休 make-up days)")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("work_end")
    @classmethod
    def _after_start(cls, value: time, info: ValidationInfo) -> time:
        start = info.data.get("work_start")
        if start is not None and value <= start:
            raise ValueError("must be after work_start")
        return value

    @field_validator("workdays")
    @classmethod
    def _some_workdays(cls, value: list[Weekday]) -> list[Weekday]:
        if not value or len(set(value)) != len(value):
            raise ValueError("needs at least one weekday, each once")
        return value

    def is_workday(self, day: date) -> bool:
        if day in self.holidays:
            return False
        return day in self.extra_workdays or WEEKDAYS[day.weekday()] in self.workdays


TICKET_TYPES = ("enquiry", "back_office", "complaint_simple", "complaint_complex",
                "suggestion", "fault")
#: The clocks a customer class may set otherwise (tickets.deadlines_by_class, STD-123).
CLASS_CLOCK_KEYS = ("enquiry_reply_workdays", "backoffice_response_workdays",
                    "form_to_handler_work_h", "handler_result_workdays",
                    "complaint_simple_answer_h", "complaint_complex_answer_h",
                    "complaint_followup_h", "complaint_result_workdays")


class TicketsPolicy(Section):
    """Ticket clocks and escalation (STD-122..STD-127, STD-134, STD-137).

    ``*_h`` are clock hours (the seeds count 小时 for them), ``*_work_h`` working hours
    and ``*_workdays`` working days on the business calendar ([calendar]: working days,
    holidays, work_start..work_end). A working day is ``work_end - work_start`` working
    hours, so "1 working day" from Friday 17:50 is the next working day at 17:50."""

    enquiry_reply_workdays: float = setting(
        2, unit="workdays", std="STD-124", ge=0, le=60,
        description="Enquiry not answerable at once (and suggestion): reply within")
    backoffice_response_workdays: float = setting(
        1, unit="workdays", std="STD-122", ge=0, le=60,
        description="Issue needing back-office help: response within")
    form_to_handler_work_h: float = setting(
        2, unit="work_h", std="STD-126", ge=0, le=240,
        description="Back-office / fault form reaches its handler within")
    handler_result_workdays: float = setting(
        2, unit="workdays", std="STD-126", ge=0, le=60,
        description="Back-office / fault handler returns a result within")
    complaint_simple_answer_h: float = setting(
        2, unit="h", std="STD-123", ge=0, le=720,
        description="Simple complaint: the clear answer promised on the call, within")
    complaint_complex_answer_h: float = setting(
        24, unit="h", std="STD-123", ge=0, le=720,
        description="Complex complaint: the clear answer promised on the call, within")
    complaint_followup_h: float = setting(
        24, unit="h", std="STD-134", ge=0, le=720,
        description="Complaint follow-up contact (call or visit) within, from logging")
    complaint_result_workdays: float = setting(
        5, unit="workdays", std="STD-134", ge=0, le=60,
        description="Complaint: handling result to the customer (closed) within, from "
                    "logging (STD-124: 3-5 working days)")
    customer_test_h: float = setting(
        24, unit="h", std="STD-127", ge=0, le=720,
        description="A ticket awaiting the customer's test result counts as solved after")
    escalation_after_h: float = setting(
        24, unit="h", std="STD-125", gt=0, le=720,
        description="A ticket unresolved this long after logging escalates even with no "
                    "deadline missed")
    escalation_interval_h: float = setting(
        24, unit="h", std="STD-125", gt=0, le=720,
        description="Only when there is no daily check (daily_check_at = \"off\"): a ticket "
                    "still unresolved this long after one escalation step goes to the next "
                    "level. With a daily check every step falls at a check instead")
    escalation_chain: list[str] = setting(
        std="STD-137", factory=lambda: ["shift_lead", "department_manager"],
        description="Levels an unresolved ticket escalates to, in order, one step at a time")
    check_interval_s: float = setting(
        30, unit="s", std="STD-125", gt=0, le=3600,
        description="How often the open tickets are checked for steps and lapsed tests "
                    "(an escalation fires at most this late)")
    text_max_chars: int = setting(
        4000, unit="chars", std="STD-130", ge=100, le=100000,
        description="Longest description or note a ticket takes (longer is refused)")
    close_needs_followup: list[str] = setting(
        std="STD-134", factory=lambda: ["complaint_simple", "complaint_complex"],
        description="Ticket types whose closing needs a follow-up call and the customer's "
                    "confirmation")
    followup_confirm_dispositions: list[str] = setting(
        std="STD-134", factory=lambda: ["resolved"],
        description="Wrap-up dispositions of a ticket's follow-up call that mean the customer "
                    "confirmed: the ticket closes; any other keeps it awaiting confirmation")
    repeat_view_tickets: int = setting(
        5, unit="count", std="STD-073", ge=0, le=50,
        description="Open tickets of the caller the desktop's repeat-caller view shows when "
                    "the call rings (most urgent first)")
    repeat_view_calls: int = setting(
        5, unit="count", std="STD-073", ge=0, le=50,
        description="Recent calls of the caller the repeat-caller view shows (newest first, "
                    "within routing.repeat_caller_lookback_days)")
    deadlines_by_class: dict[str, dict[str, float]] = setting(
        std="STD-123", factory=lambda: {"standard": {}, "vip": {}},
        description="Deadline table by customer class (STD-123: the promised time follows "
                    "the complaint class and the customer class): class -> {clock key of "
                    "this section -> value in its unit}; a key not given keeps the number "
                    "above. The classes listed are the ones a customer or ticket may carry")
    default_customer_class: str = setting(
        "standard", std="STD-123",
        description="Class of a ticket whose caller has no customer record or no class")
    daily_check_at: OptionalClockTime = setting(
        time(9, 30), unit="HH:MM", std="STD-125",
        description="Local time of the daily check of open tickets on each working day "
                    "(overdue, due today, unassigned, open too long), listed to the board. "
                    "Escalation steps fall at these checks: the first at the first check "
                    "after a missed deadline or escalation_after_h, each next at the next "
                    "check (STD-125). \"off\": no daily check, steps escalation_interval_h "
                    "apart")
    daily_check_open_h: float = setting(
        24, unit="h", std="STD-125", gt=0, le=720,
        description="The daily check lists the tickets open longer than this")

    @field_validator("escalation_chain")
    @classmethod
    def _chain(cls, value: list[str]) -> list[str]:
        if not value or len(set(value)) != len(value) or any(not v for v in value):
            raise ValueError("needs at least one level, each once")
        return value

    @field_validator("close_needs_followup")
    @classmethod
    def _known_types(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(TICKET_TYPES))
        if unknown:
            raise ValueError(f"unknown ticket types {unknown}; known: {', '.join(TICKET_TYPES)}")
        return value

    @field_validator("deadlines_by_class")
    @classmethod
    def _class_table(cls, value: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        for name, overrides in value.items():
            if not re.fullmatch(r"[a-z][a-z0-9_]{0,15}", name):
                raise ValueError(f"customer class {name!r}: 1-16 of a-z 0-9 _")
            unknown = sorted(set(overrides) - set(CLASS_CLOCK_KEYS))
            if unknown:
                raise ValueError(f"class {name}: unknown clock keys {unknown}; known: "
                                 f"{', '.join(CLASS_CLOCK_KEYS)}")
            bad = sorted(k for k, v in overrides.items() if not 0 <= v <= 720)
            if bad:
                raise ValueError(f"class {name}: {bad} must be 0..720")
        return value

    @model_validator(mode="after")
    def _default_class_listed(self) -> TicketsPolicy:
        if self.default_customer_class not in self.deadlines_by_class:
            raise ValueError(f"default_customer_class {self.default_customer_class!r} is not "
                             f"in deadlines_by_class ({', '.join(self.deadlines_by_class)})")
        return self


class Penalties(Section):
    """Outbound penalty schedule in points (the seed counts yuan, 003:222, 003:229-236)."""

    non_standard_phrase: int = setting(10, unit="points", std="STD-119", ge=0,
                                       description="Non-standard phrase or forbidden word")
    speaking_fast_min: int = setting(5, unit="points", std="STD-119", ge=0,
                                     description="Speaking too fast, least")
    speaking_fast_max: int = setting(20, unit="points", std="STD-119", ge=0,
                                     description="Speaking too fast, most")
    hangup_on_caller: int = setting(30, unit="points", std="STD-119", ge=0,
                                    description="Hanging up on a caller who cannot hear")
    service_without_consent: int = setting(50, unit="points", std="STD-119", ge=0,
                                           description="Opening a service without consent")
    data_leak_per_customer: int = setting(50, unit="points", std="STD-119", ge=0,
                                          description="Leaking customer data, per customer")
    abuse_after_hangup: int = setting(30, unit="points", std="STD-119", ge=0,
                                      description="Grumbling or abuse after hang-up")
    missing_disclosure: int = setting(50, unit="points", std="STD-119", ge=0,
                                      description="No activation time, fees or cancellation "
                                                  "stated: unqualified")
    zero_score: int = setting(50, unit="points", std="STD-119", ge=0,
                              description="QA score of zero: unqualified")

    @field_validator("speaking_fast_max")
    @classmethod
    def _range(cls, value: int, info: ValidationInfo) -> int:
        low = info.data.get("speaking_fast_min")
        if low is not None and value < low:
            raise ValueError("must be >= speaking_fast_min")
        return value


class QaPolicy(Section):
    """Recording and quality review (STD-114..120, C-8)."""

    record_inbound: bool = setting(True, std="STD-114", description="Record inbound calls")
    record_outbound: bool = setting(True, std="STD-114", description="Record outbound calls")
    min_monitored_per_agent_month: int = setting(
        5, unit="count", std="STD-115", ge=1,
        description="QA monitored calls per agent per month, at least (C-8)")
    include_flagged: bool = setting(
        True, std="STD-115", description="The sampler adds every flagged call")
    penalties: Penalties = setting(std="STD-119", factory=Penalties,
                                   description="Outbound penalty points")


class ScoringCriteria(Section):
    """The QA scoring sheet's criteria, each with its most points (STD-116); a review scores
    every one from 0 to its max. The listener-only rules are criteria too, so one sheet
    holds the whole review. The split of 100 points is an ASSUMPTION (the seeds name the
    criteria, not their weights)."""

    service_wording: int = setting(16, unit="points", std="STD-116", ge=0,
                                   description="Service wording (服务用语)")
    service_attitude: int = setting(16, unit="points", std="STD-116", ge=0,
                                    description="Service attitude (服务态度)")
    tone_intonation: int = setting(12, unit="points", std="STD-116", ge=0,
                                   description="Tone and intonation (语气语调)")
    need_summary: int = setting(10, unit="points", std="STD-116", ge=0,
                                description="Summing up the customer's need")
    adaptability: int = setting(10, unit="points", std="STD-116", ge=0,
                                description="Adaptability (应变能力)")
    standard_phrases: int = setting(4, unit="points", std="STD-116", ge=0,
                                    description="Standard opening, closing and linking phrases")
    no_forbidden_phrases: int = setting(4, unit="points", std="STD-036", ge=0,
                                        description="No forbidden phrases")
    late_apology: int = setting(4, unit="points", std="STD-009", ge=0,
                                description="Apology when the answer was late")
    hold_etiquette: int = setting(4, unit="points", std="STD-039", ge=0,
                                  description="Asked before the hold, thanked/apologised after "
                                              "(STD-039, STD-044)")
    hold_progress: int = setting(4, unit="points", std="STD-041", ge=0,
                                 description="Progress told to the held caller at 15 s")
    identity_check: int = setting(4, unit="points", std="STD-077", ge=0,
                                  description="Caller's identity checked before account matters")
    anything_else: int = setting(4, unit="points", std="STD-033", ge=0,
                                 description="Asked 'anything else?' before the closing")
    special_call_script: int = setting(4, unit="points", std="STD-056", ge=0,
                                       description="Special-call scripts said as written")
    speech_rate: int = setting(4, unit="points", std="STD-013", ge=0,
                               description="Speech rate")


class RecordingsPolicy(Section):
    """Call recordings and QA review (STD-114..119). Whether calls are recorded, the QA
    sample size and the penalty points live in ``qa`` (record_inbound/record_outbound,
    min_monitored_per_agent_month, include_flagged, penalties): each number once."""

    retention_days: int = setting(
        365, unit="days", std="STD-114", ge=1,
        description="A recording is kept this long, then its file is deleted by the daily "
                    "purge and its row marked purged (ASSUMPTION)")
    purge_at: ClockTime = setting(
        time(3, 30), unit="HH:MM", std="STD-114",
        description="Local time of the daily retention purge (ASSUMPTION)")
    criteria: ScoringCriteria = setting(
        std="STD-116", factory=ScoringCriteria,
        description="The scoring sheet: most points per criterion")


class SupervisionPolicy(Section):
    """Who supervises and how to reach them (STD-005, STD-066, C-10)."""

    reconcile_interval_s: float = setting(
        5.0, unit="s", std="STD-147", gt=0,
        description="How often the engine compares its calls and agents with Asterisk's "
                    "channel listing and corrects drift (a state_corrected alarm each); also "
                    "at every AMI resync")
    pbx_check_interval_s: float = setting(
        0.5, unit="s", std="STD-147", gt=0, le=2,
        description="How often the engine checks that the Asterisk it runs is alive; a dead "
                    "or restarted Asterisk is seen within this, alarmed (pbx_down) and started "
                    "again")
    pbx_restart_backoff_max_s: float = setting(
        8.0, unit="s", std="STD-147", gt=0,
        description="Longest pause between two failed attempts to start Asterisk again (the "
                    "pause doubles from pbx_check_interval_s up to this)")
    pbx_max_restarts: int = setting(
        5, unit="count", std="STD-147", ge=0,
        description="Restarts of Asterisk allowed within pbx_restart_window_s; past it the "
                    "engine stops trying and raises pbx_gave_up (a PBX that keeps dying needs "
                    "a person)")
    pbx_restart_window_s: float = setting(
        300.0, unit="s", std="STD-147", gt=0, description="The window of pbx_max_restarts")
    softphone_grace_s: float = setting(
        15.0, unit="s", std="STD-099", ge=0,
        description="After a (re)connection to Asterisk, how long a desk's softphone may stay "
                    "unqualified or unreachable before it counts as unreachable (Asterisk "
                    "qualifies contacts again after it starts: no false alarm at every start)")
    take_back_fallback_callers: bool = setting(
        True, std="STD-001",
        description="When the engine is back after an outage, callers still waiting in the "
                    "dialplan's fallback queue are taken back into its own flow (its routing "
                    "rules, ring limits and agent states); off: they stay in the fallback "
                    "queue until answered or gone")
    records_lookback_h: float = setting(
        24.0, unit="h", std="STD-147", gt=0,
        description="At engine start and every AMI resync, calls in Asterisk's own records "
                    "(CEL) since the engine last looked, but at most this far back, that the "
                    "store does not have (the fallback queue served them while the engine "
                    "was away) are entered")
    compliance_window_min: float = setting(
        60, unit="min", std="STD-147", gt=0,
        description="The board's compliance trend alarm looks at each rule's verdicts of "
                    "this last window: under its target, compliance_below_target is raised "
                    "once, again only after the rule was back on target")
    compliance_target_pct: float = setting(
        90, unit="%", std="STD-147", ge=0, le=100,
        description="Compliance target of every rule but the ring limit (STD-008, whose "
                    "target is kpi.within_rings_target_pct) for the trend alarm")


class SecurityPolicy(Section):
    """Logins and sessions: who may keep trying, for how long a login lasts (STD-078).

    The standards require that customer data follows the roles (STD-078) but set no
    numbers for guessing passwords or session lengths; every value here is an
    ASSUMPTION sized for a contact centre: a mistyped password costs nothing, a guesser
    gets a few tries an hour, and an agent's desktop stays logged in for a shift."""

    user_free_failures: int = setting(
        3, unit="count", std="STD-078", ge=0,
        description="Wrong passwords for one username answered at once; after that each "
                    "try waits the backoff (ASSUMPTION)")
    address_free_failures: int = setting(
        10, unit="count", std="STD-078", ge=0,
        description="Wrong passwords from one client address answered at once (a whole "
                    "office may share one address) (ASSUMPTION)")
    backoff_s: float = setting(
        1.0, unit="s", std="STD-078", gt=0,
        description="Wait after the first failure past the free ones; it doubles with each "
                    "further failure (ASSUMPTION)")
    backoff_max_s: float = setting(
        60.0, unit="s", std="STD-078", gt=0,
        description="The longest backoff wait (ASSUMPTION)")
    user_lockout_failures: int = setting(
        10, unit="count", std="STD-078", ge=1,
        description="Failures in a row that lock a username for lockout_min, known or not "
                    "(ASSUMPTION)")
    address_lockout_failures: int = setting(
        30, unit="count", std="STD-078", ge=1,
        description="Failures in a row that lock a client address for lockout_min "
                    "(ASSUMPTION)")
    lockout_min: float = setting(
        15, unit="min", std="STD-078", gt=0,
        description="How long a locked username or address is refused without a password "
                    "check (ASSUMPTION)")
    failure_window_min: float = setting(
        15, unit="min", std="STD-078", gt=0,
        description="A username or address with no failure for this long starts afresh "
                    "(ASSUMPTION)")
    session_idle_min: float = setting(
        30, unit="min", std="STD-078", gt=0,
        description="A session unused this long ends; every use renews it (an open "
                    "websocket is a use) (ASSUMPTION)")
    session_max_h: float = setting(
        12, unit="h", std="STD-078", gt=0,
        description="A session ends this long after its login whatever its use: one shift "
                    "(ASSUMPTION)")
    session_check_s: float = setting(
        15, unit="s", std="STD-078", gt=0,
        description="An open websocket re-checks its session this often and closes once it "
                    "was revoked or expired (ASSUMPTION)")

    @field_validator("backoff_max_s")
    @classmethod
    def _backoff_bound(cls, value: float, info: ValidationInfo) -> float:
        first = info.data.get("backoff_s")
        if first is not None and value < first:
            raise ValueError("must be at least backoff_s")
        return value


class StorePolicy(Section):
    """The store's local journal and its watch (issue 14: a store outage loses nothing,
    and is seen). Every record goes to an append-only journal in the state directory
    before the database (store/journal.py, store/writer.py); a watcher raises
    ``store_unavailable`` when writes fail or stall (store/watch.py)."""

    journal_max_bytes: int = setting(
        64 * 1024 * 1024, unit="bytes", std="STD-147", ge=64 * 1024,
        description="Most bytes of records the journal holds that are not yet in the "
                    "database; past it records are kept in memory only (a crash would lose "
                    "them) and store_journal_full is raised, until the journal drains")
    journal_segment_bytes: int = setting(
        1024 * 1024, unit="bytes", std="STD-147", ge=4096,
        description="A journal file is closed at this size and deleted once every record in "
                    "it is in the database")
    fsync_window_ms: float = setting(
        5.0, unit="ms", std="STD-147", ge=0, le=1000,
        description="Records written within this window share one fsync (group commit); "
                    "a record reaches the database only once fsync'd (bench/bench_journal.py)")
    batch_max_records: int = setting(
        100, unit="records", std="STD-147", ge=1, le=10000,
        description="Most records the writer puts in one database transaction (group "
                    "commit: the records waiting, fsync'd, go in together with their "
                    "exactly-once marks); 1 is one transaction a record. Keep a batch's "
                    "time well under store.stall_s (the watcher counts a longer write as "
                    "a stall)")
    retry_max_s: float = setting(
        5.0, unit="s", std="STD-147", gt=0,
        description="Longest wait between two attempts at a write the database could not "
                    "take (the wait doubles from 0.1 s); a good probe retries at once")
    check_interval_s: float = setting(
        0.5, unit="s", std="STD-147", gt=0,
        description="How often the watcher looks at the writer (failed or stalled writes)")
    probe_interval_s: float = setting(
        2.0, unit="s", std="STD-147", gt=0,
        description="How often the watcher tries a small write of its own while the writer "
                    "has nothing to write, or while the store is down (to see it come back)")
    probe_timeout_s: float = setting(
        1.0, unit="s", std="STD-147", gt=0,
        description="How long a probe waits for the database (a lock, a connection) before "
                    "it counts as failed")
    stall_s: float = setting(
        2.0, unit="s", std="STD-147", gt=0,
        description="A write still waiting after this long counts as a failure (a locked "
                    "SQLite file makes a write wait for its busy timeout, 30 s, first)")
    replay_wait_s: float = setting(
        30.0, unit="s", std="STD-147", ge=0,
        description="At start, how long the service waits for the journal's records to reach "
                    "the database before going on (features read the store when they start)")


class SurveyPolicy(Section):
    """The post-call IVR survey (STD-120, issue 18): after the agent hangs up, the caller
    rates the call 1-5 per question (dialplan/inbound.py, rules in engine/survey.py)."""

    enabled: bool = setting(
        False, std="STD-120",
        description="Offer the survey to a caller whose agent hung up first (off: the "
                    "caller hears the goodbye and is released)")
    questions: list[str] = setting(
        std="STD-120", factory=lambda: ["service"],
        description="Question codes asked in order; each is the prompt survey_<code> of the "
                    "language pack (1-5 per question)")
    answer_timeout_s: float = setting(
        6, unit="s", std="STD-120", gt=0, le=60,
        description="Silence after a question this long = no response to it")
    inter_digit_s: float = setting(
        1.5, unit="s", std="STD-120", gt=0, le=10,
        description="After a key, a second key within this long makes the answer several "
                    "digits (garbage, asked again)")
    reasks: int = setting(
        1, unit="count", std="STD-120", ge=0, le=3,
        description="A key that is not 1-5 (0, 6-9, *, #, several digits) asks the question "
                    "again this often, then counts as no response")
    call_kinds: list[str] = setting(
        std="STD-120", factory=lambda: ["inbound"],
        description="Which calls are surveyed: inbound, and/or the outbound task kinds "
                    "(callback, dropped_call, follow_up, manual, named_agent): the customer of "
                    "an answered outbound call whose agent hung up first is sent to the same "
                    "survey")

    @field_validator("call_kinds")
    @classmethod
    def _call_kinds(cls, value: list[str]) -> list[str]:
        known = ("inbound", *CAMPAIGNS)
        for kind in value:
            if kind not in known:
                raise ValueError(f"unknown call kind {kind!r}; kinds are " + ", ".join(known))
        if len(set(value)) != len(value):
            raise ValueError("a call kind is named twice")
        return value

    @field_validator("questions")
    @classmethod
    def _question_codes(cls, value: list[str]) -> list[str]:
        for code in value:
            if not re.fullmatch(r"[a-z][a-z0-9_]{0,31}", code):
                raise ValueError(f"{code!r}: a question code is a-z, 0-9, _ (max 32)")
        if len(set(value)) != len(value) or not 1 <= len(value) <= 5:
            raise ValueError("one to five distinct question codes")
        return value


class QueuePolicy(Section):
    """Per-queue overrides: only where a rule allows them (C-4 openings, service level)."""

    language: Language | None = setting(None, std="STD-012", description="greetings.language")
    opening_template: str | None = setting(
        None, std="C-4", description="greetings.opening_template")
    opening_template_en: str | None = setting(
        None, std="C-4", description="greetings.opening_template_en")
    agent_identity: AgentIdentity | None = setting(
        None, std="C-4", description="greetings.agent_identity")
    department: str | None = setting(None, std="C-4", description="greetings.department")
    holiday_greetings_enabled: bool | None = setting(
        None, std="C-4", description="greetings.holiday_greetings_enabled")
    service_level_target_pct: float | None = setting(
        None, unit="%", std="KPI", ge=0, le=100, description="kpi.service_level_target_pct")

    @field_validator("opening_template", "opening_template_en")
    @classmethod
    def _placeholders(cls, value: str | None) -> str | None:
        return value if value is None else _check_template(value)


class Policy(Section):
    """Every number of the standards; one instance per deployment (see module docstring)."""

    country: str = setting(
        "cn", std="STD-008",
        description='Ring cadence country; must equal indications.conf [general] country= '
                    '("custom" uses custom_cadence_ms)')
    custom_cadence_ms: list[int] = setting(
        unit="ms", std="STD-008", factory=list, validate_default=True,
        description="Ring cadence on,off[,on,off] for country = \"custom\"")
    answering: AnsweringPolicy = setting(factory=AnsweringPolicy, description="")
    greetings: GreetingsPolicy = setting(factory=GreetingsPolicy, description="")
    waiting: WaitingPolicy = setting(factory=WaitingPolicy, description="")
    hold: HoldPolicy = setting(factory=HoldPolicy, description="")
    special_calls: SpecialCallsPolicy = setting(factory=SpecialCallsPolicy, description="")
    hangup: HangupPolicy = setting(factory=HangupPolicy, description="")
    transfers: TransfersPolicy = setting(factory=TransfersPolicy, description="")
    routing: RoutingPolicy = setting(factory=RoutingPolicy, description="")
    identity: IdentityPolicy = setting(factory=IdentityPolicy, description="")
    outbound: OutboundPolicy = setting(factory=OutboundPolicy, description="")
    agents: AgentsPolicy = setting(factory=AgentsPolicy, description="")
    kpi: KpiPolicy = setting(factory=KpiPolicy, description="")
    calendar: CalendarPolicy = setting(factory=CalendarPolicy, description="")
    tickets: TicketsPolicy = setting(factory=TicketsPolicy, description="")
    qa: QaPolicy = setting(factory=QaPolicy, description="")
    recordings: RecordingsPolicy = setting(factory=RecordingsPolicy, description="")
    supervision: SupervisionPolicy = setting(factory=SupervisionPolicy, description="")
    security: SecurityPolicy = setting(factory=SecurityPolicy, description="")
    store: StorePolicy = setting(factory=StorePolicy, description="")
    survey: SurveyPolicy = setting(factory=SurveyPolicy, description="")
    queues: dict[str, QueuePolicy] = setting(
        factory=dict, description="Per-queue overrides, [queues.<name>]")

    @field_validator("country")
    @classmethod
    def _known_country(cls, value: str) -> str:
        if value != CUSTOM_COUNTRY and value not in STOCK_RING_CADENCES_MS:
            raise ValueError(f"unknown country {value!r}; use one of indications.conf's "
                             f'sections ({", ".join(sorted(STOCK_RING_CADENCES_MS))}) or "custom"')
        return value

    @field_validator("custom_cadence_ms")
    @classmethod
    def _cadence(cls, value: list[int], info: ValidationInfo) -> list[int]:
        custom = info.data.get("country") == CUSTOM_COUNTRY
        if custom and (not value or len(value) % 2 or any(v <= 0 for v in value)):
            raise ValueError('country = "custom" needs on,off pairs of positive milliseconds')
        if value and not custom and "country" in info.data:
            raise ValueError('only used with country = "custom"')
        return value

    @classmethod
    def defaults(cls) -> Policy:
        return cls()

    @property
    def ring_cadence_ms(self) -> tuple[int, ...]:
        """The cadence Asterisk plays for ``country`` (indications.conf ``ringcadence``)."""
        if self.country == CUSTOM_COUNTRY:
            return tuple(self.custom_cadence_ms)
        return STOCK_RING_CADENCES_MS[self.country]

    @property
    def ring_cycle_s(self) -> float:
        """Seconds of one ring (one cadence cycle): cn 5 s, us 6 s, uk 3 s."""
        return sum(self.ring_cadence_ms) / 1000

    def rings_to_seconds(self, rings: float) -> float:
        return rings * self.ring_cycle_s

    def seconds_to_rings(self, seconds: float) -> int:
        """Ring count of a duration, ``ceil(seconds / ring_cycle_s)`` (KPI definitions)."""
        if seconds <= 0:
            return 0
        return math.ceil(seconds / self.ring_cycle_s - _RING_EPSILON)

    def for_queue(self, name: str) -> Policy:
        """The Policy a queue runs under: this one with the queue's overrides applied.

        Unknown queues run under the deployment's Policy. Not cached: a private cache
        would make two equal Policies compare unequal, and re-validation costs well
        under a millisecond.
        """
        override = self.queues.get(name)
        if override is None:
            return self
        data = self.model_dump()
        for key, value in override.model_dump(exclude_none=True).items():
            data[QUEUE_OVERRIDE_SECTIONS[key]][key] = value
        return Policy.model_validate(data)


def _queue_override_sections() -> dict[str, str]:
    """Which section each QueuePolicy field overrides (same field name there)."""
    sections: dict[str, type[Section]] = {"greetings": GreetingsPolicy, "kpi": KpiPolicy}
    found: dict[str, str] = {}
    for key in QueuePolicy.model_fields:
        owners = [name for name, model in sections.items() if key in model.model_fields]
        if len(owners) != 1:
            raise RuntimeError(f"QueuePolicy.{key} must name exactly one section's field")
        found[key] = owners[0]
    return found


QUEUE_OVERRIDE_SECTIONS = _queue_override_sections()


# --- converters (rings -> seconds for timers) --------------------------------------------


def ring_limit_seconds(policy: Policy) -> float:
    """STD-008: how long one agent offer may ring (cn: 3 rings = 15 s)."""
    return policy.rings_to_seconds(policy.answering.ring_limit_rings)


def late_answer_seconds(policy: Policy) -> float:
    """STD-009: total wait beyond which the apology opening is due (cn: 15 s)."""
    return policy.rings_to_seconds(policy.answering.apology_after_rings)


def min_answer_delay_seconds(policy: Policy) -> float:
    """C-12: optional floor before answering; 0 when off."""
    return policy.rings_to_seconds(policy.answering.min_answer_delay_rings)


def outbound_no_answer_seconds(policy: Policy) -> float:
    """STD-081: originate timeout of an outbound attempt (cn: 6 rings = 30 s)."""
    return policy.rings_to_seconds(policy.outbound.no_answer_rings)


def service_level_seconds(policy: Policy) -> float:
    """KPI service level: total wait counted as 'in time' (cn: 3 rings = 15 s)."""
    return policy.rings_to_seconds(policy.kpi.service_level_threshold_rings)


# --- loading -----------------------------------------------------------------------------

_MESSAGES = {
    "extra_forbidden": "unknown key",
    "missing": "required",
    "greater_than_equal": "must be >= {ge}",
    "greater_than": "must be > {gt}",
    "less_than_equal": "must be <= {le}",
    "less_than": "must be < {lt}",
    "literal_error": "must be one of {expected}",
    "int_type": "must be an integer",
    "float_type": "must be a number",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "list_type": "must be a list",
    "dict_type": "must be a table",
    "model_type": "must be a table",
    "model_attributes_type": "must be a table",
    "date_type": "must be a date (YYYY-MM-DD)",
    "time_type": "must be a time HH:MM",
    "string_pattern_mismatch": "must match {pattern}",
}


def _dotted(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def validation_messages(exc: ValidationError) -> list[str]:
    """One ``dotted.key: message`` line per problem, in the words of a config file."""
    lines = []
    for err in exc.errors():
        ctx = err.get("ctx") or {}
        if err["type"] == "value_error":
            text = str(ctx.get("error", err["msg"]))
        else:
            text = _MESSAGES.get(err["type"], err["msg"]).format(**ctx)
            if err["type"].endswith("_type"):
                text += f" (got {err['input']!r})"
        lines.append(f"{_dotted(err['loc'])}: {text}")
    return lines


#: Keys that were in the Policy but had no behaviour behind them (issue 17): a file that
#: still sets one is refused with why, so nobody believes a number is enforced that is
#: not. Each comes back with the issue that builds its behaviour.
REMOVED_KEYS: dict[str, str] = {
    "availability": "the line is served 7x24 (STD-001); a closed-hours mode is not built",
    "greetings.time_of_day_greetings": "time-of-day greetings (STD-018) are not built",
    "greetings.morning_from": "time-of-day greetings (STD-018) are not built",
    "greetings.afternoon_from": "time-of-day greetings (STD-018) are not built",
    "greetings.evening_from": "time-of-day greetings (STD-018) are not built",
    "outbound.new_customer_contact_days": "customer assignment (STD-096) is not built",
    "agents.shift_end_flag_min": "shifts (STD-103) are not in the roster yet",
    "agents.login_before_shift_min": "shifts (C-9) are not in the roster yet",
    "kpi.followup_coverage_target_pct": "key customers (STD-086) are not recorded yet",
    "qa.satisfaction_min_pct": "the customer survey (STD-120) comes with issue 18",
    "qa.satisfaction_max_pct": "the customer survey (STD-120) comes with issue 18",
    "qa.penalties.busy_without_reason": "busy always carries a reason (STD-097): nothing "
                                        "to penalise",
    "qa.penalties.questionnaire_missing": "the post-call questionnaire comes with issue 18",
    "supervision.live_escalation_role": "live escalation (C-10) comes with issue 18",
    "supervision.complaint_number": "complaint routing (STD-005) comes with issue 18",
    "supervision.service_email": "complaint routing (STD-005) comes with issue 18",
}


def removed_keys_set(data: dict[str, Any]) -> list[str]:
    """``dotted.key: why`` for each removed key the document still sets (also per queue)."""
    found = []
    for dotted, why in REMOVED_KEYS.items():
        node: Any = data
        for part in dotted.split("."):
            node = node.get(part, _ABSENT) if isinstance(node, dict) else _ABSENT
        if node is not _ABSENT:
            found.append(f"{dotted}: removed from the Policy ({why}); delete it")
    for name, queue in (data.get("queues") or {}).items():
        if isinstance(queue, dict) and "time_of_day_greetings" in queue:
            found.append(f"queues.{name}.time_of_day_greetings: removed from the Policy "
                         f"({REMOVED_KEYS['greetings.time_of_day_greetings']}); delete it")
    return found


_ABSENT = object()


def parse_policy(data: dict[str, Any], source: str = "policy") -> Policy:
    """Validate a decoded TOML document; every problem is named by its dotted key."""
    removed = removed_keys_set(data)
    if removed:
        raise PolicyError(f"{source}: " + "; ".join(removed))
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        messages = validation_messages(exc)
        raise PolicyError(f"{source}: " + "; ".join(messages)) from None


def load_policy(path: Path | None) -> Policy:
    """The Policy of a deployment: defaults when ``path`` is None, else that TOML file."""
    if path is None:
        return Policy.defaults()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PolicyError(f"cannot read policy file {path}: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise PolicyError(f"{path}: not valid TOML: {exc}") from None
    policy = parse_policy(data, str(path))
    log.info("policy loaded from %s (country=%s, ring cycle %.1f s)", path, policy.country,
             policy.ring_cycle_s)
    return policy
