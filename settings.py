"""Kintsugi configuration: `KINTSUGI_*` environment variables, validated once at start-up."""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.routes import RoutesConfig, load_routes

DEV_ADMIN_KEY = "kintsugi-dev-admin-key"
"""The placeholder admin key; accepted only when `KINTSUGI_ENV=dev`."""


class Settings(BaseSettings):
    """Every knob of the API and the worker. Secrets live here, never in workflow inputs."""

    # An error names the setting, never its value: the values include secrets (keys), and errors reach logs.
    model_config = SettingsConfigDict(env_prefix="KINTSUGI_", extra="ignore", hide_input_in_errors=True)

    env: Literal["dev", "test", "prod"] = "dev"
    """Outside `dev` a missing or placeholder admin key stops start-up."""
    data_dir: Path = Path(".data")
    database_url: str = ""
    """Empty means a SQLite file under `data_dir`."""
    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    task_queue: str = "kintsugi"
    admin_api_key: str = DEV_ADMIN_KEY
    routes_file: Path = Path("config/routes.yaml")
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    temporal_port: int = 7233
    ui_port: int = 8233

    park_timeout_s: float = Field(default=24 * 3600, gt=0)
    """How long a parked job waits for a repair before it fails with `park_timeout`."""
    max_wait_s: float = Field(default=60, gt=0)
    """Upper bound on `Prefer: wait=N` for the job API."""
    chat_timeout_s: float = Field(default=600, gt=0)
    """How long `/v1/chat/completions` waits for its job before answering 504."""
    max_body_bytes: int = Field(default=1_000_000, gt=0)
    """Requests with a larger body get 413 before anything is parsed."""
    stream_relay: bool = True
    """Relay streamed answers token by token from the worker to the API replica holding the client's
    connection. Off: `stream: true` answers once the job has finished (the answer arrives in one go)."""
    relay_url: str = ""
    """How workers reach this API replica for the relay; empty means `http://<api_host>:<api_port>` (set it
    to the replica's own address when workers run on other machines)."""
    relay_secret: str = ""
    """Signs the relay's per-job tokens; empty means one derived from the admin key (every process has it)."""
    ui_session_secret: str = ""
    """Signs the web UI's session cookies; empty means one derived from the admin key, so every API replica
    accepts a session another one issued, and rotating the admin key ends every session."""
    ui_secure_cookies: bool | None = None
    """Mark the web UI's cookies `Secure` (browsers send them back over HTTPS only). None: always outside dev,
    because behind a proxy that terminates TLS the API sees plain http; in dev only for requests over https."""
    api_worker: bool = True
    """The API process runs a worker of its own (workflow tasks and local activities, no remote activities)
    and starts synchronous jobs eagerly on it: the job runs in the process that waits for it. Off: every job
    runs on the shared workers (`kintsugi worker`)."""
    local_call_max_s: float = Field(default=60.0, gt=0)
    """A deployment with `call: auto` whose `timeout_s` is at most this calls as a local activity."""
    similarity_threshold: float = Field(default=0.9, gt=0, le=1)
    """Two prompts of a tenant at least this similar (estimated Jaccard of their shingles) are near-duplicates
    (`prompt_similarity_logs`); a tenant's policy will override it."""
    cache_ttl_s: float = Field(default=3600, gt=0)
    """How long a cached answer serves repeats (for tenants with `enable_response_cache` on)."""
    cache_near_duplicate: float = Field(default=0.95, gt=0, le=1)
    """A prompt at least this similar to a cached one (same route and parameters) is answered from the cache."""
    workflow_sandbox: bool = False
    """Run workflows in Temporal's sandbox. It re-imports the workflow module for every run (~6 ms of worker
    CPU per job measured here); determinism is guarded instead by replay tests, which run with it on."""
    flag_cache_ttl_s: float = Field(default=5.0, ge=0, le=5)
    """How long a process reuses the feature flags (and the policies) it read: a change is in force everywhere
    within this (at most the 5 s DESIGN.md promises; 0 reads them for every job)."""
    redis_url: str = ""
    """Keep rate-limit buckets in this Redis (`redis://host:6379/0`) instead of the app database: for many API
    replicas at high request rates."""

    temporal_ui_url: str = ""
    """Where operators open the Temporal UI (trace pages link each job there); empty means
    `http://127.0.0.1:<ui_port>`, the dev server's."""
    codec_key: str = ""
    """32 random bytes, base64 (`openssl rand -base64 32`): workflow payloads (prompts, answers) are encrypted
    with AES-GCM before they reach Temporal. Required in prod; `make up` generates one in the data dir."""
    codec_previous_keys: str = ""
    """Comma-separated earlier codec keys: payloads they encrypted still decode after a rotation."""
    codec_cors_origins: str = ""
    """Comma-separated origins allowed to call `/codec/*` from a browser; empty means the Temporal UI's."""
    worker_metrics_port: int = Field(default=9464, ge=0, le=65535)
    """Where `kintsugi worker` serves Prometheus metrics (its jobs and the Temporal SDK's); 0 turns it off."""
    rudderstack_data_plane_url: str = ""
    """The warehouse sink: RudderStack's data plane (events go to `<url>/v1/batch`); empty: no warehouse export."""
    rudderstack_write_key: str = ""
    """The RudderStack source's write key (HTTP basic auth user)."""
    export_batch_size: int = Field(default=200, gt=0, le=5000)
    """The export workflow sends a sink at most this many events at once, and as soon as this many wait."""
    export_max_age_s: float = Field(default=2.0, gt=0)
    """...or once the oldest waiting event is this old: how long an event may wait for a fuller batch."""

    @model_validator(mode="after")
    def _refuse_placeholder_admin_key(self) -> Settings:
        if self.env != "dev" and self.admin_api_key in ("", DEV_ADMIN_KEY):
            raise ValueError(
                "KINTSUGI_ADMIN_API_KEY must be set to a secret outside dev (KINTSUGI_ENV=dev allows the default)"
            )
        return self

    @model_validator(mode="after")
    def _require_codec_key_outside_dev(self) -> Settings:
        # `test` is the suite's own environment: its tests choose whether a codec key is set.
        if self.env == "prod" and not self.codec_key:
            raise ValueError(
                "KINTSUGI_CODEC_KEY must be set outside dev (32 random bytes, base64: `openssl rand -base64 32`), "
                "so prompts in Temporal's history are encrypted"
            )
        return self

    @model_validator(mode="after")
    def _codec_keys_are_keys(self) -> Settings:
        # A bad key would otherwise surface only at the first payload a worker or the API encodes.
        previous = [key for key in self.codec_previous_keys.split(",") if key.strip()]
        if not self.codec_key and not previous:
            return self
        from client.codec import InvalidCodecKey, decode_key  # only when a key is set: it loads temporalio

        named = [("KINTSUGI_CODEC_KEY", self.codec_key)] + [("KINTSUGI_CODEC_PREVIOUS_KEYS", key) for key in previous]
        for name, text in named:
            try:
                decode_key(text)
            except InvalidCodecKey as err:
                raise ValueError(f"{name}: {err}") from None
        return self

    @property
    def temporal_ui_base_url(self) -> str:
        return (self.temporal_ui_url or f"http://127.0.0.1:{self.ui_port}").rstrip("/")

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir / 'kintsugi.db'}"

    @cached_property
    def routes(self) -> RoutesConfig:
        return load_routes(self.routes_file)

    def upstream_keys(self, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
        """Provider name -> API key, from the env var each provider's `api_key_env` names. Read once by the
        worker and handed to its activities, so keys never enter workflow inputs or history."""
        keys: dict[str, str] = {}
        for name, provider in self.routes.providers.items():
            env_name = getattr(provider, "api_key_env", None)
            if env_name and environ.get(env_name):
                keys[name] = environ[env_name]
        return keys

    @property
    def relay_base_url(self) -> str:
        if self.relay_url:
            return self.relay_url.rstrip("/")
        host = "127.0.0.1" if self.api_host in ("0.0.0.0", "::", "") else self.api_host
        return f"http://{host}:{self.api_port}"

    def relay_token(self, job_id: str) -> str:
        """The token that lets a worker stream one job's chunks to an API replica (and nothing else)."""
        secret = self.relay_secret or hashlib.sha256(f"kintsugi-relay:{self.admin_api_key}".encode()).hexdigest()
        return hmac.new(secret.encode(), job_id.encode(), hashlib.sha256).hexdigest()

    @property
    def ui_session_key(self) -> bytes:
        """The HMAC key of the web UI's session cookies (`ui_session_secret`, or derived from the admin key)."""
        secret = self.ui_session_secret or f"kintsugi-ui-session:{self.admin_api_key}"
        return hashlib.sha256(secret.encode()).digest()
