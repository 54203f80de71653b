"""The payload codec: prompts and answers reach Temporal's history compressed and encrypted (AES-256-GCM).

Every payload a client or worker sends (workflow and activity inputs and results, memos, failure details) goes
through `EncryptionCodec.encode`; anyone who reads the history without the key (the Temporal UI, `temporal
workflow show`) sees ciphertext. Each encrypted payload names the key that sealed it, so a key can rotate: the
new key encrypts, earlier ones (`KINTSUGI_CODEC_PREVIOUS_KEYS`) still decrypt what they sealed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

ENCRYPTED_ENCODING = b"binary/encrypted"
"""The `encoding` of a sealed payload: the name the Temporal UI and the SDK samples use for one."""
KEY_ID_METADATA = "encryption-key-id"
KEY_BYTES = 32
NONCE_BYTES = 12
"""AES-GCM's standard nonce; random per payload (2^-32 collision odds only after ~2^32 payloads per key)."""
_ENCODING_B64 = base64.b64encode(ENCRYPTED_ENCODING).decode()
"""How `ENCRYPTED_ENCODING` reads in a history's proto JSON, where metadata values are base64."""


class InvalidCodecKey(ValueError):
    """A codec key that is not 32 bytes in base64."""


class PayloadUndecryptable(ValueError):
    """A sealed payload that no configured key opens: sealed by an unknown key, or altered since."""

    def __init__(self, message: str, *, key_id: str) -> None:
        super().__init__(message)
        self.key_id = key_id


def decode_key(text: str) -> bytes:
    """The 32 key bytes of a base64 codec key (`openssl rand -base64 32`).

    Raises:
        InvalidCodecKey: not base64, or not 32 bytes once decoded; the message never repeats the key.
    """
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidCodecKey("a codec key must be base64 (`openssl rand -base64 32`)") from None
    if len(key) != KEY_BYTES:
        raise InvalidCodecKey(f"a codec key must be {KEY_BYTES} bytes once base64-decoded, not {len(key)}")
    return key


def key_id(key: bytes) -> str:
    """A short name for a key, stored beside each payload it sealed: a hash, so it tells nothing of the key."""
    return hashlib.sha256(b"kintsugi-codec-key-id\x00" + key).hexdigest()[:16]


@dataclass(frozen=True)
class CodecKey:
    id: str
    aead: AESGCM

    @classmethod
    def parse(cls, text: str) -> CodecKey:
        key = decode_key(text)
        return cls(id=key_id(key), aead=AESGCM(key))


class EncryptionCodec(PayloadCodec):
    """zlib, then AES-256-GCM with a random nonce; the key id is also the associated data, so a payload whose
    metadata was changed to name another key does not decrypt.

    Compressing before encrypting lets a payload's length hint at how repetitive it is; it never reveals its
    text, and prompts are long and repetitive enough that the smaller history is worth it.
    """

    def __init__(self, current: CodecKey, previous: Sequence[CodecKey] = ()) -> None:
        self._current = current
        self._keys = {key.id: key for key in (*previous, current)}

    @classmethod
    def from_keys(cls, current: str, previous: str = "") -> EncryptionCodec:
        """From `KINTSUGI_CODEC_KEY` and the comma-separated `KINTSUGI_CODEC_PREVIOUS_KEYS`.

        Raises:
            InvalidCodecKey: one of them is not a 32-byte base64 key.
        """
        return cls(CodecKey.parse(current), [CodecKey.parse(text) for text in previous.split(",") if text.strip()])

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.seal(payload) for payload in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Sealed payloads opened; any other payload (written before the codec was on) as it is.

        Raises:
            PayloadUndecryptable: a sealed payload no configured key opens.
        """
        return [self.open(payload) for payload in payloads]

    def seal(self, payload: Payload) -> Payload:
        key = self._current
        nonce = os.urandom(NONCE_BYTES)
        sealed = key.aead.encrypt(nonce, zlib.compress(payload.SerializeToString()), key.id.encode())
        return Payload(
            metadata={"encoding": ENCRYPTED_ENCODING, KEY_ID_METADATA: key.id.encode()},
            data=nonce + sealed,
        )

    def open(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCRYPTED_ENCODING:
            return payload
        name = payload.metadata.get(KEY_ID_METADATA, b"").decode(errors="replace")
        key = self._keys.get(name)
        if key is None:
            message = f"the payload was encrypted with key {name!r}, which is not one of this codec's keys"
            raise PayloadUndecryptable(message, key_id=name)
        nonce, sealed = payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:]
        try:
            plain = zlib.decompress(key.aead.decrypt(nonce, sealed, key.id.encode()))
        except (InvalidTag, zlib.error, ValueError):
            raise PayloadUndecryptable(f"the payload does not decrypt with key {name!r}", key_id=name) from None
        opened = Payload()
        opened.ParseFromString(plain)
        return opened


async def decode_history(history: dict[str, Any], codec: PayloadCodec) -> dict[str, Any]:
    """`history` (`WorkflowHistory.to_json_dict()`) with its sealed payloads opened in place, so the trace
    builder reads it as if no codec were on. A payload no key opens stays sealed: the trace shows less of it,
    as for any payload it cannot read, rather than failing whole."""
    for payload in _sealed_payloads(history):
        try:
            [opened] = await codec.decode([json_format.ParseDict(payload, Payload())])
        except PayloadUndecryptable:
            continue
        payload.clear()
        payload.update(json_format.MessageToDict(opened))
    return history


def _sealed_payloads(node: Any) -> Iterator[dict[str, Any]]:
    """Every payload object (`{"metadata": {"encoding": ...}, "data": ...}`) the codec sealed, at any depth."""
    if isinstance(node, dict):
        metadata = node.get("metadata")
        if isinstance(metadata, dict) and metadata.get("encoding") == _ENCODING_B64:
            yield node
            return
        for name, value in node.items():
            if name != "searchAttributes":  # the server indexes them, so no codec ever touches them
                yield from _sealed_payloads(value)
    elif isinstance(node, list):
        for value in node:
            yield from _sealed_payloads(value)
