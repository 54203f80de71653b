"""Feature flags: the registry of every flag, and how stored rows resolve to a tenant's values.

Pure: the rows come from the store (`store.flag_cache`), the exporters' endpoints from the environment.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

from domain.errors import NotFound
from schemas.flags import FlagSource

Exporter = Literal["langfuse", "warehouse", "otlp"]

EXPORTER_ENDPOINT_ENV: dict[Exporter, tuple[str, ...]] = {
    "langfuse": ("LANGFUSE_BASE_URL",),
    "warehouse": ("KINTSUGI_RUDDERSTACK_DATA_PLANE_URL",),
    "otlp": ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
}
"""The env vars that configure each exporter (any one does, as for its sink); an exporter's flag defaults on
only when one is set."""

TRACK_MODEL_COSTS = "track_model_costs"
SIMILARITY_LOGGING = "enable_similarity_logging"
RESPONSE_CACHE = "enable_response_cache"
POLICY_ENGINE = "enable_policy_engine"
RATE_LIMITING = "enable_rate_limiting"
GUARDRAILS = "enable_guardrails_ai"
ABUSE_DETECTION = "enable_abuse_detection"
"""The flags built so far, by name for the code that reads them (the API, preflight and postflight)."""

GLOBAL = ""
"""The scope of a flag's global row (`store.models.GLOBAL_SCOPE`, which domain cannot import)."""


@dataclass(frozen=True)
class FlagSpec:
    key: str
    description: str
    """What the flag switches, in one line."""
    capability: str
    """The feature of the platform's list the flag belongs to (the README's table maps them)."""
    built: bool
    """False: listed and settable, but nothing reads it yet."""
    default: bool = True
    """The value when no row sets it (for an exporter's flag: when its endpoint is not configured)."""
    exporter: Exporter | None = None
    """Set for an exporter's flag: it defaults on when the exporter's endpoint is configured."""


FLAGS: tuple[FlagSpec, ...] = (
    FlagSpec(TRACK_MODEL_COSTS, "write a priced cost row for every model call", "cost tracking", built=True),
    FlagSpec(
        SIMILARITY_LOGGING,
        "keep each prompt's signature and log prompts that repeat an earlier one",
        "similarity logging",
        built=True,
    ),
    FlagSpec(
        RESPONSE_CACHE,
        "answer identical or near-identical requests from the tenant's response cache",
        "response cache",
        built=True,
        default=False,
    ),
    FlagSpec(
        "enable_langfuse_export",
        "send job traces to Langfuse",
        "Langfuse export",
        built=True,
        default=False,
        exporter="langfuse",
    ),
    FlagSpec(
        "enable_warehouse_export",
        "deliver events to the warehouse (RudderStack)",
        "warehouse export",
        built=True,
        default=False,
        exporter="warehouse",
    ),
    FlagSpec(
        "enable_async_trace_export",
        "export each finished job's span tree as OTLP",
        "async trace export",
        built=True,
        default=False,
        exporter="otlp",
    ),
    FlagSpec(
        "enable_smart_routing",
        "order a route's deployments by health, latency and price instead of the file's order",
        "smart routing",
        built=False,
        default=False,
    ),
    FlagSpec(
        "enable_policy_engine",
        "evaluate the tenant's policy before and after each call",
        "policy engine",
        built=True,
    ),
    FlagSpec("enable_rate_limiting", "enforce RPM and TPM per key and tenant", "rate limiting", built=True),
    FlagSpec("enable_guardrails_ai", "run the policy's input and output guardrails", "guardrails-ai", built=True),
    FlagSpec(
        "enable_abuse_detection",
        "score requests for abuse and flag, throttle or block them",
        "abuse detection",
        built=True,
    ),
    FlagSpec("enable_self_healing", "match events against rules and start their actions", "self-healing", built=False),
    FlagSpec(
        "enable_retry_workflows", "re-run failed and parked jobs picked by a query", "retry workflows", built=False
    ),
    FlagSpec("enable_reroute", "move a job to the next deployment of its route", "reroute", built=False),
    FlagSpec("enable_repair_execution", "run runbooks' repair steps against agents", "repair execution", built=False),
    FlagSpec(
        "enable_cron_backoff",
        "run schedules and circuit probes with growing intervals",
        "cron backoff",
        built=False,
    ),
)
"""Every flag DESIGN.md lists, in its order."""

