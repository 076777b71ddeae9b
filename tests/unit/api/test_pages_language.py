"""Every label of the three pages comes from the language packs (issue 18).

The packs (api/i18n/*.json) have the same keys, no empty value and the same ``{name}``
placeholders in every language. The pages' HTML holds no words of its own: every text
is a ``data-i18n`` key (attributes: ``data-i18n-title``, ``-placeholder``,
``-aria-label``) that the pack has; ``/i18n.js`` is the first script of each page, so
``<html lang>`` is set before any other script runs. The pages' scripts hold no label
either: no string literal with Chinese characters, with an English phrase (two words or
more) or with words between HTML tags, outside a short list of protocol strings; every
``t("key")`` they call names a key the packs have.
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from callflow.api.language import LANGUAGES, PACK_DIR, load_packs

ROOT = Path(__file__).resolve().parents[3]
PAGES = {"desktop": ROOT / "desktop" / "static", "board": ROOT / "board" / "static",
         "recordings": ROOT / "recordings" / "static"}
#: Every script of the three pages: the pages' own and any module added beside them (which
#: may keep its words in a ``LABELS = {"zh-CN": {...}, "en": {...}}`` object instead).
SCRIPTS = [*sorted(p for d in PAGES.values() for p in d.glob("*.js")), PACK_DIR / "runtime.js"]
HAN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef]")
WORD = re.compile(r"[A-Za-z]")
PHRASE = re.compile(r"[A-Za-z]{2,}[,:;.!?]?\s+[A-Za-z]{2,}")
TRANSLATED = ("title", "placeholder", "aria-label", "alt", "value")
#: Strings the scripts compare with or send, never show: protocol words.
PROTOCOL = {"use strict", "session ended"}
PLACEHOLDER = re.compile(r"\{(\w+)\}")


def test_packs_have_the_same_keys_and_no_empty_value() -> None:
    packs = load_packs()
    assert set(packs) == set(LANGUAGES)
    keys = {lang: set(pack) for lang, pack in packs.items()}
    first = keys[LANGUAGES[0]]
    for lang in LANGUAGES[1:]:
        assert keys[lang] == first, (lang, sorted(keys[lang] ^ first))
    for lang, pack in packs.items():
        for key, value in pack.items():
            assert value.strip(), (lang, key)
            assert set(PLACEHOLDER.findall(value)) == set(
                PLACEHOLDER.findall(packs[LANGUAGES[0]][key])), (lang, key)
    # the Chinese pack is Chinese; the English pack has no Chinese
    assert not [k for k, v in packs["en"].items() if HAN.search(v)]
    english_only = [k for k, v in packs["zh-CN"].items() if not HAN.search(v)
                    and WORD.search(PLACEHOLDER.sub("", v))]
    # acronyms and product names stay as they are (AMI, ASA, QA, callflow, STD numbers)
    assert all(re.fullmatch(r"[A-Z0-9 ?▾]+|language\.name", k) or "AMI" in packs["zh-CN"][k]
               or "QA" in packs["zh-CN"][k] for k in english_only), english_only


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.words: list[str] = []
        self.keys: list[str] = []
        self.scripts: list[tuple[str, bool]] = []  # (src, in head)
        self.head = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "head":
            self.head = True
        if tag == "script":
            self.scripts.append((a.get("src") or "", self.head))
        for name, value in a.items():
            if name.startswith("data-i18n"):
                self.keys.append(value or "")
            elif name in TRANSLATED and value and (HAN.search(value) or (
                    name != "value" and WORD.search(value))):
                self.words.append(f"<{tag} {name}={value!r}>")
        if tag not in ("meta", "link", "input", "br", "hr", "img"):
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "head":
            self.head = False
        while self.stack and self.stack.pop() != tag:
            pass

    def handle_data(self, data: str) -> None:
        if self.stack and self.stack[-1] in ("script", "style"):
            return
        if HAN.search(data) or WORD.search(data):
            self.words.append(f"<{self.stack[-1] if self.stack else '?'}> {data.strip()!r}")


@pytest.mark.parametrize("page", sorted(PAGES))
def test_a_page_has_no_words_of_its_own_and_loads_the_packs_first(page: str) -> None:
    parsed = _Page()
    parsed.feed((PAGES[page] / "index.html").read_text(encoding="utf-8"))
    assert parsed.words == [], f"hard-coded labels in {page}/index.html: {parsed.words}"
    assert parsed.scripts[0] == ("/i18n.js", True), parsed.scripts
    packs = load_packs()
    missing = [k for k in parsed.keys if k not in packs[LANGUAGES[0]]]
    assert not missing, missing
    assert len(parsed.keys) > 10


def _literals(source: str) -> list[str]:
    """The string and template literals of a script, comments and regexes skipped."""
    out: list[str] = []
    i, n = 0, len(source)
    last = ""  # the last significant character: tells a regex from a division
    while i < n:
        c = source[i]
        if source.startswith("//", i):
            i = source.find("\n", i)
            i = n if i < 0 else i
            continue
        if source.startswith("/*", i):
            i = source.index("*/", i) + 2
            continue
        if c in "\"'`":
            j, buf = i + 1, []
            while source[j] != c:
                if source[j] == "\\":
                    buf.append(source[j:j + 2])
                    j += 2
                    continue
                if c == "`" and source.startswith("${", j):
                    j, depth = j + 1, 0
                    while True:  # skip the expression (no nested templates in our pages)
                        depth += source[j] == "{"
                        depth -= source[j] == "}"
                        j += 1
                        if depth == 0:
                            break
                    buf.append(" ")
                    continue
                buf.append(source[j])
                j += 1
            out.append("".join(buf))
            i, last = j + 1, c
            continue
        if c == "/" and (last == "" or last in "(,=:[!&|?{};+"):
            j, klass = i + 1, False
            while klass or source[j] != "/":
                if source[j] == "\\":
                    j += 1
                elif source[j] == "[":
                    klass = True
                elif source[j] == "]":
                    klass = False
                j += 1
            i, last = j + 1, "/"
            continue
        if not c.isspace():
            last = c
        i += 1
    return out


def _without_labels_object(source: str) -> str:
    """A module's ``LABELS = {...}`` object taken out: its words are the module's pack."""
    start = source.find("LABELS = {")
    if start < 0:
        return source
    depth, end = 0, source.index("{", start)
    while True:
        depth += {"{": 1, "}": -1}.get(source[end], 0)
        if depth == 0 or end == len(source) - 1:
            break
        end += 1
    return source[:start] + source[end + 1:]


def _shown_words(literal: str) -> str | None:
    """What in a literal reads as a label, or None."""
    if HAN.search(literal):
        return literal
    if literal in PROTOCOL:
        return None
    between = re.findall(r">([^<]*)<", literal)
    if any(WORD.search(text) for text in between):
        return literal
    text = re.sub(r"<[^>]*>|^[^<]*>|<[^>]*$", " ", literal) if "<" in literal or ">" in literal \
        else literal
    text = re.sub(r'[a-z-]+="[^"]*"?', " ", text)  # attribute pairs of a tag split in two
    return literal if PHRASE.search(text) else None


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_a_page_script_shows_no_label_of_its_own(script: Path) -> None:
    source = script.read_text(encoding="utf-8")
    found = [w for w in map(_shown_words, _literals(_without_labels_object(source))) if w]
    assert found == [], f"hard-coded labels in {script.name}: {found}"
    packs = load_packs()
    pack = packs[LANGUAGES[0]]
    used = re.findall(r"\bt\(\s*\"([a-z0-9_.\-]+)\"\s*[,)]", source)
    missing = [k for k in used if k not in pack]
    assert not missing, missing
    # a key built at run time ("alarm." + kind): the pack has keys of that family
    prefixes = re.findall(r"\"([a-z0-9_.\-]+\.)\"\s*\+", source)
    assert all(any(k.startswith(p) for k in pack) for p in prefixes), prefixes


def test_the_checker_catches_what_it_is_for() -> None:
    """The checks above can fail: a label in each form is found."""
    caught = _literals('x = "ready"; y = "坐席"; el.textContent = "log in now"; '
                       "z = '<button>ack</button>'; // a comment, not a label\n"
                       "w = /[\"']/g; v = `on hold ${a} now`;")
    assert [w for w in map(_shown_words, caught) if w] == [
        "坐席", "log in now", "<button>ack</button>", "on hold   now"]
    parsed = _Page()
    parsed.feed('<p>hello</p><button title="press me"></button><span data-i18n="k"></span>')
    assert len(parsed.words) == 2
    module = 'const LABELS = {"zh-CN": {hold: "保持"}, "en": {hold: "hold the call"}};\n' \
             'el.textContent = LABELS[lang].hold; x = "not from the labels";'
    assert [w for w in map(_shown_words, _literals(_without_labels_object(module))) if w] == [
        "not from the labels"]


def test_pack_files_are_json_objects_of_strings() -> None:
    for lang in LANGUAGES:
        raw = json.loads((PACK_DIR / f"{lang}.json").read_text(encoding="utf-8"))
        assert isinstance(raw, dict) and all(isinstance(v, str) for v in raw.values())
