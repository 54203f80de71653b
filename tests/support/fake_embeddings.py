"""The fake upstream's `POST /v1/embeddings`: a vector per input that a test can predict.

Input `i` (a string, or a token list read as its JSON) gets `[len(text), 0.25, 0.5, 0.75, ...]` of
`dimensions` values (default `DIMENSIONS`), exact in float32 so they survive any encoding unchanged; as
floats, or as base64 float32 when `encoding_format` is `base64`. Usage counts a token per 4 characters.
"""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

DIMENSIONS = 4


def expected_vector(text: str, dimensions: int = DIMENSIONS) -> list[float]:
    """The vector the fake answers for `text`."""
    return [float(len(text))] + [k / 4 for k in range(1, dimensions)]


def embeddings_body(body: dict[str, Any]) -> dict[str, Any]:
    raw = body.get("input")
    if isinstance(raw, str) or (isinstance(raw, list) and raw and isinstance(raw[0], int)):
        raw = [raw]
    texts = [item if isinstance(item, str) else json.dumps(item) for item in raw or []]
    dimensions = body.get("dimensions") or DIMENSIONS
    data = []
    for index, text in enumerate(texts):
        vector = expected_vector(text, dimensions)
        encoded: Any = vector
        if body.get("encoding_format") == "base64":
            encoded = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    tokens = sum(max(1, len(text) // 4) for text in texts)
    return {
        "object": "list",
        "data": data,
        "model": body.get("model"),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
