"""Agents: the state machine (``state``), its events, the desktop protocol and feature,
desks (hot-desking) and restore after a restart."""
