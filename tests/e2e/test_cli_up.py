"""End to end: `kintsugi up` starts everything, runs a job, stops cleanly on SIGINT, and resumes its data."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from ops.processes import Child
from ops.waits import free_port
from tests.support.common import REPO

BODY = {"model": "sim-1", "messages": [{"role": "user", "content": "hello"}]}


def up_command() -> list[str]:
    script = Path(sys.executable).parent / "kintsugi"
    return [str(script), "up"] if script.exists() else [sys.executable, "-m", "cli", "up"]


class Up:
    def __init__(self, data_dir: Path, env: dict[str, str], log: Path) -> None:
        self.data_dir, self.log_path = data_dir, log
        self.child = Child.start("up", up_command(), output=log, env=env, cwd=REPO)
        self.process = self.child.process
        self.pids: dict[str, int] = {}

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def fail(self, why: str) -> None:
        pytest.fail(f"{why}\n--- kintsugi up output ---\n{self.output()}")

    def wait_ready(self, api: str, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.fail(f"kintsugi up exited with {self.process.returncode} before it was ready")
            if "Kintsugi is up" in self.output():
                break
            time.sleep(0.2)
        else:
            self.fail(f"kintsugi up not ready within {timeout_s:.0f} s")
        assert httpx.get(f"{api}/readyz", timeout=5).status_code == 200
        self.pids = json.loads((self.data_dir / "pids.json").read_text())
        children = {p.pid for p in psutil.Process(self.process.pid).children()}
        assert self.pids["up"] == self.process.pid
        assert {self.pids[name] for name in ("temporal", "worker", "api")} == children

    def interrupt(self, timeout_s: float = 20) -> None:
        started = time.monotonic()
        self.process.send_signal(signal.SIGINT)
        try:
            code = self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.fail(f"kintsugi up still running {timeout_s:.0f} s after SIGINT")
        if code != 0:
            self.fail(f"kintsugi up exited with {code} after SIGINT")
        print(f"stopped in {time.monotonic() - started:.1f} s")
        alive = [n for n, pid in self.pids.items() if psutil.pid_exists(pid) and not _zombie(pid)]
        if alive:
            self.fail(f"still running after up exited: {alive}")

    def kill(self) -> None:
        """Cleanup after a failure: nothing this test started may outlive it (`up`, then what it started)."""
        self.child.stop()


def _zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_up_runs_a_job_stops_on_sigint_and_resumes(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    api_port, temporal_port, ui_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KINTSUGI_")}
    env |= {
        "KINTSUGI_ENV": "dev",
        "KINTSUGI_DATA_DIR": str(data_dir),
        "KINTSUGI_API_PORT": str(api_port),
        "KINTSUGI_TEMPORAL_PORT": str(temporal_port),
        "KINTSUGI_UI_PORT": str(ui_port),
        "KINTSUGI_ROUTES_FILE": str(REPO / "config" / "routes.yaml"),
    }
    api = f"http://127.0.0.1:{api_port}"

    started = time.monotonic()
    first = Up(data_dir, env, tmp_path / "up-1.log")
    try:
        first.wait_ready(api)
        print(f"first up ready in {time.monotonic() - started:.1f} s")
        key_file = data_dir / "admin_key"
        assert key_file.stat().st_mode & 0o777 == 0o600
        key = key_file.read_text().strip()
        assert key.startswith("ks_admin_")
        assert key in first.output()  # the box shows it
        auth = {"Authorization": f"Bearer {key}"}
        response = httpx.post(f"{api}/v1/jobs", json=BODY, headers={**auth, "Prefer": "wait=10"}, timeout=20)
        if response.status_code != 200 or response.json()["status"] != "succeeded":
            first.fail(f"job not done: {response.status_code} {response.text}")
        job = response.json()
        codec_key_file = data_dir / "codec_key"  # prompts in history are encrypted with a key of its own
        assert codec_key_file.stat().st_mode & 0o777 == 0o600
        codec_key = codec_key_file.read_text().strip()
        assert len(base64.b64decode(codec_key, validate=True)) == 32
        sealed = httpx.post(f"{api}/codec/encode", json={"payloads": []}, headers=auth, timeout=10)
        assert sealed.status_code == 200, sealed.text  # the API has the key
        # The Temporal UI's Data Encoder is preset with our codec, under /ui where the UI session cookie goes.
        ui_settings = httpx.get(f"http://127.0.0.1:{ui_port}/api/v1/settings", timeout=10).json()
        assert ui_settings["Codec"]["Endpoint"] == f"{api}/ui/codec"
        first.interrupt()
    finally:
        if first.process.poll() is None:
            first.kill()

    started = time.monotonic()
    second = Up(data_dir, env, tmp_path / "up-2.log")
    try:
        second.wait_ready(api)
        print(f"second up ready in {time.monotonic() - started:.1f} s")
        assert (data_dir / "admin_key").read_text().strip() == key
        assert (data_dir / "codec_key").read_text().strip() == codec_key
        response = httpx.get(f"{api}/v1/jobs/{job['id']}", headers=auth, timeout=10)
        if response.status_code != 200:
            second.fail(f"first job unreadable after restart: {response.status_code} {response.text}")
        again = response.json()
        assert again["status"] == "succeeded"
        assert again["result"] == job["result"]
        second.interrupt()
    finally:
        if second.process.poll() is None:
            second.kill()
