"""Benchmarks: Kintsugi against a direct upstream call and a bare Temporal baseline."""
