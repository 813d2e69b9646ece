"""A deterministic mock venue: the engine, the in-process port over it, and (later) the process."""