SPECS: dict[str, FlagSpec] = {spec.key: spec for spec in FLAGS}


class UnknownFlag(NotFound):
    code = "unknown_flag"

    def __init__(self, key: str) -> None:
        super().__init__(f"no feature flag {key!r}", {"flags": list(SPECS)})


def flag_spec(key: str) -> FlagSpec:
    """The registry entry of `key`; `UnknownFlag` for anything else, so no row is ever written for it."""
    spec = SPECS.get(key)
    if spec is None:
        raise UnknownFlag(key)
    return spec


def default_flags(configured_exporters: frozenset[Exporter]) -> dict[str, bool]:
    """Each flag's value when no row sets it; an exporter's flag is on only when its endpoint is configured."""
    return {
        spec.key: spec.default or (spec.exporter is not None and spec.exporter in configured_exporters)
        for spec in FLAGS
    }


def exporters_configured(environ: Mapping[str, str]) -> frozenset[Exporter]:
    """The exporters whose endpoint env var is set (and not blank) in `environ`."""
    return frozenset(
        name for name, names in EXPORTER_ENDPOINT_ENV.items() if any(environ.get(var, "").strip() for var in names)
    )


class FlagSetting(Protocol):
    """A stored flag row as resolution reads it (`store.models.FeatureFlag` and `FlagRow` both fit)."""

    @property
    def key(self) -> str: ...
    @property
    def tenant_id(self) -> str: ...
    @property
    def enabled(self) -> bool: ...
    @property
    def rollout_percent(self) -> int: ...


@dataclass(frozen=True)
class FlagRow:
    """An immutable copy of a stored row, detached from any database session."""

    key: str
    tenant_id: str
    enabled: bool
    rollout_percent: int = 100


@dataclass(frozen=True)
class FlagValue:
    key: str
    enabled: bool
    source: FlagSource
    """Which level decided: the built-in default, the global row, or the tenant's own override."""
    rollout_percent: int = 100
    """The deciding row's rollout (100 for a default)."""


def rollout_bucket(key: str, tenant_id: str) -> int:
    """The tenant's bucket (0 to 99) for `key`: stable across processes and restarts, and independent between
    flags, so a 10 % rollout of two flags does not pick the same tenants."""
    return int.from_bytes(hashlib.sha256(f"{key}:{tenant_id}".encode()).digest(), "big") % 100


def _from_row(row: FlagSetting, tenant_id: str, source: FlagSource) -> FlagValue:
    # A row under 100 % enables the flag only for the tenants in its share; it never turns one on otherwise.
    on = row.enabled and (row.rollout_percent >= 100 or rollout_bucket(row.key, tenant_id) < row.rollout_percent)
    return FlagValue(row.key, on, source, row.rollout_percent)


def resolve_flags(rows: Iterable[FlagSetting], tenant_id: str, defaults: Mapping[str, bool]) -> dict[str, FlagValue]:
    """Every known flag's value for `tenant_id`: its own row over the global row over the default.

    Rows of other tenants and of keys no longer in the registry are ignored.
    """
    global_rows: dict[str, FlagSetting] = {}
    tenant_rows: dict[str, FlagSetting] = {}
    for row in rows:
        if row.key not in SPECS:
            continue
        if row.tenant_id == tenant_id and tenant_id != GLOBAL:
            tenant_rows[row.key] = row
        elif row.tenant_id == GLOBAL:
            global_rows[row.key] = row
    values: dict[str, FlagValue] = {}
    for spec in FLAGS:
        if spec.key in tenant_rows:
            values[spec.key] = _from_row(tenant_rows[spec.key], tenant_id, "tenant")
        elif spec.key in global_rows:
            values[spec.key] = _from_row(global_rows[spec.key], tenant_id, "global")
        else:
            values[spec.key] = FlagValue(spec.key, defaults.get(spec.key, spec.default), "default")
    return values


def global_value(rows: Iterable[FlagSetting], key: str, defaults: Mapping[str, bool]) -> FlagValue:
    """A flag's platform-wide value, before any tenant's override or rollout share is applied."""
    for row in rows:
        if row.key == key and row.tenant_id == GLOBAL:
            return FlagValue(key, row.enabled, "global", row.rollout_percent)
    return FlagValue(key, defaults.get(key, flag_spec(key).default), "default")


def enabled_flags(values: Mapping[str, FlagValue]) -> frozenset[str]:
    return frozenset(key for key, value in values.items() if value.enabled)
