"""A policy's banned terms: case-insensitive, and only as whole words, so "project x" is found in "Project X's
budget" but "ass" is not found in "class"."""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

from schemas.decisions import Finding


@lru_cache(maxsize=256)
def _pattern(terms: tuple[str, ...]) -> re.Pattern[str]:
    # Longest first, so "project x ray" wins over "project x" where both match; any run of whitespace in the
    # text matches a space in a term (a line break inside a phrase still counts).
    alternatives = sorted({r"\s+".join(map(re.escape, term.split())) for term in terms}, key=len, reverse=True)
    return re.compile(r"(?<!\w)(?:" + "|".join(alternatives) + r")(?!\w)", re.IGNORECASE)


def find_terms(text: str, terms: Sequence[str]) -> list[Finding]:
    """Where the banned `terms` occur in `text`, in text order."""
    if not terms:
        return []
    return [Finding(kind="banned_term", start=m.start(), end=m.end()) for m in _pattern(tuple(terms)).finditer(text)]
