"""Pydantic models that cross a boundary: API <-> workflow <-> activity, and the routes file."""
