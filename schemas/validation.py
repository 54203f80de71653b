"""One way to say where a pydantic validation error is: `routes.fast[0].provider: unknown provider`."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any


def location(loc: Sequence[int | str], *, skip: Collection[str] = ()) -> str:
    """A dotted path with list indices in brackets; `skip` drops parts that mean nothing to the reader
    (FastAPI's `body`, the tag names of a discriminated union)."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part not in skip:
            path += f".{part}" if path else str(part)
    return path


def describe(error: Mapping[str, Any], *, skip: Collection[str] = ()) -> str:
    """`where: message` for one pydantic error (its `Value error, ` prefix removed)."""
    where = location(error.get("loc", ()), skip=skip)
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message
