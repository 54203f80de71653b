"""The routes file the bench gives each Kintsugi system, read by Kintsugi's own loader."""

from __future__ import annotations

import base64
from pathlib import Path

from bench.systems import EXPORTING_SYSTEMS, KINTSUGI_FLAGS, KINTSUGI_SYSTEMS, exporter_env, routes_yaml
from domain.flags import SPECS, default_flags, exporters_configured
from schemas.exports import SINK_FLAGS
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
    assert calls == {
        "kintsugi": default,
        "kintsugi-activity": "activity",
        "kintsugi-cache": default,
        "kintsugi-exports": default,
        "kintsugi-traced": default,
    }
    assert "call:" not in routes_yaml("http://127.0.0.1:9", KINTSUGI_SYSTEMS["kintsugi"])


def test_only_kintsugi_cache_turns_a_flag_on_and_it_is_a_real_flag() -> None:
    assert KINTSUGI_FLAGS == {"kintsugi-cache": {"enable_response_cache": True}}
    assert set(KINTSUGI_FLAGS["kintsugi-cache"]) <= set(SPECS)


def test_the_exporting_system_points_every_exporter_at_the_local_receiver() -> None:
    env = exporter_env("http://127.0.0.1:9", live_tracing=False)
    configured = exporters_configured(env)
    assert configured == {"warehouse", "langfuse", "otlp"}
    assert all(default_flags(configured)[flag] for flag in SINK_FLAGS.values())
    assert len(base64.b64decode(env["KINTSUGI_CODEC_KEY"])) == 32
    assert EXPORTING_SYSTEMS <= set(KINTSUGI_SYSTEMS)
    assert env["OTEL_SDK_DISABLED"] == "true"
    assert "OTEL_SDK_DISABLED" not in exporter_env("http://127.0.0.1:9", live_tracing=True)
