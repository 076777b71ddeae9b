"""callflow.runtime: owns the live calls and agents, feeds events to the pure machines and
carries out their effects."""
