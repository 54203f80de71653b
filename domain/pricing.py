"""Model prices from litellm's bundled catalogue, read as a file, and what a call cost at them.

litellm phones home when imported, so it is never imported: the JSON that ships inside its wheel (the
version pinned in uv.lock) is located through the installed distribution's metadata and parsed here. Prices
follow litellm's own cost calculator: a missing cache price is the input price, a missing reasoning price the
output price, and a call over a long-context threshold pays the higher prices on every token.
"""

from __future__ import annotations

import json
import re
from functools import cache, lru_cache
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from schemas.jobs import Usage
from schemas.pricing import ResolvedPrice
from schemas.routes import Price

CATALOGUE_FILE = "litellm/model_prices_and_context_window_backup.json"
_PER_MTOK = 1_000_000
_NOT_MODELS = frozenset({"sample_spec"})
"""Entries that document the catalogue's fields rather than price a model."""

_SAME_MODEL_PREFIXES: dict[str, tuple[str, ...]] = {
    "openai": ("openai",),
    "anthropic": ("anthropic",),
    "bedrock": ("bedrock",),
    # Google serves Gemini both through AI Studio and through Vertex AI; the catalogue files some models
    # under one prefix only.
    "gemini": ("gemini", "vertex_ai"),
    "vertex_ai": ("vertex_ai", "gemini"),
}
"""A provider prefix of a model name (litellm's spelling, `openai/gpt-4o-mini`) -> the prefixes the catalogue
may file the same model under."""

_TIER_KEY = re.compile(
    r"^(?:input_cost_per_token|output_cost_per_token|cache_read_input_token_cost|cache_creation_input_token_cost)"
    r"_above_(\d+)(k?)_tokens$"
)
"""A long-context price (`input_cost_per_token_above_200k_tokens`); suffixed keys (`_batches`, `_priority`)
price other service tiers than the one we call."""
_INCLUSIVE_TIER_PROVIDERS = frozenset({"xai"})
"""Providers whose higher prices start at the threshold itself rather than above it (litellm's list)."""


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
    return {name: entry for name, entry in entries.items() if isinstance(entry, dict) and name not in _NOT_MODELS}


def catalogue_names(model: str, provider_kind: str | None = None) -> list[str]:
    """The catalogue names a deployment's model may go by, best first: as written; without its provider prefix
    (OpenAI's and Anthropic's models are filed bare); then under the prefixes of its own provider, or of the
    deployment's provider kind for a bare name (`gemini-exp-1114` is filed as `gemini/gemini-exp-1114` only)."""
    prefix, _, rest = model.partition("/")
    if rest and prefix in _SAME_MODEL_PREFIXES:
        bare, prefixes = rest, _SAME_MODEL_PREFIXES[prefix]
    else:
        bare, prefixes = model, _SAME_MODEL_PREFIXES.get(provider_kind or "", ())
        if bare.startswith("gemini-"):
            prefixes = (*prefixes, *_SAME_MODEL_PREFIXES["gemini"])
    return list(dict.fromkeys([model, bare, *(f"{p}/{bare}" for p in prefixes)]))


def find_entry(model: str, provider_kind: str | None = None) -> tuple[str, dict[str, object]] | None:
    """The catalogue entry of a deployment's model and its name, following an alias (`alias_of`) to its
    target; None when no name matches."""
    catalogue = load_catalogue()
    for name in catalogue_names(model, provider_kind):
        entry = catalogue.get(name)
        target = entry.get("alias_of") if entry is not None else None
        if isinstance(target, str):
            # As litellm serves aliases: one hop, to an entry that is not itself an alias.
            name, entry = target, catalogue.get(target)
            if entry is None or "alias_of" in entry:
                continue
        if entry is not None:
            return name, entry
    return None


def resolve_price(model: str, override: Price | None, *, provider_kind: str | None = None) -> ResolvedPrice:
    """A deployment's price: the routes file's override, else the catalogue's, else unknown (unpriced)."""
    if override is not None:
        return ResolvedPrice(
            input_per_mtok=override.input_per_mtok,
            output_per_mtok=override.output_per_mtok,
            cached_input_per_mtok=override.cached_input_per_mtok,
            cache_write_per_mtok=override.cache_write_per_mtok,
            reasoning_per_mtok=override.reasoning_per_mtok,
            known=True,
            source="override",
        )
    return _catalogue_price(model, provider_kind)


