"""The routes file the bench gives each Kintsugi system, read by Kintsugi's own loader."""

from __future__ import annotations

from pathlib import Path

from bench.systems import KINTSUGI_FLAGS, KINTSUGI_SYSTEMS, routes_yaml
from domain.flags import SPECS
from schemas.routes import OpenAIProvider, load_routes


def test_kintsugi_runs_on_the_default_call_path_and_kintsugi_activity_on_activities(tmp_path: Path) -> None:
    calls = {}
    for system, call in KINTSUGI_SYSTEMS.items():
        path = tmp_path / f"{system}.yaml"
        path.write_text(routes_yaml("http://127.0.0.1:9", call))
        routes = load_routes(path)
        calls[system] = routes.providers["upstream"].call
        assert set(routes.routes) == {"bench", "bench-stream"}
    default = OpenAIProvider.model_fields["call"].default
    assert calls == {"kintsugi": default, "kintsugi-activity": "activity", "kintsugi-cache": default}
    assert "call:" not in routes_yaml("http://127.0.0.1:9", KINTSUGI_SYSTEMS["kintsugi"])


def test_only_kintsugi_cache_turns_a_flag_on_and_it_is_a_real_flag() -> None:
    assert KINTSUGI_FLAGS == {"kintsugi-cache": {"enable_response_cache": True}}
    assert set(KINTSUGI_FLAGS["kintsugi-cache"]) <= set(SPECS)
