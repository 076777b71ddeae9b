"""The picture of Asterisk's channels and bridges (engine/channels.py)."""

from __future__ import annotations

from callflow.engine import channels as ch


def picture(*facts: ch.PbxFact) -> ch.PbxView:
    view = ch.PbxView()
    for fact in facts:
        view = ch.apply(view, fact)
    return view


def test_endpoint_of_a_channel_name() -> None:
    assert ch.endpoint_of("PJSIP/agent1003-0000002a") == "agent1003"
    assert ch.endpoint_of("PJSIP/desk-7-0000002a") == "desk-7"
    assert ch.endpoint_of("Local/1002@agents-00000004;1") == ""
    assert ch.endpoint_of("PJSIP/agent1003") == ""  # not a channel name


def test_a_desk_is_in_use_while_any_channel_of_its_endpoint_lives() -> None:
    view = picture(ch.ChannelNew("c1", "PJSIP/caller-1", "c1"),
                   ch.ChannelNew("a1", "PJSIP/agent1001-2", "c1"))
    assert view.endpoint_busy("agent1001") and not view.endpoint_busy("agent1002")
    assert [c.uid for c in view.on_endpoint("agent1001")] == ["a1"]
    view = ch.apply(view, ch.ChannelGone("a1", 16, 10.0))
    assert not view.endpoint_busy("agent1001")
    assert [c.uid for c in view.linked("c1")] == ["c1"]


def test_only_the_first_request_of_each_kind_is_kept() -> None:
    view = picture(ch.ChannelNew("a1", "PJSIP/agent1001-2", "c1"),
                   ch.HangupRequested("a1", 16, soft=False, at=5.0),
                   ch.HangupRequested("a1", 38, soft=False, at=6.0),
                   ch.HangupRequested("a1", 16, soft=True, at=7.0))
    leg = view.channels["a1"]
    assert leg.far_end_hangup == ch.HangupAsked(16, False, 5.0)
    assert leg.soft_hangup == ch.HangupAsked(16, True, 7.0)
    assert not view.shutting_down


def test_a_shutdown_flag_marks_the_pbx_going_down() -> None:
    view = picture(ch.ChannelNew("c1", "PJSIP/caller-1", "c1"),
                   ch.HangupRequested("c1", ch.SOFT_SHUTDOWN, soft=True, at=1.0))
    assert view.shutting_down


def test_bridges_say_who_talks_to_whom() -> None:
    view = picture(ch.ChannelNew("c1", "PJSIP/caller-1", "c1"),
                   ch.ChannelNew("a1", "PJSIP/agent1001-2", "c1"),
                   ch.BridgeJoined("b1", "a1"), ch.BridgeJoined("b1", "c1"))
    assert [p.uid for p in view.peers("c1")] == ["a1"]
    assert view.channels["c1"].bridge == "b1"
    view = ch.apply(view, ch.BridgeLeft("b1", "a1"))
    assert view.peers("c1") == [] and view.channels["a1"].bridge == ""
    view = ch.apply(view, ch.ChannelGone("c1", 16, 2.0))
    assert "b1" not in view.bridges


def test_facts_about_unknown_channels_change_nothing() -> None:
    view = ch.PbxView()
    assert ch.apply(view, ch.ChannelUp("x", 1.0)) == view
    assert ch.apply(view, ch.ChannelGone("x", 16, 1.0)) == view
    assert ch.apply(view, ch.HangupRequested("x", 16, soft=False, at=1.0)) == view


def test_a_listing_rebuilds_the_picture_and_keeps_known_requests() -> None:
    before = picture(ch.ChannelNew("a1", "PJSIP/agent1001-2", "c1"),
                     ch.HangupRequested("a1", 17, soft=False, at=5.0),
                     ch.ChannelNew("gone", "PJSIP/agent1002-3", "gone"))
    view = ch.rebuilt([ch.Listed("a1", "PJSIP/agent1001-2", "c1", True, "b1"),
                       ch.Listed("c1", "PJSIP/caller-1", "c1", True, "b1")], before)
    assert set(view.channels) == {"a1", "c1"}
    assert view.channels["a1"].far_end_hangup == ch.HangupAsked(17, False, 5.0)
    assert view.channels["a1"].up and view.bridges["b1"] == frozenset({"a1", "c1"})