@lru_cache(maxsize=1024)
def _catalogue_price(model: str, provider_kind: str | None) -> ResolvedPrice:
    # Cached: preflight prices every deployment of every job, and the names to try are many.
    found = find_entry(model, provider_kind)
    price = _entry_price(*found) if found is not None else None
    if price is None:
        return ResolvedPrice(input_per_mtok=0.0, output_per_mtok=0.0, known=False, source="unknown")
    return price


def _entry_price(name: str, entry: dict[str, object]) -> ResolvedPrice | None:
    """The entry's per-token prices, or None when it has none this price can express: no flat input and
    output price, a `tiered_pricing` table (which outranks flat prices in litellm), or several thresholds."""
    input_rate, output_rate = _rate(entry, "input_cost_per_token"), _rate(entry, "output_cost_per_token")
    if input_rate is None or output_rate is None or "tiered_pricing" in entry:
        return None
    thresholds = {match.groups() for key in entry if (match := _TIER_KEY.match(key))}
    if len(thresholds) > 1:
        return None
    tier: dict[str, float | int | None] = {}
    if thresholds:
        ((count, thousands),) = thresholds
        suffix = f"_above_{count}{thousands}_tokens"
        threshold = int(count) * (1000 if thousands else 1)
        if entry.get("litellm_provider") in _INCLUSIVE_TIER_PROVIDERS:
            threshold -= 1  # `cost_usd` compares strictly: a tier that starts at the threshold starts a token lower
        tier = {
            "tier_threshold_tokens": threshold,
            "input_per_mtok_above": _or(_rate(entry, f"input_cost_per_token{suffix}"), input_rate),
            "output_per_mtok_above": _or(_rate(entry, f"output_cost_per_token{suffix}"), output_rate),
            "cached_input_per_mtok_above": _rate(entry, f"cache_read_input_token_cost{suffix}"),
            "cache_write_per_mtok_above": _rate(entry, f"cache_creation_input_token_cost{suffix}"),
        }
    return ResolvedPrice.model_validate(
        {
            "input_per_mtok": input_rate,
            "output_per_mtok": output_rate,
            "cached_input_per_mtok": _rate(entry, "cache_read_input_token_cost"),
            "cache_write_per_mtok": _rate(entry, "cache_creation_input_token_cost"),
            "reasoning_per_mtok": _rate(entry, "output_cost_per_reasoning_token"),
            **tier,
            "max_output_tokens": _whole(entry.get("max_output_tokens")),
            "known": True,
            "source": "catalogue",
            "name": name,
        }
    )


def _whole(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _rate(entry: dict[str, object], key: str) -> float | None:
    """A per-token price of the entry, per million tokens."""
    value = entry.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    # Rounded off the float noise of the scaling (1e-07 * 1e6 = 0.09999999999999999); no price is that fine.
    return round(value * _PER_MTOK, 9)


def cost_usd(price: ResolvedPrice, usage: Usage) -> float | None:
    """What a call cost in USD; None when its price is unknown (an unpriced call is not a free one)."""
    if not price.known:
        return None
    above = price.tier_threshold_tokens is not None and usage.input_tokens > price.tier_threshold_tokens
    if above:
        input_rate = _or(price.input_per_mtok_above, price.input_per_mtok)
        output_rate = _or(price.output_per_mtok_above, price.output_per_mtok)
        cached_rate = _or(price.cached_input_per_mtok_above, _or(price.cached_input_per_mtok, input_rate))
        write_rate = _or(price.cache_write_per_mtok_above, _or(price.cache_write_per_mtok, input_rate))
    else:
        input_rate, output_rate = price.input_per_mtok, price.output_per_mtok
        cached_rate = _or(price.cached_input_per_mtok, input_rate)
        write_rate = _or(price.cache_write_per_mtok, input_rate)
    reasoning_rate = _or(price.reasoning_per_mtok, output_rate)
    # The details are parts of the totals; counts from a provider that do not add up never bill below zero.
    uncached = max(usage.input_tokens - usage.cached_input_tokens - usage.cache_write_input_tokens, 0)
    answer = max(usage.output_tokens - usage.reasoning_tokens, 0)
    total = (
        uncached * input_rate
        + usage.cached_input_tokens * cached_rate
        + usage.cache_write_input_tokens * write_rate
        + answer * output_rate
        + usage.reasoning_tokens * reasoning_rate
    )
    return round(total / _PER_MTOK, 10)


def _or(rate: float | None, default: float) -> float:
    # Not `rate or default`: a price of 0 is a real price.
    return default if rate is None else rate
