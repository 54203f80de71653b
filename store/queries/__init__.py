"""Query functions, one module per resource. They only `flush()`: the caller owns the transaction
(`async with session.begin()`). Imported as `from store import queries` and called as `queries.<name>`."""

from store.models import DEFAULT_TENANT_ID
from store.queries.api_keys import KEY_PREFIX, create_api_key, find_api_key, hash_key, revoke_api_key
from store.queries.cost_logs import cost_logs_for_job, insert_cost_log
from store.queries.event_logs import events_for_job, insert_events
from store.queries.tenants import create_tenant, get_tenant

__all__ = [
    "DEFAULT_TENANT_ID",
    "KEY_PREFIX",
    "cost_logs_for_job",
    "create_api_key",
    "create_tenant",
    "events_for_job",
    "find_api_key",
    "get_tenant",
    "hash_key",
    "insert_cost_log",
    "insert_events",
    "revoke_api_key",
]
