"""The payload codec: what it writes hides the payload, and only a key it knows reads it back."""

from __future__ import annotations

import base64
import json
import os
from typing import Any

import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter

from client.codec import (
    KEY_ID_METADATA,
    EncryptionCodec,
    InvalidCodecKey,
    PayloadUndecryptable,
    decode_history,
    decode_key,
)
from domain.traces.history import decode_payload

PROMPT = "Summarise the quarterly figures for ACME Corp, confidential draft"


def new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def chat_payload(text: str = PROMPT) -> Payload:
    [payload] = pydantic_data_converter.payload_converter.to_payloads(
        [{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}]
    )
    return payload


async def test_a_sealed_payload_hides_its_text_and_opens_to_the_same_payload() -> None:
    codec = EncryptionCodec.from_keys(new_key())
    original = chat_payload()

    [sealed] = await codec.encode([original])
    [opened] = await codec.decode([sealed])

    assert PROMPT.encode() not in sealed.SerializeToString()
    assert sealed.metadata["encoding"] == b"binary/encrypted"
    assert opened == original


async def test_the_same_payload_seals_differently_each_time() -> None:
    codec = EncryptionCodec.from_keys(new_key())

    first, second = await codec.encode([chat_payload(), chat_payload()])

    assert first.data != second.data


async def test_a_repetitive_payload_is_compressed_before_it_is_encrypted() -> None:
    codec = EncryptionCodec.from_keys(new_key())
    original = chat_payload("the same sentence again. " * 400)

    [sealed] = await codec.encode([original])

    assert len(sealed.data) < len(original.data) / 10


async def test_another_key_does_not_open_a_payload() -> None:
    [sealed] = await EncryptionCodec.from_keys(new_key()).encode([chat_payload()])

    with pytest.raises(PayloadUndecryptable):
        await EncryptionCodec.from_keys(new_key()).decode([sealed])


async def test_an_altered_payload_is_refused() -> None:
    codec = EncryptionCodec.from_keys(new_key())
    [sealed] = await codec.encode([chat_payload()])
    altered = bytearray(sealed.data)
    altered[-1] ^= 1
    sealed.data = bytes(altered)

    with pytest.raises(PayloadUndecryptable):
        await codec.decode([sealed])


async def test_after_a_rotation_payloads_of_the_previous_key_still_open() -> None:
    old, new = new_key(), new_key()
    [sealed_before] = await EncryptionCodec.from_keys(old).encode([chat_payload()])
    rotated = EncryptionCodec.from_keys(new, f"{new_key()}, {old}")

    [opened] = await rotated.decode([sealed_before])
    [sealed_after] = await rotated.encode([chat_payload()])

    assert opened == chat_payload()
    assert sealed_after.metadata[KEY_ID_METADATA] != sealed_before.metadata[KEY_ID_METADATA]
    with pytest.raises(PayloadUndecryptable):  # the old key alone cannot read what the new key sealed
        await EncryptionCodec.from_keys(old).decode([sealed_after])


async def test_a_payload_written_before_the_codec_was_on_passes_through() -> None:
    plain = chat_payload()

    [decoded] = await EncryptionCodec.from_keys(new_key()).decode([plain])

    assert decoded == plain


@pytest.mark.parametrize("text", ["not base64!", base64.b64encode(b"short").decode(), ""])
def test_a_key_that_is_not_32_bytes_of_base64_is_refused(text: str) -> None:
    with pytest.raises(InvalidCodecKey):
        decode_key(text)


async def test_decode_history_opens_every_sealed_payload_and_leaves_search_attributes_alone() -> None:
    codec = EncryptionCodec.from_keys(new_key())
    [sealed_input, sealed_result] = await codec.encode([chat_payload(), chat_payload("the answer")])
    search_attribute = {"metadata": {"encoding": _b64("json/plain")}, "data": _b64('"tenant_a"')}
    history: dict[str, Any] = {
        "events": [
            {
                "eventType": "EVENT_TYPE_WORKFLOW_EXECUTION_STARTED",
                "workflowExecutionStartedEventAttributes": {
                    "input": {"payloads": [json_format.MessageToDict(sealed_input)]},
                    "searchAttributes": {"indexedFields": {"TenantId": search_attribute}},
                },
            },
            {
                "eventType": "EVENT_TYPE_ACTIVITY_TASK_COMPLETED",
                "activityTaskCompletedEventAttributes": {
                    "result": {"payloads": [json_format.MessageToDict(sealed_result)]}
                },
            },
        ]
    }

    decoded = await decode_history(history, codec)

    started = decoded["events"][0]["workflowExecutionStartedEventAttributes"]
    completed = decoded["events"][1]["activityTaskCompletedEventAttributes"]
    assert decode_payload(started["input"]["payloads"][0])["messages"][0]["content"] == PROMPT
    assert decode_payload(completed["result"]["payloads"][0])["messages"][0]["content"] == "the answer"
    assert started["searchAttributes"]["indexedFields"]["TenantId"] == search_attribute


async def test_decode_history_leaves_a_payload_no_key_opens_sealed() -> None:
    [sealed] = await EncryptionCodec.from_keys(new_key()).encode([chat_payload()])
    history = {"events": [{"x": {"input": {"payloads": [json_format.MessageToDict(sealed)]}}}]}
    before = json.dumps(history)

    decoded = await decode_history(history, EncryptionCodec.from_keys(new_key()))

    assert json.dumps(decoded) == before


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()
