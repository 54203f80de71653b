"""Prices from litellm's bundled catalogue (read as a file) and the routes file's overrides, and what calls cost
at them. Every expected cost is worked out here from the catalogue's own entry, token type by token type."""

from __future__ import annotations

import json
import sys
from importlib.metadata import distribution
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from domain.pricing import cost_usd, resolve_price
from schemas.jobs import Usage
from schemas.pricing import ResolvedPrice
from schemas.routes import Price

CATALOGUE: dict[str, dict[str, Any]] = json.loads(
    Path(str(distribution("litellm").locate_file("litellm/model_prices_and_context_window_backup.json"))).read_text()
)


def usd(price: ResolvedPrice, usage: Usage) -> float:
    cost = cost_usd(price, usage)
    assert cost is not None
    return cost


def test_an_openai_model_bills_cached_input_at_its_cache_read_price() -> None:
    entry = CATALOGUE["gpt-4o-mini"]
    usage = Usage(input_tokens=120_000, output_tokens=3_000, cached_input_tokens=100_000)

    price = resolve_price("gpt-4o-mini", None, provider_kind="openai")

    assert (price.known, price.source, price.name) == (True, "catalogue", "gpt-4o-mini")
    expected = (
        20_000 * entry["input_cost_per_token"]
        + 100_000 * entry["cache_read_input_token_cost"]
        + 3_000 * entry["output_cost_per_token"]
    )
    assert usd(price, usage) == pytest.approx(expected, rel=1e-9)
    assert "litellm" not in sys.modules


def test_an_anthropic_model_bills_cache_reads_and_writes_apart() -> None:
    entry = CATALOGUE["claude-sonnet-4-5"]
    usage = Usage(input_tokens=10_000, output_tokens=500, cached_input_tokens=6_000, cache_write_input_tokens=3_000)

    price = resolve_price("claude-sonnet-4-5", None, provider_kind="anthropic")

    expected = (
        1_000 * entry["input_cost_per_token"]
        + 6_000 * entry["cache_read_input_token_cost"]
        + 3_000 * entry["cache_creation_input_token_cost"]
        + 500 * entry["output_cost_per_token"]
    )
    assert usd(price, usage) == pytest.approx(expected, rel=1e-9)
    assert (
        entry["cache_creation_input_token_cost"] > entry["input_cost_per_token"] > entry["cache_read_input_token_cost"]
    )


def test_a_gemini_call_over_200k_input_tokens_pays_the_long_context_prices_on_every_token() -> None:
    entry = CATALOGUE["gemini/gemini-2.5-pro"]
    price = resolve_price("gemini/gemini-2.5-pro", None)
    at_threshold = Usage(input_tokens=200_000, output_tokens=1_000, cached_input_tokens=50_000)
    over = Usage(input_tokens=200_001, output_tokens=1_000, cached_input_tokens=50_000)

    below_cost = (
        150_000 * entry["input_cost_per_token"]
        + 50_000 * entry["cache_read_input_token_cost"]
        + 1_000 * entry["output_cost_per_token"]
    )
    above_cost = (
        150_001 * entry["input_cost_per_token_above_200k_tokens"]
        + 50_000 * entry["cache_read_input_token_cost_above_200k_tokens"]
        + 1_000 * entry["output_cost_per_token_above_200k_tokens"]
    )
    assert price.tier_threshold_tokens == 200_000
    assert usd(price, at_threshold) == pytest.approx(below_cost, rel=1e-9)
    assert usd(price, over) == pytest.approx(above_cost, rel=1e-9)
    assert above_cost > 1.5 * below_cost


def test_xai_bills_its_long_context_prices_from_the_threshold_itself() -> None:
    # litellm's convention for xAI: "above 200k" starts at 200,000 input tokens.
    entry = CATALOGUE["xai/grok-4.3"]

    cost = usd(resolve_price("xai/grok-4.3", None), Usage(input_tokens=200_000, output_tokens=10))

    expected = (
        200_000 * entry["input_cost_per_token_above_200k_tokens"]
        + 10 * entry["output_cost_per_token_above_200k_tokens"]
    )
    assert cost == pytest.approx(expected, rel=1e-9)


def test_an_alias_is_priced_as_the_entry_it_names() -> None:
    target = CATALOGUE["claude-opus-latest"]["alias_of"]
    entry = CATALOGUE[target]
    assert not {key for key in CATALOGUE["claude-opus-latest"] if "cost" in key}  # the alias has no prices of its own

    price = resolve_price("claude-opus-latest", None)

    assert (price.known, price.name) == (True, target)
    expected = 2_000 * entry["input_cost_per_token"] + 300 * entry["output_cost_per_token"]
    assert usd(price, Usage(input_tokens=2_000, output_tokens=300)) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(
    ("model", "provider_kind", "entry_name"),
    [
        ("openai/gpt-4o-mini", None, "gpt-4o-mini"),
        ("anthropic/claude-sonnet-4-5", None, "claude-sonnet-4-5"),
        ("vertex_ai/gemini-2.5-pro", None, "gemini-2.5-pro"),
        ("bedrock/anthropic.claude-sonnet-4-5-20250929-v1:0", None, "anthropic.claude-sonnet-4-5-20250929-v1:0"),
        # Filed only under Google's prefix; an OpenAI-compatible upstream is sent the bare name.
        ("gemini-exp-1114", "openai", "gemini/gemini-exp-1114"),
    ],
)
def test_a_provider_prefixed_name_finds_the_entry_the_catalogue_files_it_under(
    model: str, provider_kind: str | None, entry_name: str
) -> None:
    entry = CATALOGUE[entry_name]

    price = resolve_price(model, None, provider_kind=provider_kind)

    assert (price.known, price.name) == (True, entry_name)
    expected = 1_000 * entry["input_cost_per_token"] + 100 * entry["output_cost_per_token"]
    assert usd(price, Usage(input_tokens=1_000, output_tokens=100)) == pytest.approx(expected, rel=1e-9)


