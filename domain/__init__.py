"""Pure product logic: no I/O, no clock. The API and the worker both call it; it raises domain errors."""
