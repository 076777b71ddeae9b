"""The script panel (STD-019..STD-036): the packs, the address form, the phases, the frames.

The zh-CN pack is the seeds' words: each entry stores its text and its citation, and
these tests hold the packs to their structure (every group-3 rule covered, the same
entries in both languages, every address placeholder inside its text) and to what the
panel does with them. The packaged files are read exactly as the product reads them.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import replace
from datetime import date
from importlib import resources
from typing import Any

import pytest
from agent_protocol_schema import CLIENT_FRAME, errors, frame_errors

from callflow.desktop.protocol import (
    AddressRequest,
    hello_frame,
    parse_desktop_frame,
    script_panel,
    script_panel_frame,
)
from callflow.desktop.scripts import (
    PHASES,
    STATE_PHASES,
    CallerAddress,
    address_form,
    forbidden_phrases,
    load_pack,
    offered_scripts,
    pack_language,
    parse_pack,
    phases_for_state,
)
from callflow.engine.policy import Policy
from callflow.stream.protocol import ClientFrameError

# every rule of group 3 that has words to offer; the others are conduct (STD-032,
# STD-035, STD-037, STD-038) or the opening the caller hears as a prompt (STD-014..018)
OFFERED_RULES = {"STD-019", "STD-020", "STD-021", "STD-022", "STD-023", "STD-024",
                 "STD-025", "STD-026", "STD-027", "STD-028", "STD-029", "STD-030",
                 "STD-031", "STD-033", "STD-034"}
CITATION = re.compile(r"^00[0-4]:\d+(-\d+)?$")
ZH, EN = load_pack("zh-CN"), load_pack("en")


def hello(language: str) -> dict[str, Any]:
    frame: dict[str, Any] = json.loads(hello_frame(
        policy=Policy.defaults(), language=language, agent_id="1001", agent_name="Li Lei",
        username="1001", role="agent", apology_text="…", day=date(2026, 3, 2), last_seq=7,
        server_time=1795739635.4))
    return frame


def raw(language: str) -> dict[str, Any]:
    text = resources.files("callflow.desktop").joinpath(
        "script_packs", f"{language}.toml").read_text("utf-8")
    return tomllib.loads(text)


def by_id(scripts: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {s["id"]: s for s in scripts}


# --- the packs --------------------------------------------------------------------------


def test_every_offered_rule_of_group_3_has_scripts_in_both_languages() -> None:
    for pack in (ZH, EN):
        covered = {std for s in pack.scripts for std in s.std}
        assert covered >= OFFERED_RULES, OFFERED_RULES - covered
        assert all(any(s.phase == p for s in pack.scripts) for p in PHASES)


def test_the_packs_have_the_same_entries_phases_and_citations() -> None:
    zh = {s.id: (s.phase, s.std, s.seed, bool(s.placeholder), s.ask_surname)
          for s in ZH.scripts}
    en = {s.id: (s.phase, s.std, s.seed, bool(s.placeholder), s.ask_surname)
          for s in EN.scripts}
    assert zh == en
    assert [f.seed for f in ZH.forbidden] == [f.seed for f in EN.forbidden]
    assert list(ZH.phases) == list(EN.phases) == list(PHASES)


def test_every_zh_entry_cites_its_seed_line_and_is_chinese() -> None:
    for script in ZH.scripts:
        assert CITATION.match(script.seed), script
        assert re.search(r"[\u4e00-\u9fff]", script.text), script
        assert script.text == script.text.strip()
    for phrase in ZH.forbidden:
        assert CITATION.match(phrase.seed) and phrase.text
    # the texts the standards quote, spot-checked word for word
    scripts = {s.id: s for s in ZH.scripts}
    assert scripts["reply_caller_greeting"].text == "您好,請問有什么可以幫助您?"
    assert scripts["reply_caller_greeting"].seed == "004:268-269"
    assert scripts["closing_default"].text == "谢谢您的来电,**先生/小姐,再见!"
    assert scripts["closing_default"].seed == "003:65"
    assert scripts["long_information"].text == "麻煩您記錄一下,好嗎?"
    assert scripts["ask_surname"].text == "请问先生/小姐贵姓?"


def test_a_placeholder_is_part_of_its_text() -> None:
    for pack in (ZH, EN):
        for script in pack.scripts:
            if script.placeholder:
                assert script.placeholder in script.text, script


@pytest.mark.parametrize("change, message", [
    ({"language": "fr"}, "language"),
    ({"phases": {"greeting": "x"}}, "phases"),
    ({"script": [{"id": "a", "phase": "nowhere", "std": [], "seed": "002:1", "text": "t"}]},
     "unknown phase"),
    ({"script": [{"id": "a", "phase": "closing", "std": [], "seed": "002:1", "text": "t",
                  "placeholder": "XX"}]}, "placeholder"),
    ({"address": {"with_surname": "{surname}", "titles": {}, "bare": {}}}, "address"),
])
def test_a_broken_pack_is_refused_with_the_reason(change: dict[str, Any], message: str) -> None:
    data = raw("zh-CN") | change
    with pytest.raises(ValueError, match=message):
        parse_pack(data)


def test_session_languages_map_to_packs() -> None:
    assert pack_language("zh") == pack_language("zh-CN") == "zh-CN"
    assert pack_language("en") == pack_language("en-GB") == "en"
    assert load_pack("zh").language == "zh-CN"


# --- the address form (STD-020) ----------------------------------------------------------


@pytest.mark.std("STD-020")
@pytest.mark.parametrize("surname, title, zh, en", [
    ("王", "mr", "王先生", "Mr 王"),
    ("王", "ms", "王女士", "Ms 王"),
    ("Wang", "miss", "Wang小姐", "Miss Wang"),
    ("王", "", "王先生/小姐", "Mr/Ms 王"),
    ("", "mr", "先生", "sir"),
    ("", "ms", "女士", "madam"),
    ("", "", "先生/小姐", "sir/madam"),
    ("王", "child", "小朋友", "young friend"),
])
def test_address_form_from_surname_and_title(surname: str, title: str, zh: str,
                                             en: str) -> None:
    caller = CallerAddress(surname, title)
    assert address_form(ZH.address, caller) == zh
    assert address_form(EN.address, caller) == en


@pytest.mark.std("STD-020", "STD-034")
def test_the_address_is_filled_into_every_script_that_names_the_caller() -> None:
    offered = by_id(offered_scripts(ZH, CallerAddress("王", "mr")))
    assert offered["closing_default"]["text"] == "谢谢您的来电,王先生,再见!"
    assert offered["repeat_named"]["text"].startswith("王先生,对不起")
    assert offered["pass_to_department"]["text"].startswith("王先生您好")
    for script in ZH.scripts:
        if script.placeholder and not script.ask_surname:
            assert script.placeholder not in offered[script.id]["text"]
            assert "王先生" in offered[script.id]["text"]
    english = by_id(offered_scripts(EN, CallerAddress("Wang", "ms")))
    assert english["closing_default"]["text"] == "Thank you for calling, Ms Wang, goodbye!"
    unknown = by_id(offered_scripts(ZH, CallerAddress()))
    assert unknown["closing_default"]["text"] == "谢谢您的来电,先生/小姐,再见!"


@pytest.mark.std("STD-020")
def test_the_surname_is_asked_only_while_unknown_and_never_after_a_refusal() -> None:
    asks = {s.id for s in ZH.scripts if s.ask_surname}
    assert asks
    assert asks <= set(by_id(offered_scripts(ZH, CallerAddress())))
    assert not asks & set(by_id(offered_scripts(ZH, CallerAddress("王"))))
    declined = offered_scripts(ZH, CallerAddress(surname_declined=True))
    assert not asks & set(by_id(declined))
    # with a title but no surname the question addresses the caller by it
    assert by_id(offered_scripts(ZH, CallerAddress(title="ms")))["ask_surname"]["text"] == \
        "请问女士贵姓?"


@pytest.mark.std("STD-019", "STD-021", "STD-023", "STD-024", "STD-025", "STD-026",
                 "STD-027", "STD-028", "STD-029", "STD-030", "STD-031", "STD-033")
def test_each_rule_has_an_offered_script_in_its_phase() -> None:
    offered = offered_scripts(ZH, CallerAddress())
    phase_of = {"STD-019": "greeting", "STD-021": "verification", "STD-023": "information",
                "STD-024": "information", "STD-025": "refusal", "STD-026": "follow_up",
                "STD-027": "follow_up", "STD-028": "follow_up", "STD-029": "courtesy",
                "STD-030": "hold", "STD-031": "calming", "STD-033": "closing"}
    for std, phase in phase_of.items():
        assert any(std in s["std"] and s["phase"] == phase for s in offered), std
    order = [s["phase"] for s in offered]
    assert order == sorted(order, key=PHASES.index)  # panel order


# --- phases -----------------------------------------------------------------------------


def test_phases_follow_the_agent_state() -> None:
    assert phases_for_state("ringing") == ("greeting",)
    assert phases_for_state("on_hold") == ("hold",)
    assert phases_for_state("acw") == ("closing",)
    on_call = phases_for_state("on_call")
    assert on_call[0] == "verification" and {"information", "refusal", "closing"} <= set(on_call)
    assert phases_for_state("ready") == phases_for_state("logged_out") == ()
    assert all(set(p) <= set(PHASES) for p in STATE_PHASES.values())


# --- frames -----------------------------------------------------------------------------


def test_the_hello_carries_the_panel_in_the_session_language() -> None:
    frame = hello(language="en")
    assert frame_errors(frame) == []
    panel = frame["script_panel"]
    assert panel["language"] == "en" and panel["address"] == "sir/madam"
    assert panel["by_state"]["ringing"] == ["greeting"]
    assert hello(language="zh")["script_panel"]["phases"][0] == {"id": "greeting",
                                                                "label": "问候"}


@pytest.mark.std("STD-036")
def test_the_panel_lists_the_forbidden_phrases() -> None:
    panel = script_panel("zh", CallerAddress())
    assert {"text": "喂,說吧!", "seed": "004:269"} in panel["forbidden"]
    assert len(forbidden_phrases(ZH)) == len(panel["forbidden"]) >= 20


def test_an_address_request_is_answered_with_the_panel() -> None:
    request = parse_desktop_frame(json.dumps(
        {"type": "address", "surname": " 王 ", "title": "mr", "id": 9}))
    assert request == AddressRequest(CallerAddress("王", "mr"), 9)
    frame = json.loads(script_panel_frame("zh", request.caller, request.id))
    assert frame_errors(frame) == []
    assert frame["type"] == "script_panel" and frame["id"] == 9
    assert frame["address"] == "王先生"
    assert frame["caller"] == {"surname": "王", "title": "mr", "declined": False}
    # declining means nothing once a surname is given; empty fields mean "not known"
    assert parse_desktop_frame('{"type": "address", "surname": "李", "declined": true}') \
        == AddressRequest(CallerAddress("李", "", False))
    assert parse_desktop_frame('{"type": "address"}') == AddressRequest(CallerAddress())
    assert errors({"type": "address", "surname": "王", "title": "mr", "declined": False},
                  CLIENT_FRAME) == []


@pytest.mark.parametrize("frame, why", [
    ({"surname": "王" * 17}, "longer than 16"),
    ({"surname": "<b>王</b>"}, "letters only"),
    ({"surname": "王{title}"}, "letters only"),
    ({"surname": "王\n李"}, "letters only"),
    ({"surname": 7}, "strings"),
    ({"title": "lord"}, "title must be"),
    ({"declined": "yes"}, "true or false"),
])
def test_a_bad_address_is_refused_whole(frame: dict[str, Any], why: str) -> None:
    with pytest.raises(ClientFrameError, match=why) as refused:
        parse_desktop_frame(json.dumps({"type": "address", "id": 1, **frame}))
    assert refused.value.error == "bad_frame"


def test_a_pack_without_a_surname_still_renders() -> None:
    # a child addressed by surname where a centre wants it
    forms = replace(ZH.address, child_uses_surname=True)
    assert address_form(forms, CallerAddress("王", "child")) == "王小朋友"
