"""The routes file: providers and the model aliases that apps send, each an ordered list of deployments."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from schemas.validation import describe

CallMode = Literal["activity", "local"]
"""How a planned call runs: an ordinary activity on the shared worker pool, or a local activity inside the
workflow task of whichever worker runs the job (the API process itself, for a synchronous request)."""
CallSetting = Literal["auto", "activity", "local"]
DeploymentType = Literal["chat", "embedding"]


class RoutesFileError(ValueError):
    """A malformed routes file; the message names the file and the offending path inside it."""


class RetryConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_attempts: int = Field(default=3, ge=1, le=20)
    initial_interval_s: float = Field(default=1.0, gt=0)
    max_interval_s: float = Field(default=30.0, gt=0)
    backoff: float = Field(default=2.0, ge=1.0)


DEFAULT_CALL_RETRY = RetryConfig()
"""The RetryPolicy of every upstream call unless a provider's `retry` says otherwise."""


class Price(BaseModel):
    """A deployment's price in USD per million tokens, instead of the catalogue's."""

    model_config = ConfigDict(extra="forbid")

    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)
    cached_input_per_mtok: float | None = Field(default=None, ge=0)
    """A prompt-cache read; absent: the input price."""
    cache_write_per_mtok: float | None = Field(default=None, ge=0)
    """A prompt-cache write; absent: the input price."""
    reasoning_per_mtok: float | None = Field(default=None, ge=0)
    """A reasoning token; absent: the output price."""


class _ProviderBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    region: str = "local"
    timeout_s: float = Field(default=60.0, gt=0)
    """Start-to-close timeout of one upstream call."""
    retry: RetryConfig = DEFAULT_CALL_RETRY
    call: CallSetting = "auto"
    """How the workflow runs each call. `local`: a local activity, in the same workflow task as the job's
    bookkeeping (for a synchronous request, in the API process that received it): the fewest server writes
    and the lowest latency; a call longer than ~8 s adds a workflow-task heartbeat (3 history events) every
    8 s, and a crashed worker's call is retried once the workflow task times out (10 s). `activity`: an
    ordinary activity on the shared worker pool, for calls that run for minutes. `auto` (the default):
    `local` when `timeout_s` is at most `KINTSUGI_LOCAL_CALL_MAX_S` (60 s), `activity` otherwise."""


class SimulatorProvider(_ProviderBase):
    """Built in and offline; its answers are labelled as simulation."""

    kind: Literal["simulator"]
    latency_ms: float = Field(default=50.0, ge=0)
    fail_rate: float = Field(default=0.0, ge=0, le=1)


class OpenAIProvider(_ProviderBase):
    kind: Literal["openai"]
    base_url: str
    api_key_env: str | None = None
    stream: bool = False
    """Read the upstream answer as SSE (each chunk heartbeats the activity)."""


class AnthropicProvider(_ProviderBase):
    kind: Literal["anthropic"]
    base_url: str = "https://api.anthropic.com"
    api_key_env: str | None = None
    api_version: str = "2023-06-01"
    stream: bool = False
    """Read the upstream answer as SSE events (each heartbeats the activity); always when a client streams."""


ProviderConfig = Annotated[SimulatorProvider | OpenAIProvider | AnthropicProvider, Field(discriminator="kind")]
PROVIDER_KINDS = tuple(
    kind
    for provider in (SimulatorProvider, OpenAIProvider, AnthropicProvider)
    for kind in get_args(provider.model_fields["kind"].annotation)
)


class DeploymentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider: str
    model: str
    price: Price | None = None
    """Overrides the catalogue price of `model`."""
    type: DeploymentType = "chat"
    """What the deployment serves: chat completions, or embeddings (`POST /v1/embeddings`)."""


class RoutesConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    providers: dict[str, ProviderConfig]
    routes: dict[str, list[DeploymentConfig]]

    @model_validator(mode="after")
    def _check_references(self) -> RoutesConfig:
        for alias, deployments in self.routes.items():
            if not deployments:
                raise ValueError(f"routes.{alias}: a route needs at least one deployment")
            for i, deployment in enumerate(deployments):
                if deployment.provider not in self.providers:
                    raise ValueError(f"routes.{alias}[{i}].provider: unknown provider {deployment.provider!r}")
                # A reroute moves a job along its route, so every step must serve the same kind of request.
                if deployment.type != deployments[0].type:
                    raise ValueError(f"routes.{alias}[{i}].type: a route's deployments share one type")
                if deployment.type == "embedding" and self.providers[deployment.provider].kind == "anthropic":
                    raise ValueError(f"routes.{alias}[{i}].type: an anthropic provider serves no embeddings")
        return self


def load_routes(path: Path) -> RoutesConfig:
    """Parse and validate the routes file; raise `RoutesFileError` naming the file and the bad entry."""
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as err:
        raise RoutesFileError(f"{path}: cannot read routes file: {err.strerror}") from err
    except yaml.YAMLError as err:
        raise RoutesFileError(f"{path}: not valid YAML: {err}") from err
    try:
        return RoutesConfig.model_validate(raw)
    except ValidationError as err:
        # Discriminator tags (the provider kinds) are noise to a reader of the file.
        problem = describe(err.errors()[0], skip=PROVIDER_KINDS)
        raise RoutesFileError(f"{path}: {problem}") from err
