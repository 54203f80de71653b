"""LiteLLM's proxy as a reference system: a gateway without durability, loaded like the others.

It is installed from PyPI into a virtualenv of its own (never into ours, and never imported by the bench: only
its `litellm` command runs), configured to send `bench-model` to the fake upstream, and started as one process.
The install is kept, and reused by later runs while its version matches `VERSION`.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from bench.systems import HOST, UPSTREAM_MODEL, HarnessError, Target, Upstream, base_env, chat_body, wait_ready
from bench.ttft import STREAM_MODEL
from ops.processes import ChildDied, ProcessGroup
from ops.waits import free_port

VERSION = "1.108.7"
REQUIREMENT = f"litellm[proxy]=={VERSION}"
INSTALL_TIMEOUT_S = 900.0
READY_TIMEOUT_S = 120.0
"""It imports for ~15 s on an idle machine before it serves."""
MARKER = ".bench-requirement"
"""Written into the venv once an install has completed, so that an interrupted one is redone."""

MASTER_KEY = "sk-bench-0123456789abcdef0123456789abcdef"
"""Its requests are authenticated like Kintsugi's; without a master key this version refuses to start."""
UPSTREAM_KEY = "bench-upstream-key"
"""The fake upstream takes any key; LiteLLM's OpenAI client wants one."""

ENV = {
    # The price list bundled in the wheel; otherwise it is fetched from GitHub at import, with three tries
    # and backoff when there is no internet.
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    # A veto on its usage telemetry: off unless an admin consents, and kept off whatever is stored. (The old
    # `litellm_settings.telemetry` key is a no-op in this version.)
    "LITELLM_TELEMETRY_DISABLED": "true",
    # Quiet, and the same level for uvicorn: no access-log line per request, as our APIs run.
    "LITELLM_LOG": "ERROR",
    # DEV, the default, loads a `.env` from the working directory.
    "LITELLM_MODE": "PRODUCTION",
    "LITELLM_DONT_SHOW_FEEDBACK_BOX": "true",
}
FOREIGN_ENV_PREFIXES = ("LITELLM_", "DATABASE_", "DIRECT_URL", "REDIS_")
"""Settings of ours or of another LiteLLM that would give it a database, a cache or other behaviour."""


class LiteLLMUnavailable(Exception):
    """LiteLLM could not be installed or did not start: the system is skipped and the bench goes on."""


# --- install --------------------------------------------------------------------------------------------


