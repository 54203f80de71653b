"""Prompt similarity: an exact hash plus a MinHash signature cut into LSH bands.

Two prompts are near-duplicates when the Jaccard similarity of their shingle sets is at least a policy's
threshold (`similarity.threshold`, default 0.9; `cache.near_duplicate`, default 0.95). The signature estimates
that similarity; the bands let the store find candidates by equality (`store.queries.similarity`) instead of
comparing a prompt with every earlier one.

Signatures and band hashes are stored, so everything here is fixed by module constants: changing `NUM_PERM`,
`BANDS`, `SEED`, the shingle size or the shingle hash makes new prints incomparable with stored ones.
"""

from __future__ import annotations

import functools
import hashlib
import operator
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from datasketch import MinHash

from schemas.calls import SimilarityMethod
from schemas.messages import ChatMessage, FilePart, ImagePart, RefusalPart, TextPart

NUM_PERM = 256
"""Hash functions in a signature. The estimate's standard error at Jaccard 0.9 is sqrt(0.9 * 0.1 / 256) ≈
0.019 (0.027 at 128). Measured on one-word edits of 35-word prompts, where the true Jaccard sits just above
0.9: 256 flags 82% of pairs as ≥ 0.9 against a true 83%, 128 only 69%. A 2 KB prompt prints in ~0.8 ms
(0.6 ms at 128)."""
BANDS = 32
ROWS = 8
"""LSH: a pair becomes a candidate when all ROWS values of at least one of the BANDS bands agree, which
happens with probability 1 - (1 - s^ROWS)^BANDS for a pair of Jaccard s. With 32 x 8:
s = 0.95 → 1 - 1e-15, 0.9 → 1 - 2e-8, 0.85 → 0.99996, 0.8 → 0.997, 0.7 → 0.85, 0.6 → 0.42, 0.5 → 0.12,
0.3 → 0.002. So the default threshold 0.9 (and the cache's 0.95) is always found, a policy's 0.8 in 997 of
1,000 pairs, and unrelated prompts rarely cost a signature fetch. (64 x 4 would find 0.7 always but make 98%
of s = 0.5 pairs candidates: prompts sharing a long system prompt would flood the candidate query.)"""
SEED = 1
"""Seeds the permutations: every process must draw the same ones."""
SHINGLE = 5
"""Character 5-grams rather than word 3-grams: a short prompt still has many shingles (a 60-word prompt has
~350, against ~58 word 3-grams), so one changed word moves the Jaccard by ~0.05 instead of ~0.1, and scores
stay stable for short prompts; 5 characters are long enough that unrelated English texts share few."""

_MIX_1 = np.uint64(0x9E3779B97F4A7C15)
_MIX_2 = np.uint64(0xBF58476D1CE4E5B9)
_SHIFT = np.uint64(31)
_HIGH = np.uint64(32)
_BAND_SALT = b"kintsugi-lsh-v1"
"""Part of each band hash: a future change of the signature scheme bumps it so old bands stop matching."""


@dataclass(frozen=True)
class PromptPrint:
    """What the store keeps of a prompt to find its duplicates: never the text itself."""

    exact_hash: str
    """sha256 hex of the normalised text."""
    signature: tuple[int, ...]
    """NUM_PERM MinHash values (uint32); empty for an empty text."""
    bands: tuple[str, ...]
    """BANDS short hex hashes, each of the band's index and values; empty for an empty text."""

    @property
    def empty(self) -> bool:
        """An empty prompt matches nothing and is not recorded (see `prompt_print`)."""
        return not self.signature


@dataclass(frozen=True)
class SimilarityMatch:
    """The earlier job a prompt matched, and how."""

    matched_job_id: str
    score: float
    """1.0 for `exact`; the estimated Jaccard similarity for `minhash`."""
    method: SimilarityMethod


def prompt_text(messages: Sequence[ChatMessage]) -> str:
    """The text similarity compares: one line per message, `role: text`, normalised.

    A message's text is its string content or its text and refusal parts, an image's https URL (not a
    `data:` URL), a file's name and id (not its data), its refusal, and its tool calls as `name(arguments)`.
    Audio, inline bytes, call ids (fresh on every request) and sender names count for nothing. Each line is
    NFKC-normalised, case-folded and has its whitespace collapsed, so it never holds the newline that
    separates the lines.
    An embedding job's input is not messages: its caller builds the text (or skips similarity).
    """
    return "\n".join(_normalise(f"{message.role}: {_message_text(message)}") for message in messages)


