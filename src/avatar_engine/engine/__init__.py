"""Sessions and the tick: every session's per-tick state in rows of engine-owned arrays."""
