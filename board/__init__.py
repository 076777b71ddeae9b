"""callflow.board: the supervisor board feature (live view, alarms, supervisor actions,
reports, queue_log, metrics)."""
