"""The routes file the bench gives each Kintsugi system, read by Kintsugi's own loader."""

from __future__ import annotations

from pathlib import Path

from bench.systems import KINTSUGI_SYSTEMS, routes_yaml
from schemas.routes import OpenAIProvider, load_routes


def test_kintsugi_runs_on_the_default_call_path_and_kintsugi_activity_on_activities(tmp_path: Path) -> None:
    calls = {}
    for system, call in KINTSUGI_SYSTEMS.items():
        path = tmp_path / f"{system}.yaml"
        path.write_text(routes_yaml("http://127.0.0.1:9", call))
        routes = load_routes(path)
        calls[system] = routes.providers["upstream"].call
        assert set(routes.routes) == {"bench", "bench-stream"}
    assert calls == {"kintsugi": OpenAIProvider.model_fields["call"].default, "kintsugi-activity": "activity"}
    assert "call:" not in routes_yaml("http://127.0.0.1:9", KINTSUGI_SYSTEMS["kintsugi"])
