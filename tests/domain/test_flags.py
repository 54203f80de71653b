"""domain.flags: the registry, defaults, precedence (default < global < tenant) and stable rollouts."""

from __future__ import annotations

import pytest

from domain.flags import (
    FLAGS,
    GLOBAL,
    FlagRow,
    FlagValue,
    UnknownFlag,
    default_flags,
    enabled_flags,
    exporters_configured,
    flag_spec,
    global_value,
    resolve_flags,
    rollout_bucket,
)
from store.models import GLOBAL_SCOPE
from tests.support.common import REPO

DESIGN_FLAGS = [
    "track_model_costs",
    "enable_similarity_logging",
    "enable_response_cache",
    "enable_langfuse_export",
    "enable_warehouse_export",
    "enable_async_trace_export",
    "enable_smart_routing",
    "enable_policy_engine",
    "enable_rate_limiting",
    "enable_guardrails_ai",
    "enable_abuse_detection",
    "enable_self_healing",
    "enable_retry_workflows",
    "enable_reroute",
    "enable_repair_execution",
    "enable_cron_backoff",
]
EXPORTERS = {"enable_langfuse_export", "enable_warehouse_export", "enable_async_trace_export"}
NO_EXPORTERS = default_flags(frozenset())


def test_the_registry_holds_exactly_the_designed_flags() -> None:
    assert [spec.key for spec in FLAGS] == DESIGN_FLAGS
    assert {spec.key for spec in FLAGS if spec.built} == {
        "track_model_costs",
        "enable_similarity_logging",
        "enable_response_cache",
        "enable_policy_engine",
        "enable_rate_limiting",
        "enable_guardrails_ai",
        "enable_abuse_detection",
        "enable_langfuse_export",
        "enable_warehouse_export",
        "enable_async_trace_export",
    }
    assert GLOBAL == GLOBAL_SCOPE


def test_defaults_are_on_but_the_cache_smart_routing_and_unconfigured_exporters() -> None:
    off = {key for key, on in NO_EXPORTERS.items() if not on}
    assert off == {"enable_response_cache", "enable_smart_routing"} | EXPORTERS

    everything = default_flags(frozenset({"langfuse", "warehouse", "otlp"}))
    assert {key for key, on in everything.items() if not on} == {"enable_response_cache", "enable_smart_routing"}


def test_an_exporter_is_configured_by_its_endpoint_env_var() -> None:
    environ = {"LANGFUSE_BASE_URL": "http://langfuse:3000", "OTEL_EXPORTER_OTLP_ENDPOINT": "  "}

    configured = exporters_configured(environ)
    defaults = default_flags(configured)

    assert configured == {"langfuse"}
    assert defaults["enable_langfuse_export"] is True
    assert defaults["enable_async_trace_export"] is False  # blank is not configured
    assert default_flags(exporters_configured({"KINTSUGI_RUDDERSTACK_DATA_PLANE_URL": "http://rs"}))[
        "enable_warehouse_export"
    ]
    # The traces endpoint alone configures the OTLP job-trace sink, so it turns its flag on too.
    assert exporters_configured({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}) == {"otlp"}


def test_tenant_row_overrides_global_row_overrides_default() -> None:
    rows = [
        FlagRow("track_model_costs", GLOBAL, enabled=False),
        FlagRow("enable_smart_routing", GLOBAL, enabled=True),
        FlagRow("enable_smart_routing", "ten_a", enabled=False),
        FlagRow("enable_response_cache", "ten_b", enabled=True),  # another tenant's: no effect on ten_a
        FlagRow("enable_retired_flag", GLOBAL, enabled=True),  # a key no longer in the registry
    ]

    values = resolve_flags(rows, "ten_a", NO_EXPORTERS)

    assert list(values) == DESIGN_FLAGS
    assert values["track_model_costs"] == FlagValue("track_model_costs", False, "global")
    assert values["enable_smart_routing"] == FlagValue("enable_smart_routing", False, "tenant")
    assert values["enable_response_cache"] == FlagValue("enable_response_cache", False, "default")
    assert values["enable_reroute"] == FlagValue("enable_reroute", True, "default")
    assert resolve_flags(rows, "ten_b", NO_EXPORTERS)["enable_response_cache"].source == "tenant"
    assert resolve_flags(rows, "ten_c", NO_EXPORTERS)["enable_smart_routing"].enabled is True


