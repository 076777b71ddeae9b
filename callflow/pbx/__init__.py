"""Run a real Asterisk for callflow: build its root, render its configuration, start and stop it."""
