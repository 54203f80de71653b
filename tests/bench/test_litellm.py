"""LiteLLM's config and environment, and when its install is reused (nothing is installed or started here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import litellm
from bench.systems import UPSTREAM_MODEL
from bench.ttft import STREAM_MODEL


def test_both_bench_models_go_to_the_upstream_with_a_master_key_and_no_database() -> None:
    config = litellm.config("http://127.0.0.1:9101")
    deployments = {d["model_name"]: d["litellm_params"] for d in config["model_list"]}
    assert deployments == {
        model: {"model": f"openai/{model}", "api_base": "http://127.0.0.1:9101/v1", "api_key": litellm.UPSTREAM_KEY}
        for model in (UPSTREAM_MODEL, STREAM_MODEL)
    }
    assert config["general_settings"]["master_key"] == litellm.MASTER_KEY
    assert "database_url" not in config["general_settings"]


def test_the_proxy_gets_none_of_the_callers_database_or_litellm_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://somewhere/db")
    monkeypatch.setenv("LITELLM_MASTER_KEY", "sk-other")
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "False")
    env = litellm.proxy_env()
    assert "DATABASE_URL" not in env
    assert "LITELLM_MASTER_KEY" not in env
    assert env["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"


def test_a_venv_without_a_completed_install_of_this_requirement_is_not_reused(tmp_path: Path) -> None:
    assert litellm.installed_version(tmp_path / "missing") is None
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    for name in ("python", "litellm"):
        (venv / "bin" / name).touch()
    assert litellm.installed_version(venv) is None  # interrupted: no marker
    (venv / litellm.MARKER).write_text("litellm[proxy]==1.0.0\n")
    assert litellm.installed_version(venv) is None  # another version's install
