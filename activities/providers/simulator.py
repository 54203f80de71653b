"""The built-in offline provider: fixed latency, optional failure rate, answers labelled as simulated."""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
import struct

from temporalio.exceptions import ApplicationError

from activities.providers.sink import ChunkSink
from domain.answers import estimate_tokens
from schemas.calls import CallModelInput
from schemas.embeddings import Embedding, EmbeddingInput, encode_vector
from schemas.errors import UPSTREAM_ERROR
from schemas.jobs import Choice, JobResult, Usage
from schemas.messages import AssistantMessage
from schemas.routes import SimulatorProvider

_ECHO_CHARS = 200
DEFAULT_DIMENSIONS = 64
"""The length of a simulated vector when the request sets no `dimensions`."""


async def _answer_after_latency(provider: SimulatorProvider, call: CallModelInput) -> None:
    await asyncio.sleep(provider.latency_ms / 1000)
    if provider.fail_rate and random.random() < provider.fail_rate:
        raise ApplicationError(
            f"{call.deployment.provider}/{call.deployment.model}: simulated failure", type=UPSTREAM_ERROR
        )


async def complete(
    provider: SimulatorProvider, call: CallModelInput, *, on_chunk: ChunkSink | None = None
) -> tuple[JobResult, Usage]:
    await _answer_after_latency(provider, call)
    users = [m for m in call.messages if m.role == "user"] or call.messages
    echo = users[-1].text()[:_ECHO_CHARS] if users else ""
    content = f"[simulated] {echo}"
    prompt = "".join(m.text() for m in call.messages)
    n = call.params.n or 1
    if on_chunk is not None:
        await _stream(provider, content, n, on_chunk)
    choices = [Choice(index=i, message=AssistantMessage(content=content), finish_reason="stop") for i in range(n)]
    return (
        JobResult(choices=choices),
        Usage(input_tokens=estimate_tokens(prompt), output_tokens=n * estimate_tokens(content)),
    )


async def _stream(provider: SimulatorProvider, content: str, n: int, on_chunk: ChunkSink) -> None:
    """The answer word by word, as an upstream streams it; the words spread over another `latency_ms`."""
    words = content.split(" ")
    pieces = [word if i == 0 else f" {word}" for i, word in enumerate(words)]
    await on_chunk({"choices": [{"index": i, "delta": {"role": "assistant", "content": ""}} for i in range(n)]})
    for piece in pieces:
        await asyncio.sleep(provider.latency_ms / 1000 / len(pieces))
        await on_chunk({"choices": [{"index": i, "delta": {"content": piece}} for i in range(n)]})


async def embed(
    provider: SimulatorProvider, call: CallModelInput, embedding: EmbeddingInput
) -> tuple[JobResult, Usage]:
    """A unit vector per input, the same for the same model, text and `dimensions` on every run."""
    await _answer_after_latency(provider, call)
    texts = embedding.texts()
    dimensions = embedding.dimensions or DEFAULT_DIMENSIONS
    # CPU work: off the event loop, so the worker's other calls keep heartbeating meanwhile.
    vectors = await asyncio.to_thread(_vectors, call.deployment.model, texts, dimensions)
    return JobResult(embeddings=vectors), Usage(input_tokens=sum(estimate_tokens(t) for t in texts), output_tokens=0)


def _vectors(model: str, texts: list[str], dimensions: int) -> list[Embedding]:
    return [
        Embedding(index=i, embedding=encode_vector(vector(f"{model}\x00{text}", dimensions)))
        for i, text in enumerate(texts)
    ]


def vector(seed: str, dimensions: int) -> list[float]:
    """A deterministic unit vector drawn from `seed`'s hash (blake2b in counter mode, 16 values a block)."""
    values: list[float] = []
    block = 0
    while len(values) < dimensions:
        digest = hashlib.blake2b(f"{block}:{seed}".encode()).digest()
        values.extend(x / 2**31 - 1.0 for x in struct.unpack("<16I", digest))
        block += 1
    values = values[:dimensions]
    norm = math.sqrt(sum(x * x for x in values)) or 1.0
    return [x / norm for x in values]
