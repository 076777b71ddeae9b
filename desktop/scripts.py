"""The desktop script panel: the standard phrases by call phase, with the caller's address.

The seeds give agents fixed words for each moment of a call (STD-019..STD-034): the reply
when the caller greets first, asking the surname, asking to repeat, warning before long
information, refusing with a reason, promising a reply, passing to a department, thanking
for a suggestion, courtesy replies, calming, apologies and the closing. They live as data
in ``script_packs/<language>.toml`` (zh-CN verbatim from the seeds with a citation per
entry; en the same entries in English), so a centre edits words without code.

What is a rule lives here, with no I/O beyond reading the packaged files once:

* the caller's address form from the surname field and title (STD-020, ``address_form``);
* which scripts are offered and with what words (``offered_scripts``): every placeholder
  for the address filled, and the question for the surname withdrawn once the surname
  is known or the caller declined to give it (STD-020: never ask again in that call);
* which phases the panel opens for each agent state (``phases_for_state``).

The desktop shows and copies the words; whether the agent says them is for QA to hear.
"""

from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass
from importlib import resources
from typing import Any

from callflow.engine.rules import enforces

PACK_DIR = "script_packs"
LANGUAGES = ("zh-CN", "en")
PHASES = ("greeting", "verification", "information", "hold", "refusal", "follow_up",
          "courtesy", "calming", "apology", "closing")
TITLES = ("mr", "ms", "miss", "child")  # "" = not known
MAX_SURNAME_LENGTH = 16  # a surname field, not a free text: bounded, letters only
SURNAME_PUNCTUATION = frozenset(" -'·.")

# the phases offered first in each agent state, most likely first; other states offer none
# (the agent can still browse every phase)
STATE_PHASES: dict[str, tuple[str, ...]] = {
    "ringing": ("greeting",),
    "on_call": ("verification", "information", "refusal", "follow_up", "courtesy",
                "calming", "apology", "closing"),
    "on_hold": ("hold",),
    "acw": ("closing",),
}


@dataclass(frozen=True, slots=True)
class Script:
    """One phrase of a pack; ``placeholder`` is the part of ``text`` that is the address."""

    id: str
    phase: str
    std: tuple[str, ...]
    seed: str  # NNN:line of the seed it comes from
    text: str
    placeholder: str = ""
    ask_surname: bool = False
    note: str = ""


@dataclass(frozen=True, slots=True)
class Forbidden:
    """A phrase never said to a caller (STD-036), with where the seeds forbid it."""

    text: str
    seed: str


@dataclass(frozen=True, slots=True)
class AddressForms:
    """How a language addresses a caller: ``with_surname`` joins surname and title."""

    with_surname: str  # "{surname}{title}" or "{title} {surname}"
    titles: dict[str, str]  # title code (or "unknown") -> title used with a surname
    bare: dict[str, str]  # title code (or "unknown") -> address without a surname
    child_uses_surname: bool


@dataclass(frozen=True, slots=True)
class ScriptPack:
    language: str
    address: AddressForms
    phases: dict[str, str]  # phase id -> label, in panel order
    scripts: tuple[Script, ...]
    forbidden: tuple[Forbidden, ...]


@dataclass(frozen=True, slots=True)
class CallerAddress:
    """What the desktop knows of how to address the caller on this call (STD-020).

    ``surname`` is what the agent typed (or a customer record filled); ``title`` one of
    TITLES or ""; ``surname_declined``: the caller would not give it, so it is not
    asked again in this call.
    """

    surname: str = ""
    title: str = ""
    surname_declined: bool = False


class AddressError(ValueError):
    """A surname or title the desktop sent that cannot be an address form."""


def check_address(surname: str, title: str) -> tuple[str, str]:
    """The surname (trimmed) and title if valid; ``AddressError`` with the reason if not.

    A surname is letters (any script) with at most a space, hyphen, apostrophe or dot,
    up to MAX_SURNAME_LENGTH characters: it is shown on the desktop and put into words
    the agent reads out, so nothing else is accepted."""
    surname = surname.strip()
    if len(surname) > MAX_SURNAME_LENGTH:
        raise AddressError(f"surname longer than {MAX_SURNAME_LENGTH} characters")
    if any(not (ch.isalpha() or ch in SURNAME_PUNCTUATION) for ch in surname):
        raise AddressError("surname: letters only (and space, hyphen, apostrophe, dot)")
    if title and title not in TITLES:
        raise AddressError(f"title must be one of {', '.join(TITLES)} or empty")
    return surname, title


def pack_language(language: str) -> str:
    """The pack for a session language: ``en``/``en-*`` -> en, anything else -> zh-CN."""
    return "en" if language.lower().startswith("en") else "zh-CN"


