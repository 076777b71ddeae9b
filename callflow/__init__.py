"""callflow: a call-flow engine for contact centres on Asterisk (see README.md)."""
