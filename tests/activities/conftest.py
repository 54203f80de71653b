"""Fixtures of the activity and provider tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """The shared client a worker hands its providers (no retries of its own)."""
    async with httpx.AsyncClient() as client:
        yield client
