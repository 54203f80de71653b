"""Prices from litellm's bundled catalogue (read as a file) and the routes file's overrides."""

from __future__ import annotations

import sys

import pytest

from domain.pricing import cost_usd, resolve_price
from schemas.routes import Price


def test_prices_come_from_the_catalogue_without_importing_litellm() -> None:
    price = resolve_price("gpt-4o-mini", None)

    assert price.known
    assert (price.input_per_mtok, price.output_per_mtok) == pytest.approx((0.15, 0.60))
    assert cost_usd(price, 1_000_000, 500_000) == pytest.approx(0.45)
    assert "litellm" not in sys.modules


def test_route_price_overrides_the_catalogue_and_unknown_models_cost_nothing() -> None:
    override = resolve_price("gpt-4o-mini", Price(input_per_mtok=1.0, output_per_mtok=2.0))
    unknown = resolve_price("my-own-finetune", None)

    assert cost_usd(override, 1000, 1000) == pytest.approx(0.003)
    assert not unknown.known
    assert cost_usd(unknown, 1000, 1000) == 0.0
