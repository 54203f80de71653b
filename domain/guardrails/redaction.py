"""Redaction: each span a guardrail found replaced by a placeholder naming its kind (`[EMAIL]`, `[API_KEY]`), in
one pass over the original text."""

from __future__ import annotations

from collections.abc import Iterable

from schemas.decisions import Finding

PLACEHOLDERS = {"banned_term": "[REDACTED]"}
"""A redacted span's replacement, where it is not its kind in capitals (`[EMAIL]`, `[API_KEY]`)."""


def placeholder(kind: str) -> str:
    return PLACEHOLDERS.get(kind, f"[{kind.upper()}]")


def redact(text: str, findings: Iterable[Finding]) -> str:
    """`text` with each finding's span replaced by its placeholder; overlapping spans become one, named by the
    one that starts first (the longer one when two start together)."""
    merged: list[tuple[int, int, str]] = []
    for finding in sorted(findings, key=lambda f: (f.start, -f.end)):
        if merged and finding.start < merged[-1][1]:
            start, end, kind = merged[-1]
            merged[-1] = (start, max(end, finding.end), kind)
        else:
            merged.append((finding.start, finding.end, finding.kind))
    pieces, cursor = [], 0
    for start, end, kind in merged:
        pieces.append(text[cursor:start])
        pieces.append(placeholder(kind))
        cursor = end
    pieces.append(text[cursor:])
    return "".join(pieces)
