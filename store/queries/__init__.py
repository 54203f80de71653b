"""Query functions, one module per resource. They only `flush()`: the caller owns the transaction
(`async with session.begin()`). Imported as `from store import queries` and called as `queries.<name>`."""

from store.models import DEFAULT_TENANT_ID
from store.queries.api_keys import KEY_PREFIX, create_api_key, find_api_key, hash_key, revoke_api_key
from store.queries.audit import AuditPage, audit_page, insert_audit
from store.queries.cost_logs import cost_logs_for_job, insert_cost_log
from store.queries.cost_reports import cost_report
from store.queries.error_report import error_groups
from store.queries.event_logs import events_for_job, insert_events, mark_exported, oldest_pending, pending_events
from store.queries.events_read import EventPage, event_page
from store.queries.flags import delete_flag, flag_rows, set_flag
from store.queries.metrics_summary import LATENCY_SAMPLE, summary_rows
from store.queries.response_cache import find_cached_answer, insert_cached_answer
from store.queries.similarity import find_similar, match_prompt, near_duplicate_share, record_prompt, write_prompt
from store.queries.tenants import create_tenant, get_tenant

__all__ = [
    "DEFAULT_TENANT_ID",
    "KEY_PREFIX",
    "LATENCY_SAMPLE",
    "AuditPage",
    "EventPage",
    "audit_page",
    "cost_logs_for_job",
    "cost_report",
    "create_api_key",
    "create_tenant",
    "delete_flag",
    "error_groups",
    "event_page",
    "events_for_job",
    "find_api_key",
    "find_cached_answer",
    "find_similar",
    "flag_rows",
    "get_tenant",
    "hash_key",
    "insert_audit",
    "insert_cached_answer",
    "insert_cost_log",
    "insert_events",
    "mark_exported",
    "match_prompt",
    "near_duplicate_share",
    "oldest_pending",
    "pending_events",
    "record_prompt",
    "revoke_api_key",
    "set_flag",
    "summary_rows",
    "write_prompt",
]
