"""The relay's wire contract between a worker and an API replica: one path, one header, one line shape."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

RELAY_PATH = "/internal/relay/{job_id}"
TOKEN_HEADER = "X-Kintsugi-Relay-Token"


class RelayMessage(BaseModel):
    """One JSON line of the relay body: a chunk of the call's answer, or its end."""

    call_seq: int
    attempt: int
    chunk: dict[str, Any] | None = None
    """OpenAI's `chat.completion.chunk`, whatever the provider spoke."""
    end: bool = False
    """The call succeeded; nothing follows."""
