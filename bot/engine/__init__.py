"""The operation engine: plans of steps, run under locks, persisted, with progress events."""
