"""callflow.outbound: the outbound dialer feature (callbacks, dropped-call recovery,
follow-ups) and its tasks API."""
