"""callflow.stream: the framework-free live stream (hub, sequence numbers, history,
snapshots, wire protocol)."""