def test_rollout_is_stable_per_tenant_near_its_percent_and_independent_between_flags() -> None:
    tenants = [f"ten_{i}" for i in range(4000)]
    rows = [
        FlagRow("enable_smart_routing", GLOBAL, enabled=True, rollout_percent=30),
        FlagRow("enable_reroute", GLOBAL, enabled=True, rollout_percent=30),
    ]

    smart = {t for t in tenants if resolve_flags(rows, t, NO_EXPORTERS)["enable_smart_routing"].enabled}
    reroute = {t for t in tenants if resolve_flags(rows, t, NO_EXPORTERS)["enable_reroute"].enabled}

    assert 0.27 < len(smart) / len(tenants) < 0.33
    assert 0.27 < len(reroute) / len(tenants) < 0.33
    # Independent draws overlap on about 30 % x 30 % = 9 %; the same draw would overlap on 30 %.
    assert 0.06 < len(smart & reroute) / len(tenants) < 0.12
    again = {t for t in tenants if resolve_flags(list(reversed(rows)), t, NO_EXPORTERS)["enable_smart_routing"].enabled}
    assert again == smart
    assert all(rollout_bucket("enable_smart_routing", t) < 30 for t in smart)


def test_rollout_edges_and_a_disabled_row() -> None:
    def on(row: FlagRow, tenant: str = "ten_a") -> bool:
        return resolve_flags([row], tenant, NO_EXPORTERS)[row.key].enabled

    assert not any(on(FlagRow("enable_reroute", GLOBAL, True, 0), f"t{i}") for i in range(200))
    assert all(on(FlagRow("enable_reroute", GLOBAL, True, 100), f"t{i}") for i in range(200))
    assert not any(on(FlagRow("enable_reroute", GLOBAL, False, 50), f"t{i}") for i in range(200))
    # A tenant's own row with a rollout share follows the same bucket as a global one.
    bucket = rollout_bucket("enable_reroute", "ten_a")
    assert on(FlagRow("enable_reroute", "ten_a", True, bucket + 1))
    assert not on(FlagRow("enable_reroute", "ten_a", True, bucket))


def test_global_value_ignores_tenant_rows_and_rollout_share() -> None:
    rows = [
        FlagRow("enable_reroute", GLOBAL, enabled=True, rollout_percent=10),
        FlagRow("enable_reroute", "ten_a", enabled=False),
    ]

    assert global_value(rows, "enable_reroute", NO_EXPORTERS) == FlagValue("enable_reroute", True, "global", 10)
    assert global_value(rows, "enable_response_cache", NO_EXPORTERS) == FlagValue(
        "enable_response_cache", False, "default"
    )


def test_enabled_flags_are_what_preflight_reads() -> None:
    values = resolve_flags([FlagRow("track_model_costs", GLOBAL, enabled=False)], "ten_a", NO_EXPORTERS)

    on = enabled_flags(values)

    assert "track_model_costs" not in on and "enable_similarity_logging" in on and "enable_reroute" in on
    assert set(values) == set(DESIGN_FLAGS)


def test_an_unknown_flag_names_the_known_ones() -> None:
    with pytest.raises(UnknownFlag) as raised:
        flag_spec("enable_magic")

    assert raised.value.code == "unknown_flag"
    assert raised.value.details["flags"] == DESIGN_FLAGS


def test_the_readme_documents_every_flag() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Feature flags", 1)[1].split("\n## ", 1)[0]

    for spec in FLAGS:
        assert f"`{spec.key}`" in section, spec.key
