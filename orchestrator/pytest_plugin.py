"""pytest fixtures for users of the orchestrator (filled by the observers work)."""
