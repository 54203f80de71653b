"""Reading server-sent events the way a browser's EventSource does: `id:` and `data:` lines, blank-line ends."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class Event:
    id: str | None
    data: str

    def json(self) -> Any:
        return json.loads(self.data)

    @property
    def text(self) -> str:
        """The content this chunk adds (every choice's delta)."""
        if self.data == "[DONE]":
            return ""
        return "".join((c.get("delta") or {}).get("content") or "" for c in self.json().get("choices") or [])


async def events(response: httpx.Response) -> AsyncIterator[Event]:
    event_id: str | None = None
    data: list[str] = []
    async for line in response.aiter_lines():
        if line.startswith("id:"):
            event_id = line.removeprefix("id:").strip()
        elif line.startswith("data:"):
            data.append(line.removeprefix("data:").strip())
        elif line == "" and data:
            yield Event(event_id, "\n".join(data))
            event_id, data = None, []
