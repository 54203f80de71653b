"""What many tests share: the repository's paths and the one message every job test sends."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HISTORIES = REPO / "tests" / "fixtures" / "histories"
"""Recorded job histories (`python -m tests.support.record_histories`), read by the trace and replay tests."""
SHIPPED_ROUTES = REPO / "config" / "routes.yaml"

HELLO = [{"role": "user", "content": "hello"}]
