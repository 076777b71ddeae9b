"""The warm transfer's AMI actions as Asterisk's manager.c reads them (action_atxfer,
action_cancel_atxfer: ``Channel``, ``Exten``, ``Context``)."""

from __future__ import annotations

from callflow.ami.actions import encode
from callflow.engine.effects import Atxfer, CancelAtxfer, PressKey


def test_atxfer_names_the_agents_leg_the_extension_and_the_context() -> None:
    assert encode(Atxfer("PJSIP/agent1001-00000001", "1002", "agents")) == (
        "Atxfer", {"Channel": "PJSIP/agent1001-00000001", "Exten": "1002",
                   "Context": "agents"})


def test_cancel_atxfer_names_the_agents_leg() -> None:
    assert encode(CancelAtxfer("PJSIP/agent1001-00000001")) == (
        "CancelAtxfer", {"Channel": "PJSIP/agent1001-00000001"})


def test_press_key_is_playdtmf_received_on_the_leg() -> None:
    """The engine types a feature code as if the agent's phone sent it (``Receive``)."""
    assert encode(PressKey("PJSIP/agent1001-00000001", "*", 120)) == (
        "PlayDTMF", {"Channel": "PJSIP/agent1001-00000001", "Digit": "*",
                     "Duration": "120", "Receive": "true"})
