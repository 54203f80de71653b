"""Reading a workflow history as JSON (`WorkflowHistory.to_json_dict()`, `temporal workflow show -o json`).

Proto JSON spells enums `EVENT_TYPE_ACTIVITY_TASK_FAILED`, int64s as strings and payload bytes as base64; the
helpers here turn those into Python values and never raise on a shape they do not know (a payload another
codec encrypted, a field a newer server adds): a trace shows less, it does not fail.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import UTC, datetime
from typing import Any

_JSON_ENCODINGS = {"json/plain", "json/protobuf"}
_CAMEL_WORD = re.compile(r"(?<!^)(?=[A-Z])")


def event_type(event: dict[str, Any]) -> str:
    """`ACTIVITY_TASK_FAILED` from either `EVENT_TYPE_ACTIVITY_TASK_FAILED` or `ActivityTaskFailed`."""
    raw = str(event.get("eventType", ""))
    if raw.startswith("EVENT_TYPE_"):
        return raw.removeprefix("EVENT_TYPE_")
    return _CAMEL_WORD.sub("_", raw).upper()


def attributes(event: dict[str, Any]) -> dict[str, Any]:
    """The event's `...EventAttributes` object (each event holds exactly one)."""
    for key, value in event.items():
        if key.endswith("EventAttributes") and isinstance(value, dict):
            return value
    return {}


def event_time(event: dict[str, Any]) -> datetime:
    return parse_time(event.get("eventTime")) or datetime.fromtimestamp(0, UTC)


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 string (nanoseconds are cut to micro) or a `{seconds, nanos}` object."""
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    if isinstance(value, dict) and "seconds" in value:
        seconds = float(value["seconds"]) + float(value.get("nanos", 0)) / 1e9
        return datetime.fromtimestamp(seconds, UTC)
    return None


def _b64(value: Any) -> str:
    if not isinstance(value, str):
        return ""
    try:
        return base64.b64decode(value).decode()
    except (binascii.Error, UnicodeDecodeError):
        return ""


def decode_payload(payload: Any) -> Any:
    """The JSON value inside one payload; None for `binary/null`, an encrypted or otherwise opaque payload."""
    if not isinstance(payload, dict):
        return None
    encoding = _b64(payload.get("metadata", {}).get("encoding"))
    if encoding not in _JSON_ENCODINGS:
        return None
    try:
        return json.loads(_b64(payload.get("data")))
    except ValueError:
        return None


def first_payload(payloads: Any) -> Any:
    """The first value of a `{"payloads": [...]}` object (activity input, result, update args)."""
    if isinstance(payloads, dict):
        items = payloads.get("payloads") or []
        if items:
            return decode_payload(items[0])
    return None


def search_attribute(attrs: dict[str, Any], name: str) -> Any:
    """One value of an event's `searchAttributes.indexedFields`."""
    fields = (attrs.get("searchAttributes") or {}).get("indexedFields") or {}
    return decode_payload(fields.get(name))


def summary(event: dict[str, Any]) -> str | None:
    """The `summary` the workflow gave an activity or timer (shown by the Temporal UI too)."""
    value = decode_payload((event.get("userMetadata") or {}).get("summary"))
    return value if isinstance(value, str) else None


def failure_info(failure: Any) -> dict[str, Any] | None:
    """`{message, type}` of a Failure; the type of an application error, else of its first typed cause."""
    if not isinstance(failure, dict):
        return None
    found: str | None = None
    node: Any = failure
    while isinstance(node, dict) and found is None:
        found = _failure_type(node)
        node = node.get("cause")
    return {"message": failure.get("message", ""), "type": found}


def _failure_type(failure: dict[str, Any]) -> str | None:
    if "applicationFailureInfo" in failure:
        return (failure["applicationFailureInfo"] or {}).get("type") or None
    if "timeoutFailureInfo" in failure:
        kind = (failure["timeoutFailureInfo"] or {}).get("timeoutType", "")
        return "timeout:" + enum_name(kind, "TIMEOUT_TYPE_")
    if "canceledFailureInfo" in failure:
        return "cancelled"
    if "terminatedFailureInfo" in failure:
        return "terminated"
    return None


def enum_name(value: Any, prefix: str) -> str:
    """`maximum_attempts_reached` from `RETRY_STATE_MAXIMUM_ATTEMPTS_REACHED`."""
    return str(value or "").removeprefix(prefix).lower()


def event_times(events: list[dict[str, Any]]) -> list[datetime]:
    """When each event happened, as near as history tells: its own time, or earlier for the events a workflow
    task's completion recorded.

    Those events (commands, local-activity markers, accepted Updates) all carry the completion's time, yet the
    workflow issued them while the task ran, in history order, between local activities whose markers say
    when each was scheduled (`original_schedule_time`, wall clock). So an event followed, before the next task
    completion, by a marker happened no later than that marker's local activity was scheduled; a marker's own
    time is thus when its local activity ended (no later than the next one started).
    """
    times = [event_time(event) for event in events]
    next_start: datetime | None = None
    for i in range(len(events) - 1, -1, -1):
        if next_start is not None:
            times[i] = min(times[i], next_start)
        kind = event_type(events[i])
        if kind == "WORKFLOW_TASK_COMPLETED":
            next_start = None
        elif kind == "MARKER_RECORDED":
            next_start = local_activity_scheduled(events[i]) or next_start
    return times


def local_activity_scheduled(event: dict[str, Any]) -> datetime | None:
    """When a local-activity marker's activity was first scheduled (None for another marker)."""
    data = first_payload((attributes(event).get("details") or {}).get("data"))
    return parse_time(data.get("original_schedule_time")) if isinstance(data, dict) else None
