"""Tickets (issue 19): the store, the REST API, the escalation watcher and the board backlog;
the rules are the core's (engine/tickets.py)."""
