"""Embeddings from an OpenAI-compatible server: `POST {base_url}/embeddings`, the job's fields forwarded.

Vectors are asked for as floats, which every OpenAI-compatible server writes (base64 is not universal), and
kept as base64 float32 (`schemas.embeddings.encode_vector`); a server answering base64 anyway is read too.
"""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import ValidationError

from activities.providers.errors import bad_response
from activities.providers.exchange import exchange
from domain.answers import as_dict, count
from schemas.calls import CallModelInput
from schemas.embeddings import Embedding, EmbeddingInput, decode_vector, encode_vector
from schemas.jobs import JobResult, Usage
from schemas.routes import OpenAIProvider

Completion = tuple[JobResult, Usage]


async def embed(
    http: httpx.AsyncClient,
    provider: OpenAIProvider,
    call: CallModelInput,
    embedding: EmbeddingInput,
    *,
    api_key: str | None,
) -> Completion:
    where = f"{call.deployment.provider}/{call.deployment.model}"
    request = http.build_request(
        "POST",
        f"{provider.base_url.rstrip('/')}/embeddings",
        json={**embedding.declared(), "model": call.deployment.model, "encoding_format": "float"},
        headers={"Authorization": f"Bearer {api_key}"} if api_key else None,
        timeout=httpx.Timeout(provider.timeout_s),
    )

    async def read(response: httpx.Response) -> Completion:
        try:
            body = response.json()
            vectors = _vectors(body["data"], expected=len(embedding.texts()))
        except (ValueError, KeyError, TypeError, ValidationError) as err:
            raise bad_response(where, f"{type(err).__name__}: {err}; body: {response.text[:500]}") from err
        usage = as_dict(body.get("usage"))
        return JobResult(embeddings=vectors), Usage(input_tokens=count(usage.get("prompt_tokens")), output_tokens=0)

    return await exchange(http, request, where, stream=False, read=read)


def _vectors(data: list[dict[str, Any]], *, expected: int) -> list[Embedding]:
    """One vector per input, in input order; raises ValueError when the answer does not hold exactly that."""
    by_index = {}
    for item in data:
        raw = item["embedding"]
        vector = decode_vector(raw) if isinstance(raw, str) else [float(x) for x in raw]
        by_index[int(item["index"])] = Embedding(index=int(item["index"]), embedding=encode_vector(vector))
    if sorted(by_index) != list(range(expected)):
        raise ValueError(f"expected vectors 0..{expected - 1}, got indexes {sorted(by_index)[:10]}")
    return [by_index[i] for i in range(expected)]
