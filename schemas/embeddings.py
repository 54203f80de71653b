"""Embeddings: OpenAI's `POST /v1/embeddings` request and answer, what an embedding job carries, and its vectors.

A job keeps its vectors the way OpenAI's `encoding_format: "base64"` writes them (little-endian float32,
base64): a quarter of the size of JSON floats in the workflow history, and the API hands them out either way.
`encode_vector` builds that text and `decode_vector` reads it.
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

MAX_INPUTS = 2048
"""OpenAI's limit on the inputs of one request."""
MAX_VECTOR_VALUES = 250_000
"""Values one job may hold (inputs x dimensions): kept as base64 float32 in the workflow's history, whose
payloads Temporal caps at 2 MB, this stays near 1.3 MB."""
ASSUMED_DIMENSIONS = 3072
"""What a request that names no `dimensions` is budgeted at: the largest of OpenAI's embedding models."""

_Text = Annotated[str, Field(min_length=1)]
_Token = Annotated[int, Field(ge=0)]
_Tokens = Annotated[list[_Token], Field(min_length=1)]
EmbeddingInputValue = (
    _Text
    | Annotated[list[_Text], Field(min_length=1, max_length=MAX_INPUTS)]
    | _Tokens
    | Annotated[list[_Tokens], Field(min_length=1, max_length=MAX_INPUTS)]
)
"""A string, a list of strings, a token list, or a list of token lists (OpenAI's `input`)."""


class EmbeddingInput(BaseModel):
    """What an embedding job asks its deployment for: OpenAI's request without the envelope.

    Fields Kintsugi does not declare are kept and forwarded to OpenAI-kind providers, as for chat.
    """

    model_config = ConfigDict(extra="allow")

    input: EmbeddingInputValue
    dimensions: int | None = Field(default=None, ge=1, le=65_536)
    user: str | None = None

    @model_validator(mode="after")
    def _fits_a_job(self) -> EmbeddingInput:
        dimensions = self.dimensions or ASSUMED_DIMENSIONS
        if len(self.texts()) * dimensions > MAX_VECTOR_VALUES:
            most = max(1, MAX_VECTOR_VALUES // dimensions)
            raise ValueError(
                f"at most {most} inputs of {dimensions} dimensions in one request (the vectors are kept in the "
                "job's durable history); split the batch"
            )
        return self

    def declared(self) -> dict[str, Any]:
        """The fields set, declared or not, as the provider's JSON (None left out)."""
        return self.model_dump(mode="json", exclude_none=True)

    def texts(self) -> list[str]:
        """Each input as text, in order (a token list as its JSON), for what must read the inputs one by one."""
        value = self.input
        if isinstance(value, str):
            return [value]
        if value and isinstance(value[0], int):
            return [json.dumps(value)]
        return [item if isinstance(item, str) else json.dumps(item) for item in value]


class EmbeddingRequest(EmbeddingInput):
    """OpenAI's `POST /v1/embeddings` body."""

    model: str = Field(min_length=1, max_length=200)
    encoding_format: Literal["float", "base64"] = "float"
    """How the answer's vectors are written; the job keeps them as base64 whichever is asked."""

    def job_input(self) -> EmbeddingInput:
        """What the job carries: everything but the envelope (model, answer encoding)."""
        return EmbeddingInput.model_validate(self.model_dump(exclude={"model", "encoding_format"}, exclude_none=True))


class Embedding(BaseModel):
    """One vector of an embedding job's result."""

    index: int = Field(ge=0)
    """The position of its input in the request."""
    embedding: str
    """Little-endian float32 values, base64 (`encode_vector`), as OpenAI's `encoding_format: "base64"`."""


def encode_vector(values: Sequence[float]) -> str:
    """A vector as OpenAI's base64 encoding writes it: little-endian float32, base64."""
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode("ascii")


def decode_vector(text: str) -> list[float]:
    """The floats of `encode_vector`'s text (or of an upstream's base64 vector)."""
    raw = base64.b64decode(text, validate=True)
    if len(raw) % 4:
        raise ValueError(f"a base64 vector holds whole float32 values; got {len(raw)} bytes")
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


class EmbeddingData(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str
    """Floats, or base64 when the request asked `encoding_format: "base64"`."""


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(BaseModel):
    """OpenAI's answer to `POST /v1/embeddings`."""

    object: Literal["list"] = "list"
    data: list[EmbeddingData]
    model: str
    usage: EmbeddingUsage
