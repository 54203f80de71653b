"""The trace page's waterfall (`api.ui.waterfall`) on recorded job histories and on hand-made spans: where each
bar sits on the time axis, and what is marked on it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from api.ui.waterfall import Row, final_call, marks, role_of, seconds, waterfall
from domain.traces.build import build_trace
from schemas.traces import Span, Trace
from tests.support.common import HISTORIES

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def recorded(name: str) -> Trace:
    return build_trace(f"job_{name}", json.loads((HISTORIES / f"{name}.json").read_text()))


def span(
    span_id: str,
    kind: str,
    start_ms: int,
    end_ms: int | None,
    *,
    status: str = "ok",
    children: list[Span] | None = None,
    **attributes: Any,
) -> Span:
    return Span.model_validate(
        {
            "span_id": span_id,
            "parent_id": None,
            "name": f"span {span_id}",
            "kind": kind,
            "start_time": T0 + timedelta(milliseconds=start_ms),
            "end_time": None if end_ms is None else T0 + timedelta(milliseconds=end_ms),
            "status": status,
            "attributes": attributes,
            "children": children or [],
        }
    )


def job(*children: Span, end_ms: int | None = 1000) -> Trace:
    root = span("1", "workflow", 0, end_ms, status="ok" if end_ms else "running", children=list(children))
    return Trace(job_id="job_x", status="succeeded" if end_ms else "running", root=root)


def by_id(rows: list[Row], span_id: str) -> Row:
    return next(row for row in rows if row.span.span_id == span_id)


def texts(row: Row) -> list[str]:
    return [mark.text for mark in row.marks]


def said(row: Row) -> str:
    """What a person reads on the row: the span's name and its marks."""
    return " ".join([row.span.name, *texts(row)])


def test_bars_sit_on_the_axis_in_percent_of_the_trace() -> None:
    trace = job(span("2", "local_activity", 100, 350, activity_type="preflight"), span("3", "activity", 500, 1000))

    view = waterfall(trace, now=T0)

    assert [(row.left_pct, row.width_pct) for row in view.rows] == [(0, 100), (10, 25), (50, 50)]
    assert view.duration_s == 1.0
    assert [tick.label for tick in view.ticks] == ["0 ms", "250 ms", "500 ms", "750 ms", "1 s"]


def test_children_are_indented_below_their_parent_in_order() -> None:
    park = span("3", "park", 200, 800, children=[span("4", "timer", 210, 800), span("5", "update", 790, 790)])
    view = waterfall(job(span("2", "local_activity", 0, 200), park), now=T0)

    assert [(row.span.span_id, row.depth) for row in view.rows] == [
        ("1", 0),
        ("2", 1),
        ("3", 1),
        ("4", 2),
        ("5", 2),
    ]
    assert [row.index for row in view.rows] == [0, 1, 2, 3, 4]


def test_an_open_span_runs_to_now_and_the_axis_with_it() -> None:
    call = span("2", "activity", 500, None, status="running", provider="up", model="m", attempts=2)
    view = waterfall(job(call, end_ms=None), now=T0 + timedelta(seconds=2))

    row = by_id(view.rows, "2")
    assert (row.left_pct, row.width_pct, row.duration_s) == (25, 75, None)
    assert row.duration_text == "still open"
    assert view.rows[0].width_pct == 100
    assert texts(row)[:2] == ["running", "2 attempts"]


def test_a_bar_never_runs_past_the_end_of_the_axis() -> None:
    # `now` before a span's recorded end (clocks of two machines): the bar stops at the axis' end.
    late = span("2", "activity", 900, 1500)
    view = waterfall(job(late), now=T0)

    row = by_id(view.rows, "2")
    assert row.left_pct + row.width_pct <= 100
    assert view.end == T0 + timedelta(milliseconds=1500)


def test_an_instant_trace_puts_every_bar_at_the_start() -> None:
    view = waterfall(job(span("2", "reroute", 0, 0), end_ms=0), now=T0)

    assert [(row.left_pct, row.width_pct) for row in view.rows] == [(0, 0), (0, 0)]


def test_a_retried_and_rerouted_job_marks_the_failure_the_reroute_and_the_answer() -> None:
    view = waterfall(recorded("reroute"), now=T0)

    roles = [row.role for row in view.rows]
    assert roles == ["job", "preflight", "call", "reroute", "call", "postflight"]
    failed, reroute, answered = view.rows[2], view.rows[3], view.rows[4]
    assert texts(failed)[:2] == ["failed", "3 attempts"]
    assert "final deployment" not in texts(failed)
    assert f"{reroute.span.attributes['from_deployment']} → {reroute.span.attributes['to_deployment']}" in said(reroute)
    assert f"up/{answered.span.attributes['model']}" in said(answered)
    assert "final deployment" in texts(answered)
    assert final_call(recorded("reroute")) is not None
    assert [mark.tone for mark in failed.marks][:1] == ["bad"]


def test_parking_and_its_repair_are_marked() -> None:
    view = waterfall(recorded("park_repair"), now=T0)

    park = next(row for row in view.rows if row.role == "park")
    repair = next(row for row in view.rows if row.role == "repair")
    assert "parked" in texts(park)
    assert "repair" in said(repair) and "retry" in said(repair)
    assert repair.depth == park.depth + 1


def test_guardrail_verdicts_and_a_cache_hit_are_marked() -> None:
    guarded = {row.role: texts(row) for row in waterfall(recorded("guarded"), now=T0).rows}
    cached = {row.role: texts(row) for row in waterfall(recorded("cache_hit"), now=T0).rows}

    assert "input pii: redact" in guarded["preflight"]
    assert "output pii: redact" in guarded["call"]
    assert "cache hit" in cached["preflight"]
    assert "call" not in cached  # answered from the cache: no call at all


def test_a_label_the_name_already_says_is_not_repeated() -> None:
    named = span("2", "reroute", 0, 0, from_deployment="up/a", to_deployment="up/b")
    renamed = named.model_copy(update={"name": "reroute up/a → up/b"})
    call = span("3", "activity", 0, 1, provider="up", model="m").model_copy(update={"name": "call up/m"})

    assert [mark.text for mark in marks(named)] == ["up/a → up/b"]
    assert marks(renamed) == []
    assert marks(call) == []


def test_a_policy_refusal_is_marked_with_its_code() -> None:
    refused = span(
        "2", "local_activity", 0, 10, activity_type="preflight", policy={"refusal": {"code": "abuse_blocked"}}
    )

    assert [mark.text for mark in marks(refused)] == ["refused: abuse_blocked"]


@pytest.mark.parametrize(
    ("kind", "attributes", "role"),
    [
        ("local_activity", {"provider": "up", "model": "m", "activity_type": "anything"}, "call"),
        ("activity", {"activity_type": "preflight"}, "preflight"),
        ("activity", {"activity_type": "record_events"}, "step"),
        ("update", {"action": "reroute"}, "repair"),
        ("park", {}, "park"),
        ("workflow", {}, "job"),
    ],
)
def test_roles_come_from_kind_and_attributes_never_the_name(kind: str, attributes: dict[str, Any], role: str) -> None:
    assert role_of(span("9", kind, 0, 1, **attributes)) == role


def test_durations_read_as_a_person_says_them() -> None:
    assert [seconds(v) for v in (0.0123, 1.0, 2.5, 300)] == ["12 ms", "1 s", "2.50 s", "5.0 min"]
