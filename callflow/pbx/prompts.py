"""Language packs: the scripts' text beside the audio Asterisk plays.

The standards want every agent and every caller to hear the same wording (STD-014,
STD-017, STD-056...), so the wording lives in ``prompts/<lang>/prompts.toml`` and
the audio is *generated* from it with a TTS tool (espeak-ng, then sox to 8 kHz mono
16-bit WAV). A prompt with placeholders (the agent's work number, the centre name)
is rendered per value and cached by a hash of its text, so changing the wording or
the centre name can never leave a stale recording in use.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from callflow.engine.policy import Policy
from callflow.engine.rules import enforces
from callflow.errors import CallflowError
from callflow.settings import REPO_ROOT

log = logging.getLogger(__name__)

PACKS_DIR = REPO_ROOT / "prompts"


class PromptError(CallflowError):
    """A prompt is unknown, a placeholder is missing, or the TTS tools failed."""


@dataclass(frozen=True)
class LanguagePack:
    lang: str
    voice: str
    texts: Mapping[str, str]

    @classmethod
    def load(cls, lang: str, packs_dir: Path = PACKS_DIR) -> LanguagePack:
        path = packs_dir / lang / "prompts.toml"
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise PromptError(f"no language pack {lang!r} (expected {path})") from None
        except tomllib.TOMLDecodeError as exc:
            raise PromptError(f"{path}: {exc}") from None
        return cls(lang=lang, voice=str(data.get("voice", lang)), texts=dict(data["prompts"]))

    def text(self, name: str, **params: str) -> str:
        try:
            template = self.texts[name]
        except KeyError:
            raise PromptError(f"prompt {name!r} is not in language pack {self.lang!r}") from None
        try:
            return template.format(**params)
        except KeyError as exc:
            raise PromptError(f"prompt {name!r} needs placeholder {exc.args[0]!r}") from None


def spell_digits(number: str) -> str:
    """Work numbers are read digit by digit ("1 0 0 1"), never as a quantity."""
    return " ".join(number)


def synthesize(text: str, voice: str, out: Path) -> None:
    """Speak ``text`` into ``out`` (8 kHz mono 16-bit WAV, what Asterisk's format_wav plays)."""
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            raise PromptError(f"{tool} is not installed (apt-get install espeak-ng sox)")
    out.parent.mkdir(parents=True, exist_ok=True)
    raw = out.with_suffix(".tts.wav")
    try:
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(raw), text], check=True,
                       capture_output=True, timeout=30)
        subprocess.run(["sox", str(raw), "-r", "8000", "-c", "1", "-b", "16", str(out)],
                       check=True, capture_output=True, timeout=30)
    except subprocess.CalledProcessError as exc:
        detail = exc.stderr.decode(errors="replace")
        raise PromptError(f"TTS failed for {text!r}: {detail}") from None
    finally:
        raw.unlink(missing_ok=True)


class PromptLibrary:
    """Rendered prompt files for one language, generated on first use and cached."""

    def __init__(self, pack: LanguagePack, out_dir: Path, defaults: Mapping[str, str]) -> None:
        self.pack = pack
        self.out_dir = out_dir / pack.lang
        self.defaults = dict(defaults)

    def path(self, name: str, **params: str) -> Path:
        """The prompt's file path *without* extension, as AGI STREAM FILE and Dial's A() want."""
        return self.speak(name, self.pack.text(name, **{**self.defaults, **params}))

    def speak(self, name: str, text: str) -> Path:
        """Any text as a prompt file (generated once; the name only labels the file)."""
        digest = hashlib.sha1(f"{self.pack.voice}\0{text}".encode()).hexdigest()[:12]
        wav = self.out_dir / f"{name}-{digest}.wav"
        if not wav.exists():
            log.info("generating prompt %s (%s): %s", name, self.pack.lang, text)
            synthesize(text, self.pack.voice, wav)
        return wav.with_suffix("")

    @enforces("STD-014", "STD-015", "STD-017",
              policy=("greetings.opening_template", "greetings.holiday_greetings",
                      "greetings.department"))
    def opening(self, policy: Policy, agent_no: str, agent_name: str,
                day: date) -> tuple[Path, str]:
        """The opening the caller hears when the agent answers, and which one it is.

        STD-017: on a configured holiday the holiday wish replaces the opening;
        otherwise STD-014's template with the centre and the agent's work number
        (read digit by digit), or name, as ``greetings.agent_identity`` says (C-4).
        """
        greetings = policy.greetings
        english = self.pack.lang == "en"
        holiday = greetings.holiday_greeting(day)
        if holiday is not None:
            return self.speak("opening_holiday",
                              holiday.greeting_en if english else holiday.greeting), "holiday"
        template = greetings.opening_template_en if english else greetings.opening_template
        identity = {"work_number": spell_digits(agent_no), "name": agent_name, "none": ""}
        text = template.format(
            centre=greetings.centre_name_en if english else greetings.centre_name,
            agent_no=identity[greetings.agent_identity], agent_name=agent_name,
            department=greetings.department)
        return self.speak("opening", text), "normal"

    def build_all(self, policy: Policy, agents: list[tuple[str, str]], day: date) -> list[Path]:
        """Generate every fixed prompt and each agent's opening (the set-up step)."""
        built = [self.path(name) for name, template in self.pack.texts.items()
                 if "{" not in template]
        built.extend(self.opening(policy, no, name, day)[0] for no, name in agents)
        return built
