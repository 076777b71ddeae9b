"""Agents: the pure agent state machine (``state``), its events, the roster (who the
agents are, ``roster``), desks (hot-desking) and the rebuilding of agents after a
restart (``restore``). No transport, no store."""
