"""Where a streaming provider hands each chunk as it arrives (the relay to the API replica holding the
client's connection), in OpenAI's `chat.completion.chunk` shape whatever the provider speaks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

ChunkSink = Callable[[dict[str, Any]], Awaitable[None]]
