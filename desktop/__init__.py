"""callflow.desktop: the agent desktop feature (websocket protocol, page, softphone holds,
restore)."""