def test_reasoning_tokens_are_billed_at_the_reasoning_price_or_else_the_output_price() -> None:
    qwen, o3 = CATALOGUE["dashscope/qwen-turbo"], CATALOGUE["o3"]
    usage = Usage(input_tokens=1_000, output_tokens=1_000, reasoning_tokens=800)

    priced_apart = usd(resolve_price("dashscope/qwen-turbo", None), usage)
    as_output = usd(resolve_price("o3", None), usage)

    assert qwen["output_cost_per_reasoning_token"] != qwen["output_cost_per_token"]
    assert priced_apart == pytest.approx(
        1_000 * qwen["input_cost_per_token"]
        + 200 * qwen["output_cost_per_token"]
        + 800 * qwen["output_cost_per_reasoning_token"],
        rel=1e-9,
    )
    assert as_output == pytest.approx(
        1_000 * o3["input_cost_per_token"] + 1_000 * o3["output_cost_per_token"], rel=1e-9
    )


def test_an_entry_priced_in_more_than_one_tier_is_unpriced_rather_than_mispriced() -> None:
    assert len({key for key in CATALOGUE["kyma/qwen3.7-flash"] if key.startswith("input_cost_per_token_above_")}) == 2
    assert "tiered_pricing" in CATALOGUE["opencode_go/grok-4.7"]

    for model in ("kyma/qwen3.7-flash", "opencode_go/grok-4.7"):
        assert not resolve_price(model, None).known


def test_the_routes_file_price_overrides_the_catalogue() -> None:
    usage = Usage(input_tokens=1_000, output_tokens=1_000, cached_input_tokens=400, reasoning_tokens=500)

    price = resolve_price("gpt-4o-mini", Price(input_per_mtok=1.0, output_per_mtok=2.0))

    assert (price.known, price.source, price.name) == (True, "override", None)
    # No cache or reasoning price given: cached input costs the input price, reasoning the output price.
    assert usd(price, usage) == pytest.approx(0.003)


def test_an_override_with_cache_and_reasoning_prices_bills_each_token_type_at_its_own() -> None:
    override = Price(
        input_per_mtok=3.0, output_per_mtok=15.0, cached_input_per_mtok=0.3, cache_write_per_mtok=3.75,
        reasoning_per_mtok=20.0,
    )  # fmt: skip
    usage = Usage(
        input_tokens=1_000_000, output_tokens=100_000, cached_input_tokens=600_000, cache_write_input_tokens=100_000,
        reasoning_tokens=40_000,
    )  # fmt: skip

    cost = usd(resolve_price("my-own-finetune", override), usage)

    # 300k plain input * $3 + 600k cached * $0.30 + 100k written * $3.75 + 60k output * $15 + 40k reasoning * $20
    assert cost == pytest.approx(0.9 + 0.18 + 0.375 + 0.9 + 0.8)


def test_an_override_refuses_negative_prices_and_unknown_fields() -> None:
    with pytest.raises(ValidationError):
        Price(input_per_mtok=1.0, output_per_mtok=1.0, cached_input_per_mtok=-0.1)
    with pytest.raises(ValidationError):
        Price.model_validate({"input_per_mtok": 1.0, "output_per_mtok": 1.0, "cache_read_per_mtok": 0.1})


@pytest.mark.parametrize(("model", "provider_kind"), [("my-own-finetune", None), ("llama-3.1-8b", "openai")])
def test_an_unknown_model_is_unpriced_not_free(model: str, provider_kind: str | None) -> None:
    price = resolve_price(model, None, provider_kind=provider_kind)

    assert (price.known, price.source, price.name) == (False, "unknown", None)
    assert cost_usd(price, Usage(input_tokens=1_000, output_tokens=1_000)) is None


def test_a_price_recorded_before_the_detailed_prices_reads_back_and_bills_as_it_did() -> None:
    recorded = ResolvedPrice.model_validate_json('{"input_per_mtok": 1.0, "output_per_mtok": 2.0, "known": true}')
    usage = Usage(input_tokens=1_000, output_tokens=500, cached_input_tokens=300, reasoning_tokens=100)

    assert recorded.source is None
    assert usd(recorded, usage) == pytest.approx((1_000 * 1.0 + 500 * 2.0) / 1_000_000)
