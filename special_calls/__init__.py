"""callflow.special_calls: hold limits, the held caller's choice and the special-call
scripts, as a feature."""
