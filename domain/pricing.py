"""Model prices from litellm's bundled catalogue, read as a file.

litellm phones home when imported, so it is never imported: the JSON that ships inside its wheel (the
version pinned in uv.lock) is located through the installed distribution's metadata and parsed here.
"""

from __future__ import annotations

import json
from functools import cache
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from schemas.calls import ResolvedPrice
from schemas.routes import Price

CATALOGUE_FILE = "litellm/model_prices_and_context_window_backup.json"
_PER_MTOK = 1_000_000


def catalogue_path() -> Path | None:
    try:
        path = Path(str(distribution("litellm").locate_file(CATALOGUE_FILE)))
    except PackageNotFoundError:
        return None
    return path if path.is_file() else None


@cache
def load_catalogue() -> dict[str, dict[str, object]]:
    """Model name -> catalogue entry; empty when litellm's file is not installed."""
    path = catalogue_path()
    if path is None:
        return {}
    entries = json.loads(path.read_text())
    return {name: entry for name, entry in entries.items() if isinstance(entry, dict)}


def resolve_price(model: str, override: Price | None) -> ResolvedPrice:
    """A deployment's price: the routes file's override, else the catalogue's, else unknown (0)."""
    if override is not None:
        return ResolvedPrice(
            input_per_mtok=override.input_per_mtok, output_per_mtok=override.output_per_mtok, known=True
        )
    entry = load_catalogue().get(model)
    if entry is not None:
        per_in, per_out = entry.get("input_cost_per_token"), entry.get("output_cost_per_token")
        if isinstance(per_in, int | float) and isinstance(per_out, int | float):
            return ResolvedPrice(input_per_mtok=per_in * _PER_MTOK, output_per_mtok=per_out * _PER_MTOK, known=True)
    return ResolvedPrice(input_per_mtok=0.0, output_per_mtok=0.0, known=False)


def cost_usd(price: ResolvedPrice, input_tokens: int, output_tokens: int) -> float:
    return round((input_tokens * price.input_per_mtok + output_tokens * price.output_per_mtok) / _PER_MTOK, 10)
