"""`POST /v1/embeddings` through the official OpenAI SDK over real HTTP: each request a job, billed once."""

from __future__ import annotations

import base64
import struct
from collections.abc import AsyncIterator

import openai
import pytest

from tests.support.fake_embeddings import expected_vector
from tests.support.harness import Harness
from tests.support.sdk import openai_sdk


def floats(text: str) -> list[float]:
    """OpenAI's base64 vector read independently of Kintsugi: little-endian float32."""
    packed = base64.b64decode(text)
    return list(struct.unpack(f"<{len(packed) // 4}f", packed))


@pytest.fixture
async def sdk(kintsugi_db: Harness) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai_sdk(kintsugi_db) as client:
        yield client


async def test_float_embeddings_are_a_job_billed_once(sdk: openai.AsyncOpenAI, kintsugi_db: Harness) -> None:
    raw = await sdk.embeddings.with_raw_response.create(
        model="embed", input=["hello", "kintsugi"], encoding_format="float", dimensions=3, user="u-7"
    )
    answer = raw.parse()
    job_id = raw.headers["x-kintsugi-job-id"]

    assert [(d.index, d.embedding) for d in answer.data] == [
        (0, expected_vector("hello", 3)),
        (1, expected_vector("kintsugi", 3)),
    ]
    assert answer.model == "embed"
    assert answer.usage.prompt_tokens == answer.usage.total_tokens == 1 + 2
    sent = kintsugi_db.upstream.last_request(kintsugi_db.model("e"))
    assert sent["path"] == "/v1/embeddings"
    assert sent["body"] == {
        "model": kintsugi_db.model("e"),
        "input": ["hello", "kintsugi"],
        "dimensions": 3,
        "user": "u-7",
        "encoding_format": "float",
    }
    (row,) = await kintsugi_db.cost_rows(job_id)
    assert (row.provider, row.model, row.input_tokens, row.output_tokens) == ("up", kintsugi_db.model("e"), 3, 0)
    job = (await kintsugi_db.http.get(f"/v1/jobs/{job_id}", headers=kintsugi_db.admin)).json()
    assert (job["status"], job["model"], job["usage"]["input_tokens"]) == ("succeeded", "embed", 3)
    assert [e["index"] for e in job["result"]["embeddings"]] == [0, 1]


async def test_base64_embeddings_as_the_sdk_asks_by_default(sdk: openai.AsyncOpenAI) -> None:
    # The SDK asks for base64 unless told otherwise, and decodes it itself.
    decoded = await sdk.embeddings.create(model="embed", input="hello")
    raw = await sdk.embeddings.create(model="embed", input=[[1, 2, 3]], encoding_format="base64")

    assert decoded.data[0].embedding == expected_vector("hello")
    text = raw.data[0].embedding
    assert isinstance(text, str)
    assert floats(text) == expected_vector("[1, 2, 3]")


async def test_the_simulator_embeds_deterministically(sdk: openai.AsyncOpenAI) -> None:
    first = await sdk.embeddings.create(model="embed-sim", input=["a", "b"], encoding_format="float")
    again = await sdk.embeddings.create(model="embed-sim", input="a", dimensions=16, encoding_format="float")
    same = await sdk.embeddings.create(model="embed-sim", input=["a"], encoding_format="float")

    assert len(first.data[0].embedding) == 64 and len(again.data[0].embedding) == 16
    assert first.data[0].embedding != first.data[1].embedding
    assert same.data[0].embedding == first.data[0].embedding


async def test_requests_for_the_wrong_kind_of_route_are_refused(sdk: openai.AsyncOpenAI, kintsugi_db: Harness) -> None:
    with pytest.raises(openai.BadRequestError) as chat_to_embed:
        await sdk.chat.completions.create(model="embed", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError) as embed_to_chat:
        await sdk.embeddings.create(model="primary", input="x")
    with pytest.raises(openai.NotFoundError) as unknown:
        await sdk.embeddings.create(model="nope", input="x")
    with pytest.raises(openai.UnprocessableEntityError) as empty:
        await sdk.embeddings.create(model="embed", input=[])

    assert chat_to_embed.value.code == embed_to_chat.value.code == "model_type_mismatch"
    assert "serves embedding requests, not chat" in chat_to_embed.value.message
    assert unknown.value.code == "unknown_model"
    assert empty.value.code == "validation_error"
    assert kintsugi_db.upstream.calls(kintsugi_db.model("e")) == 0
    assert kintsugi_db.upstream.calls(kintsugi_db.model("a")) == 0


async def test_an_embedding_job_through_the_job_api(kintsugi_db: Harness) -> None:
    body = {"model": "embed", "kind": "embedding", "embedding": {"input": "hi"}}
    job = (await kintsugi_db.submit(body, wait=10)).json()
    chat_shaped = await kintsugi_db.submit({"model": "embed", "messages": [{"role": "user", "content": "x"}]})
    no_input = await kintsugi_db.submit({"model": "embed", "kind": "embedding"})

    assert job["status"] == "succeeded", job
    (vector,) = job["result"]["embeddings"]
    assert floats(vector["embedding"]) == expected_vector("hi")
    assert len(await kintsugi_db.cost_rows(job["id"])) == 1
    trace = await kintsugi_db.http.get(f"/v1/jobs/{job['id']}/trace", headers=kintsugi_db.admin)
    assert trace.status_code == 200, trace.text
    assert (chat_shaped.status_code, chat_shaped.json()["error"]["code"]) == (400, "model_type_mismatch")
    assert (no_input.status_code, no_input.json()["error"]["code"]) == (422, "validation_error")


async def test_a_batch_too_large_for_a_durable_job_is_refused_before_any_call(kintsugi_db: Harness) -> None:
    body = {"model": "embed-sim", "input": ["text"] * 100, "dimensions": 3072}

    response = await kintsugi_db.http.post("/v1/embeddings", json=body, headers=kintsugi_db.admin)

    assert response.status_code == 422
    assert "split the batch" in response.json()["error"]["message"]
