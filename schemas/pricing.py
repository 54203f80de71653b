"""A deployment's resolved price, as preflight hands it to the workflow (and so as history records it)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

PriceSource = Literal["override", "catalogue", "unknown"]


class ResolvedPrice(BaseModel):
    """Unit prices in USD per million tokens (`domain.pricing`).

    Histories recorded before the detailed prices hold only `input_per_mtok`, `output_per_mtok` and `known`, so
    every other field has a default that prices those calls exactly as they were priced then.
    """

    # Shared between jobs by `domain.pricing`'s cache: nobody may change it in place.
    model_config = ConfigDict(frozen=True)

    input_per_mtok: float
    output_per_mtok: float
    known: bool
    """False when neither the routes file nor the catalogue has a price: the call is unpriced, not free."""
    cached_input_per_mtok: float | None = None
    """A prompt-cache read; None: the input price."""
    cache_write_per_mtok: float | None = None
    """A prompt-cache write; None: the input price."""
    reasoning_per_mtok: float | None = None
    """A reasoning token; None: the output price."""
    tier_threshold_tokens: int | None = None
    """A call whose input exceeds this many tokens is billed at the `_above` prices, every token of it (as
    Gemini and Anthropic's long-context prices work). None: one price whatever the length."""
    input_per_mtok_above: float | None = None
    output_per_mtok_above: float | None = None
    """Set whenever `tier_threshold_tokens` is."""
    cached_input_per_mtok_above: float | None = None
    cache_write_per_mtok_above: float | None = None
    """Above the tier, a cache price the catalogue does not give is its price below the tier, else the input
    price above it."""
    source: PriceSource | None = None
    """Where the price came from; None in histories recorded before prices named their source."""
    name: str | None = None
    """The catalogue entry priced from (an alias's target, not the alias)."""
    max_output_tokens: int | None = None
    """The model's output limit as the catalogue gives it: a request without `max_tokens` may use this many, so
    the policy's cost estimate assumes it does."""

    @classmethod
    def not_applied(cls) -> ResolvedPrice:
        """No price: a response-cache hit calls no deployment (its cost is 0 by definition, not unknown)."""
        return cls(input_per_mtok=0.0, output_per_mtok=0.0, known=False)
