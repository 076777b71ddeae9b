"""The demo: a pretend carrier for outbound calls and ``callflow demo``'s simulated callers
and agents' softphones, so a fresh ``make run`` fills with real calls through the real
Asterisk. Everything here is marked as demo on every page (``api/demo_marker.py``)."""
