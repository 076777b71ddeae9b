"""The core's typed PBX actions and queries as AMI wire fields (sans I/O).

The core and the features say what they want of Asterisk in typed effects
(``callflow.engine.effects``); this is the one place that knows AMI's names for
them, so a field spelled wrong is wrong in one place and unit-tested there.
"""

from __future__ import annotations

from callflow.engine.effects import (
    Atxfer,
    CancelAtxfer,
    Hangup,
    ListChannels,
    ListContacts,
    ListEndpoints,
    ListRegistrations,
    MuteAudio,
    Originate,
    PbxAction,
    PbxQuery,
    PlayDtmf,
    Redirect,
    SetVariable,
    ShowEndpoint,
    StartRecording,
)
from callflow.errors import CallflowError

#: AMI field values: plain strings, or a list for a repeated header (Originate's Variable).
Fields = dict[str, str | list[str]]

QUERIES: dict[type[PbxQuery], str] = {
    ListChannels: "CoreShowChannels",
    ListEndpoints: "PJSIPShowEndpoints",
    ListContacts: "PJSIPShowContacts",
    ShowEndpoint: "PJSIPShowEndpoint",
    ListRegistrations: "PJSIPShowRegistrationsOutbound",
}


def encode(action: PbxAction) -> tuple[str, Fields]:
    """``(action name, fields)`` of one typed action."""
    if isinstance(action, Originate):
        return "Originate", _originate(action)
    if isinstance(action, Hangup):
        return "Hangup", {"Channel": action.channel, "Cause": str(action.cause)}
    if isinstance(action, Atxfer):
        return "Atxfer", {"Channel": action.channel, "Exten": action.exten,
                          "Context": action.context}
    if isinstance(action, CancelAtxfer):
        return "CancelAtxfer", {"Channel": action.channel}
    if isinstance(action, PlayDtmf):
        return "PlayDTMF", {"Channel": action.channel, "Digit": action.digit,
                            "Receive": "true" if action.receive else "false"}
    if isinstance(action, Redirect):
        return "Redirect", {"Channel": action.channel, "Context": action.context,
                            "Exten": action.exten, "Priority": str(action.priority)}
    if isinstance(action, SetVariable):
        return "Setvar", {"Channel": action.channel, "Variable": action.variable,
                          "Value": action.value}
    if isinstance(action, MuteAudio):
        return "MuteAudio", {"Channel": action.channel, "Direction": action.direction,
                             "State": "on" if action.muted else "off"}
    if isinstance(action, StartRecording):
        return "MixMonitor", {"Channel": action.channel, "File": action.file,
                              "Options": action.options}
    raise CallflowError(f"no AMI encoding for {action!r}")


def query_name(query: PbxQuery) -> str:
    """The AMI EventList action of a typed query."""
    name = QUERIES.get(type(query))
    if name is None:
        raise CallflowError(f"no AMI listing for {query!r}")
    return name


def query_fields(query: PbxQuery) -> dict[str, str]:
    """The AMI fields of a typed query (most listings take none)."""
    if isinstance(query, ShowEndpoint):
        return {"Endpoint": query.endpoint}
    return {}


def _originate(action: Originate) -> Fields:
    fields: Fields = {"Channel": action.channel, "Async": "true"}
    if action.application:
        fields["Application"] = action.application
        fields["Data"] = action.data
    else:
        fields.update(Context=action.context, Exten=action.exten,
                      Priority=str(action.priority))
    if action.caller_id:
        fields["CallerID"] = action.caller_id
    if action.timeout_ms is not None:
        fields["Timeout"] = str(action.timeout_ms)
    if action.variables:
        fields["Variable"] = [f"{name}={value}" for name, value in action.variables]
    if action.channel_id:
        fields["ChannelId"] = action.channel_id
    if action.other_channel_id:
        fields["OtherChannelId"] = action.other_channel_id
    return fields