def installed_version(venv: Path) -> str | None:
    """The litellm version in `venv` if an install completed there, else None. Asked of the venv's own python."""
    python = venv / "bin" / "python"
    if not python.exists() or not (venv / "bin" / "litellm").exists():
        return None
    try:
        if (venv / MARKER).read_text().strip() != REQUIREMENT:
            return None
    except OSError:
        return None
    query = "import importlib.metadata as m; print(m.version('litellm'))"
    try:
        done = subprocess.run([str(python), "-c", query], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (done.stdout.strip() or None) if done.returncode == 0 else None


def install_commands(venv: Path, uv: str | None) -> list[list[str]]:
    """uv when there is one, else the venv module and pip; either way with this interpreter's Python version."""
    python = str(venv / "bin" / "python")
    if uv is not None:
        # --no-config: our pyproject's [tool.uv] settings are for our own environment (UV_* variables still apply).
        # Bytecode now, because PYTHONDONTWRITEBYTECODE would make every start compile LiteLLM from source.
        return [
            [uv, "venv", "--no-config", "--quiet", "--python", sys.executable, str(venv)],
            [uv, "pip", "install", "--no-config", "--quiet", "--compile-bytecode", "--python", python, REQUIREMENT],
        ]
    return [
        [sys.executable, "-m", "venv", str(venv)],
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", REQUIREMENT],
    ]


def ensure_installed(venv: Path, *, note: Callable[[str], None]) -> Path:
    """The `litellm` command of `venv`, after installing `REQUIREMENT` there unless it already is."""
    command = venv / "bin" / "litellm"
    found = installed_version(venv)
    if found == VERSION:
        note(f"reusing {REQUIREMENT} in {venv}")
        return command
    note(f"installing {REQUIREMENT} into {venv}" + (f" (found {found})" if found else ""))
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    log = venv.parent / "litellm-install.log"
    started = time.monotonic()
    with log.open("w") as output:
        for step in install_commands(venv, shutil.which("uv")):
            output.write(f"$ {' '.join(step)}\n")
            output.flush()
            try:
                done = subprocess.run(step, stdout=output, stderr=subprocess.STDOUT, timeout=INSTALL_TIMEOUT_S)
            except (OSError, subprocess.TimeoutExpired) as err:
                raise LiteLLMUnavailable(f"install failed: {err} (log: {log})") from err
            if done.returncode != 0:
                lines = log.read_text(errors="replace").splitlines()
                raise LiteLLMUnavailable(
                    f"install failed: {Path(step[0]).name} exited {done.returncode}: {lines[-1].strip()}\n"
                    + "\n".join(f"  | {line}" for line in lines[-15:])
                )
    (venv / MARKER).write_text(REQUIREMENT + "\n")
    found = installed_version(venv)
    if found != VERSION:
        raise LiteLLMUnavailable(f"installed, but the venv reports litellm {found}, not {VERSION} (log: {log})")
    note(f"installed in {time.monotonic() - started:.0f} s (log: {log})")
    return command


# --- run ------------------------------------------------------------------------------------------------


def config(upstream_url: str) -> dict[str, Any]:
    """The proxy's config: the load's model and the streamed one, both on `upstream_url`, priced at zero as in
    Kintsugi's bench routes; a master key; no database, so no spend logs and no migrations."""

    def deployment(model: str) -> dict[str, Any]:
        return {
            "model_name": model,
            "litellm_params": {"model": f"openai/{model}", "api_base": f"{upstream_url}/v1", "api_key": UPSTREAM_KEY},
            "model_info": {"input_cost_per_token": 0.0, "output_cost_per_token": 0.0},
        }

    return {
        "model_list": [deployment(UPSTREAM_MODEL), deployment(STREAM_MODEL)],
        "general_settings": {"master_key": MASTER_KEY, "disable_spend_logs": True},
    }


def proxy_env() -> dict[str, str]:
    env = {k: v for k, v in base_env().items() if not k.startswith(FOREIGN_ENV_PREFIXES)}
    return {**env, **ENV}


@contextmanager
def litellm_target(command: Path, workdir: Path, upstream: Upstream) -> Iterator[Target]:
    """The proxy in front of `upstream`, as a load target; it is metered as the API.

    It has a process group of its own so that it runs in its work dir: LiteLLM appends its working directory to
    `sys.path`, which in our repo would put our top-level packages within its reach.
    """
    workdir = workdir / f"{upstream.latency_ms}ms"
    workdir.mkdir(parents=True, exist_ok=True)
    config_file = workdir / "config.yaml"
    config_file.write_text(yaml.safe_dump(config(upstream.url), sort_keys=False))
    port = free_port()
    group = ProcessGroup(log_dir=workdir, cwd=workdir)
    argv = [str(command), "--config", str(config_file), "--host", HOST, "--port", str(port), "--num_workers", "1"]
    url = f"http://{HOST}:{port}"
    try:
        try:
            proxy = group.start("litellm", argv, env=proxy_env())
            wait_ready(f"{url}/health/liveliness", proxy, timeout_s=READY_TIMEOUT_S)
        except ChildDied as err:
            raise LiteLLMUnavailable(f"it did not start: {err}\n{err.tail}") from err
        except (HarnessError, OSError) as err:
            raise LiteLLMUnavailable(f"it did not start: {err}") from err
        headers = {"Authorization": f"Bearer {MASTER_KEY}"}
        meters = {"api": proxy, "upstream": upstream.child}
        yield Target("litellm", f"{url}/v1/chat/completions", chat_body(UPSTREAM_MODEL), headers, meters=meters)
    finally:
        group.stop_all()
