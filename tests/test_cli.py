"""The `kintsugi` command's own refusals (`kintsugi up` is run end to end in tests/e2e)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cli import app


def test_api_refuses_several_processes_on_one_port_while_streams_are_relayed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KINTSUGI_ENV", "dev")

    result = CliRunner().invoke(app, ["api", "--workers", "2"])

    assert result.exit_code == 2
    assert "KINTSUGI_STREAM_RELAY=false" in result.output