@enforces("STD-020")
def address_form(forms: AddressForms, caller: CallerAddress) -> str:
    """How the agent addresses the caller: surname + title once the surname is known.

    Without a title the seeds' own double form stands (「王先生/小姐」, "Mr/Ms Wang"), for
    the agent to say the right half; without a surname, the bare form (「先生/小姐」,
    "sir/madam"); a child is 小朋友 (002:87, 003:82) whatever the surname.
    """
    title = caller.title if caller.title in TITLES else "unknown"
    if caller.surname and (title != "child" or forms.child_uses_surname):
        return forms.with_surname.format(surname=caller.surname, title=forms.titles[title])
    return forms.bare[title]


def render(script: Script, address: str) -> str:
    """The script's words with its address placeholder (if any) replaced by ``address``."""
    if not script.placeholder:
        return script.text
    return script.text.replace(script.placeholder, address, 1)


@enforces("STD-019", "STD-020", "STD-021", "STD-022", "STD-023", "STD-024", "STD-025",
          "STD-026", "STD-027", "STD-028", "STD-029", "STD-030", "STD-031", "STD-033",
          "STD-034")
def offered_scripts(pack: ScriptPack, caller: CallerAddress) -> list[dict[str, Any]]:
    """Every script of the pack as the panel offers it for this caller, in panel order.

    The address is filled into every script that has a place for it; the surname
    question is left out once the surname is known or was declined (STD-020)."""
    address = address_form(pack.address, caller)
    skip_ask = bool(caller.surname) or caller.surname_declined
    order = {phase: i for i, phase in enumerate(pack.phases)}
    offered = []
    for script in sorted(pack.scripts, key=lambda s: order[s.phase]):
        if script.ask_surname and skip_ask:
            continue
        offered.append({"id": script.id, "phase": script.phase, "std": list(script.std),
                        "seed": script.seed, "text": render(script, address),
                        "note": script.note})
    return offered


def phases_for_state(state: str) -> tuple[str, ...]:
    """The phases the panel opens in this agent state, first the one shown (may be ())."""
    return STATE_PHASES.get(state, ())


@enforces("STD-036")
def forbidden_phrases(pack: ScriptPack) -> list[dict[str, str]]:
    """The phrases never said to a caller, for the agent's panel and QA's review."""
    return [{"text": f.text, "seed": f.seed} for f in pack.forbidden]


# --- the packs ------------------------------------------------------------------------


def _strings(value: object, what: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ValueError(f"{what}: a table of strings")
    return dict(value)


def parse_pack(data: dict[str, Any]) -> ScriptPack:
    """A pack from its TOML tables; ``ValueError`` naming the first thing wrong."""
    language = data.get("language")
    if language not in LANGUAGES:
        raise ValueError(f"language must be one of {LANGUAGES}")
    phases = _strings(data.get("phases"), "phases")
    if tuple(phases) != PHASES:
        raise ValueError(f"phases must be {PHASES} in that order")
    raw = data.get("address")
    if not isinstance(raw, dict):
        raise ValueError("address: a table")
    codes = {*TITLES, "unknown"}
    address = AddressForms(str(raw.get("with_surname", "")), _strings(raw.get("titles"), "titles"),
                           _strings(raw.get("bare"), "bare"),
                           bool(raw.get("child_uses_surname", False)))
    if set(address.titles) != codes or set(address.bare) != codes:
        raise ValueError(f"address titles and bare: one form for each of {sorted(codes)}")
    if "{surname}" not in address.with_surname or "{title}" not in address.with_surname:
        raise ValueError("address.with_surname needs {surname} and {title}")
    scripts = []
    for item in data.get("script", []):
        script = Script(id=str(item["id"]), phase=str(item["phase"]),
                        std=tuple(str(s) for s in item["std"]), seed=str(item["seed"]),
                        text=str(item["text"]), placeholder=str(item.get("placeholder", "")),
                        ask_surname=bool(item.get("ask_surname", False)),
                        note=str(item.get("note", "")))
        if script.phase not in phases:
            raise ValueError(f"script {script.id}: unknown phase {script.phase!r}")
        if not script.text or (script.placeholder and script.placeholder not in script.text):
            raise ValueError(f"script {script.id}: placeholder not in its text")
        scripts.append(script)
    if len({s.id for s in scripts}) != len(scripts):
        raise ValueError("script ids must be unique")
    forbidden = tuple(Forbidden(str(f["text"]), str(f["seed"])) for f in data.get("forbidden", []))
    return ScriptPack(str(language), address, phases, tuple(scripts), forbidden)


@functools.cache
def load_pack(language: str) -> ScriptPack:
    """The packaged pack of a session language (read once per process)."""
    name = pack_language(language)
    text = resources.files("callflow.desktop").joinpath(PACK_DIR, f"{name}.toml").read_text(
        "utf-8")
    return parse_pack(tomllib.loads(text))
