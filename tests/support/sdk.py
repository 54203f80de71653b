"""The official OpenAI SDK pointed at a test's own Kintsugi over real HTTP."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import openai

from tests.support.harness import ADMIN_KEY, Harness


@contextlib.asynccontextmanager
async def openai_sdk(harness: Harness) -> AsyncIterator[openai.AsyncOpenAI]:
    """An `AsyncOpenAI` client (admin key, no retries) of the harness's API served by `Harness.serve_http`."""
    async with harness.serve_http() as url:
        async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=ADMIN_KEY, max_retries=0) as client:
            yield client
