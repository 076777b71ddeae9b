"""Agents: the pure agent state machine (``state``), its events, desks (hot-desking) and
the rebuilding of agents after a restart (``restore``). No transport, no store."""