def _message_text(message: ChatMessage) -> str:
    pieces: list[str] = []
    if isinstance(message.content, str):
        pieces.append(message.content)
    for part in message.content if isinstance(message.content, list) else []:
        if isinstance(part, TextPart):
            pieces.append(part.text)
        elif isinstance(part, RefusalPart):
            pieces.append(part.refusal)
        elif isinstance(part, ImagePart) and not part.image_url.url.startswith("data:"):
            pieces.append(part.image_url.url)
        elif isinstance(part, FilePart):
            pieces.extend(text for text in (part.file.filename, part.file.file_id) if text)
    if message.refusal:
        pieces.append(message.refusal)
    for call in message.tool_calls or []:
        pieces.append(f"{call.function.name}({call.function.arguments})")
    return " ".join(pieces)


def _normalise(text: str) -> str:
    # casefold rather than lower: it also folds ß/ss and similar, which lower() leaves apart.
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


REMEMBERED_TEXT_CHARS = 4096
"""Prints of texts up to this long are remembered (the last 1,024): a prompt that repeats — the case this
module exists for — is printed once per process, and the memory stays under ~10 MB."""


def prompt_print(text: str) -> PromptPrint:
    """The exact hash, MinHash signature and LSH bands of a normalised text (`prompt_text`).

    An empty text gets its hash but no signature and no bands: it is not a prompt anyone repeats, and
    `store.queries.similarity` neither records nor matches it (every embedding job would otherwise be an
    exact duplicate of every other).
    """
    return _remembered_print(text) if len(text) <= REMEMBERED_TEXT_CHARS else _print(text)


@functools.lru_cache(maxsize=1024)
def _remembered_print(text: str) -> PromptPrint:
    return _print(text)


def _print(text: str) -> PromptPrint:
    exact_hash = hashlib.sha256(text.encode("utf-8")).hexdigest()
    if not text:
        return PromptPrint(exact_hash=exact_hash, signature=(), bands=())
    minhash = MinHash(
        num_perm=NUM_PERM, seed=SEED, scheme="affine32", hashfunc=_already_hashed, permutations=_permutations()
    )
    minhash.update_batch(_shingle_hashes(text))
    values = minhash.hashvalues.astype("<u4")
    bands = tuple(_band_hash(band, values[band * ROWS : (band + 1) * ROWS]) for band in range(BANDS))
    return PromptPrint(exact_hash=exact_hash, signature=tuple(values.tolist()), bands=bands)


def similarity(a: Sequence[int], b: Sequence[int]) -> float:
    """The estimated Jaccard similarity of two signatures: the share of positions where they agree.

    Signatures of different lengths (another NUM_PERM) or empty ones are not comparable: 0.0.
    """
    if not a or len(a) != len(b):
        return 0.0
    return sum(map(operator.eq, a, b)) / len(a)


@functools.cache
def _permutations() -> np.ndarray:
    # The scheme is pinned: datasketch 2.0 changed its default, and stored signatures must stay comparable.
    # Drawing the permutations costs ~0.2 ms, a quarter of a print, so they are drawn once per process.
    permutations: np.ndarray = MinHash(num_perm=NUM_PERM, seed=SEED, scheme="affine32").permutations
    return permutations


def _already_hashed(value: int) -> int:
    return value


def _shingle_hashes(text: str) -> list[int]:
    """A 32-bit hash of each distinct character SHINGLE-gram (the whole text when shorter), vectorised.

    The usual path (a set of shingle strings, each SHA-1-hashed by datasketch in a Python loop) took 1.6 ms
    for 2 KB; this hashes all windows at once with numpy (~0.15 ms). It must be deterministic across
    processes, so no `hash()`.
    datasketch premixes these values (MurmurHash3's finaliser) before permuting, so 32 bits suffice.
    """
    codes = np.frombuffer(text.encode("utf-32-le"), dtype="<u4").astype(np.uint64)
    width = min(SHINGLE, len(codes))
    count = len(codes) - width + 1
    mixed = np.full(count, 0x243F6A8885A308D3, dtype=np.uint64)
    for offset in range(width):
        mixed = (mixed ^ codes[offset : offset + count]) * _MIX_1
        mixed ^= mixed >> _SHIFT
    mixed *= _MIX_2
    mixed ^= mixed >> _SHIFT
    hashes: list[int] = np.unique(mixed >> _HIGH).tolist()
    return hashes


def _band_hash(band: int, values: np.ndarray) -> str:
    # The index is hashed in so equal values in different bands are different buckets; 8 bytes (16 hex
    # characters, the column holds 64) make an accidental collision within a tenant negligible.
    digest = hashlib.blake2b(band.to_bytes(2, "little") + values.tobytes(), digest_size=8, person=_BAND_SALT)
    return digest.hexdigest()
