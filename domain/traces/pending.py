"""The activities a running job is waiting on, from its `describe()` as JSON
(`MessageToDict(description.raw_description)`): history records an activity's retries only once it closes, so
a call being retried right now is known from here alone.
"""

from __future__ import annotations

from typing import Any

from domain.traces import history as h
from schemas.traces import PendingActivity


def pending_activities(description: dict[str, Any]) -> list[PendingActivity]:
    """Each entry of `pendingActivities`; one without an id is skipped (nothing to match it with)."""
    found = []
    for info in description.get("pendingActivities") or []:
        if not isinstance(info, dict) or not info.get("activityId"):
            continue
        maximum = int(info.get("maximumAttempts") or 0)
        found.append(
            PendingActivity(
                activity_id=str(info["activityId"]),
                activity_type=str((info.get("activityType") or {}).get("name", "")),
                state="paused" if info.get("paused") else h.enum_name(info.get("state"), "PENDING_ACTIVITY_STATE_"),
                attempt=int(info.get("attempt") or 1),
                maximum_attempts=maximum or None,  # 0: no limit
                last_started_at=h.parse_time(info.get("lastStartedTime")),
                next_attempt_at=h.parse_time(info.get("nextAttemptScheduleTime")),
                last_failure=h.failure_info(info.get("lastFailure")),
            )
        )
    return found
