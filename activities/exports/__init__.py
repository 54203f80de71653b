"""The export workflow's activities and its sinks (one module each)."""
