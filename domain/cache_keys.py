"""Which requests the response cache may answer, and what besides the prompt must match for a hit."""

from __future__ import annotations

import hashlib
import json

from schemas.jobs import JobKind, JobParams

_PROMPT_FREE = {"user", "metadata", "store", "service_tier"}
"""Parameters that label a request or choose how it is billed, not what it asks: they do not split the cache."""


def cacheable(kind: JobKind, params: JobParams, *, allow_temperature_above_zero: bool = False) -> bool:
    """A chat request whose answer may be reused: not sampled on purpose (`temperature > 0`, several choices)
    unless the tenant allows it. An unset temperature takes the provider's default and is cached: a tenant that
    turns the cache on asks for repeated prompts to be answered once."""
    if kind != "chat":
        return False
    if params.n is not None and params.n > 1:
        return False
    return allow_temperature_above_zero or not params.temperature


def request_fingerprint(route: str, params: JobParams) -> str:
    """Everything but the prompt that two requests must share to share an answer: the route, tools, response
    format and every other parameter (sha256 hex of their canonical JSON)."""
    asked = {key: value for key, value in params.declared().items() if key not in _PROMPT_FREE}
    canonical = json.dumps({"route": route, "params": asked}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
