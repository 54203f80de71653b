"""Temporal-client calls that the API and the worker both make: connect, start, read and list jobs."""
