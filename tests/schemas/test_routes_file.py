"""The routes file: the shipped one loads; a malformed one names the file and the offending entry."""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas.routes import RoutesFileError, load_routes
from tests.support.common import REPO


def test_shipped_routes_file_is_valid() -> None:
    routes = load_routes(REPO / "config" / "routes.yaml")

    assert routes.routes["fast"][0].provider == "local"
    assert routes.providers["sim"].kind == "simulator"
    assert routes.routes["sim-embed"][0].type == "embedding"


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
        (
            "providers: {p: {kind: simulator}}\n"
            "routes: {r: [{provider: p, model: a}, {provider: p, model: b, type: embedding}]}",
            "routes.r[1].type: a route's deployments share one type",
        ),
        (
            "providers: {c: {kind: anthropic}}\nroutes: {r: [{provider: c, model: a, type: embedding}]}",
            "routes.r[0].type: an anthropic provider serves no embeddings",
        ),
        ("providers: {p: {kind: simulator}}\nroutes: {r: [{provider: p, model: a, type: audio}]}", "routes.r[0].type"),
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
