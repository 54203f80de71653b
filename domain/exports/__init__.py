"""What the export sinks read out of a finished job, pure (history JSON in, values out)."""
