"""Start-up configuration: the routes file, the admin key rule, and catalogue prices."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from activities.pricing import cost_usd, resolve_price
from schemas.routes import Price, RoutesFileError, load_routes
from settings import DEV_ADMIN_KEY, Settings

REPO = Path(__file__).resolve().parent.parent


def test_shipped_routes_file_is_valid() -> None:
    routes = load_routes(REPO / "config" / "routes.yaml")

    assert routes.routes["fast"][0].provider == "local"
    assert routes.providers["sim"].kind == "simulator"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("providers: {}\nroutes: {fast: [{provider: locl, model: m}]}", "routes.fast[0].provider: unknown provider"),
        ("providers: {p: {kind: nope}}\nroutes: {}", "providers.p"),
        (
            "providers: {p: {kind: openai}}\nroutes: {}",
            "providers.p.base_url: Field required",
        ),
        (
            "providers: {p: {kind: simulator, fail_rate: 2}}\nroutes: {}",
            "providers.p.fail_rate: Input should be less than or equal to 1",
        ),
        ("providers: {p: {kind: simulator}}\nroutes: {fast: []}", "routes.fast: a route needs at least one deployment"),
        ("providers: [\n", "not valid YAML"),
    ],
)
def test_malformed_routes_file_names_the_file_and_entry(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(text)

    with pytest.raises(RoutesFileError) as err:
        load_routes(path)

    assert str(err.value).startswith(f"{path}: ")
    assert message in str(err.value)


def test_missing_routes_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(RoutesFileError, match="cannot read routes file"):
        load_routes(tmp_path / "absent.yaml")


@pytest.mark.parametrize("key", ["", DEV_ADMIN_KEY])
def test_outside_dev_a_placeholder_admin_key_stops_start_up(key: str) -> None:
    with pytest.raises(ValidationError, match="KINTSUGI_ADMIN_API_KEY"):
        Settings(env="prod", admin_api_key=key)

    assert Settings(env="dev", admin_api_key=key).admin_api_key == key
    assert Settings(env="prod", admin_api_key="a-real-secret").env == "prod"


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
