"""The abuse detector's bench: seeded traffic of normal and abusive keys, a model per tenant trained on its mixed
(unlabelled) history as the hourly training does, and held-out windows scored as preflight scores them.

Traffic is generated per key as a continuous stream of requests (`RequestRecord`s), so training windows are the
10-minute buckets `store.queries.abuse.history_windows` groups, and held-out windows are sliding: the 10 minutes
before a moment the key is sending (every 5 minutes at which it sent in the last minute), as `AbuseScorer` sees
them. A held-out window is abusive when it holds any request of an abuse episode.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from domain.abuse import score_window
from domain.abuse.features import WINDOW, KeyWindow, RequestRecord, WindowStats, summarize
from domain.abuse.heuristic import heuristic_score
from domain.abuse.model import MIN_TRAINING_WINDOWS, train

EPOCH = datetime(2026, 11, 2, tzinfo=UTC)
"""A Monday: the history runs Monday to Sunday, the held-out days are the next Monday and Tuesday."""
HISTORY_DAYS = 7
HELD_OUT_DAYS = 2
HOUR = 3600.0
DAY = 24 * HOUR
FLAG, THROTTLE, BLOCK = 0.7, 0.85, 0.95
"""The thresholds of DESIGN.md's example policy."""
MAX_FPR = 0.01

Rng = np.random.Generator


@dataclass
class Stream:
    """One key's requests, column by column (seconds since EPOCH), before they become records."""

    t: list[np.ndarray] = field(default_factory=list)
    input_tokens: list[np.ndarray] = field(default_factory=list)
    output_tokens: list[np.ndarray] = field(default_factory=list)
    answered: list[np.ndarray] = field(default_factory=list)
    failed: list[np.ndarray] = field(default_factory=list)
    violated: list[np.ndarray] = field(default_factory=list)
    duplicate: list[np.ndarray] = field(default_factory=list)
    model: list[np.ndarray] = field(default_factory=list)
    abusive: list[np.ndarray] = field(default_factory=list)
    kind: str = "normal"
    """The key's own kind; a compromised normal key also carries episodes of an abusive kind."""
    episodes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Behaviour:
    """How a key sends while in one mode: rate and what its requests look like."""

    rpm: float
    input_mean: float
    input_sigma: float
    output_mean: float = 300.0
    failed: float = 0.02
    violated: float = 0.005
    duplicate: float = 0.05
    models: tuple[int, ...] = (0,)
    burstiness: float = 2.0
    """Gamma shape of the per-hour rate multiplier: low = bursty."""


def _add(stream: Stream, rng: Rng, start: float, end: float, b: Behaviour, *, abusive: bool) -> None:
    """Requests of behaviour `b` from `start` to `end` (seconds), one hour's rate draw at a time."""
    t0 = start
    while t0 < end:
        t1 = min(t0 + HOUR, end)
        rate = b.rpm * rng.gamma(b.burstiness, 1.0 / b.burstiness)
        n = rng.poisson(rate * (t1 - t0) / 60.0)
        if n:
            violated = rng.random(n) < b.violated
            # A violation is a block: the job fails, unanswered.
            failed = (rng.random(n) < b.failed) | violated
            stream.t.append(rng.uniform(t0, t1, n))
            stream.input_tokens.append(np.maximum(1, rng.lognormal(np.log(b.input_mean), b.input_sigma, n)).astype(int))
            stream.output_tokens.append(np.maximum(1, rng.lognormal(np.log(b.output_mean), 0.6, n)).astype(int))
            stream.answered.append(~failed)
            stream.failed.append(failed)
            stream.violated.append(violated)
            stream.duplicate.append(rng.random(n) < b.duplicate)
            stream.model.append(rng.choice(np.asarray(b.models), n, p=_model_weights(len(b.models))))
            stream.abusive.append(np.full(n, abusive))
        t0 = t1


def _model_weights(n: int) -> np.ndarray:
    weights = np.array([0.75 * 0.25**i for i in range(n)])
    return weights / weights.sum()


# --- kinds of keys ---------------------------------------------------------------------------------------


def _person(rng: Rng, offset_h: float) -> Callable[[Stream, int], None]:
    """Someone using an app: weekday office hours in the tenant's zone, varied prompts, a couple of models."""
    b = Behaviour(
        rpm=float(rng.lognormal(np.log(0.8), 0.7)),
        input_mean=float(rng.lognormal(np.log(700), 0.6)),
        input_sigma=float(rng.uniform(0.6, 1.1)),
        duplicate=float(rng.uniform(0.0, 0.12)),
        failed=float(rng.uniform(0.0, 0.04)),
        violated=float(rng.uniform(0.0, 0.02)),
        models=tuple(rng.choice(4, int(rng.integers(1, 3)), replace=False)),
        burstiness=0.8,
    )
    night_owl = rng.random() < 0.15

    def day(stream: Stream, d: int) -> None:
        weekend = d % 7 >= 5
        for hour in range(24):
            local = (hour + offset_h) % 24
            working = 8 <= local < 19 or (night_owl and (local >= 21 or local < 1))
            if working and rng.random() < (0.08 if weekend else 0.6):
                _add(stream, rng, d * DAY + hour * HOUR, d * DAY + (hour + 1) * HOUR, b, abusive=False)

    return day


def _service(rng: Rng, offset_h: float) -> Callable[[Stream, int], None]:
    """A legitimate integration: steady, templated prompts, round the clock (a hard case for rules)."""
    b = Behaviour(
        rpm=float(rng.uniform(2, 8)),
        input_mean=float(rng.uniform(300, 900)),
        input_sigma=0.2,
        duplicate=0.15,
        failed=0.01,
        violated=0.0,
        burstiness=6.0,
    )

    def day(stream: Stream, d: int) -> None:
        _add(stream, rng, d * DAY, (d + 1) * DAY, b, abusive=False)

    return day


def _batch(rng: Rng, offset_h: float) -> Callable[[Stream, int], None]:
    """A legitimate nightly batch job: high volume for two hours, a normal mix of prompts (a hard case)."""
    b = Behaviour(
        rpm=float(rng.uniform(40, 120)),
        input_mean=900,
        input_sigma=0.8,
        duplicate=0.05,
        failed=0.02,
        violated=0.002,
        burstiness=8.0,
    )
    start_h = float(rng.integers(0, 4))

    def day(stream: Stream, d: int) -> None:
        _add(stream, rng, d * DAY + start_h * HOUR, d * DAY + (start_h + 2) * HOUR, b, abusive=False)

    return day


ABUSE: dict[str, Callable[[Rng], Behaviour]] = {
    "scraping_burst": lambda rng: Behaviour(
        rpm=float(rng.uniform(40, 200)),
        input_mean=float(rng.uniform(200, 600)),
        input_sigma=0.15,
        duplicate=float(rng.uniform(0.1, 0.5)),
        failed=0.03,
        violated=0.0,
        burstiness=5.0,
    ),
    "scripted_duplicates": lambda rng: Behaviour(
        rpm=float(rng.uniform(8, 40)),
        input_mean=float(rng.uniform(100, 800)),
        input_sigma=0.05,
        duplicate=float(rng.uniform(0.7, 1.0)),
        failed=0.02,
        violated=0.0,
        burstiness=5.0,
    ),
    "guardrail_probing": lambda rng: Behaviour(
        rpm=float(rng.uniform(1.5, 8)),
        input_mean=float(rng.uniform(300, 1500)),
        input_sigma=0.9,
        duplicate=0.1,
        failed=0.03,
        violated=float(rng.uniform(0.25, 0.8)),
        models=(0, 1, 2),
        burstiness=3.0,
    ),
    "off_hours_flood": lambda rng: Behaviour(
        rpm=float(rng.uniform(10, 50)),
        input_mean=float(rng.uniform(15_000, 60_000)),
        input_sigma=0.3,
        output_mean=3000,
        duplicate=0.05,
        failed=0.02,
        violated=0.0,
        burstiness=5.0,
    ),
    "error_storm": lambda rng: Behaviour(
        rpm=float(rng.uniform(30, 150)),
        input_mean=60,
        input_sigma=0.3,
        duplicate=0.2,
        failed=float(rng.uniform(0.6, 0.98)),
        violated=0.0,
        models=(0, 1, 2, 3),
        burstiness=5.0,
    ),
}


def _episodes(stream: Stream, rng: Rng, kind: str, days: range, count: int) -> None:
    """`count` abuse episodes of `kind`, 20 minutes to 2 hours each, within `days` (a flood only at night)."""
    for _ in range(count):
        d = int(rng.integers(days.start, days.stop))
        if kind == "off_hours_flood":
            start = d * DAY + float(rng.uniform(22, 27)) * HOUR
        else:
            start = d * DAY + float(rng.uniform(0, 24)) * HOUR
        _add(stream, rng, start, start + float(rng.uniform(20, 120)) * 60, ABUSE[kind](rng), abusive=True)
        stream.episodes.append(kind)


def tenant_streams(rng: Rng, offset_h: float, *, people: int = 30) -> list[Stream]:
    """One tenant's keys over history and held-out days: people (a few of whose keys are stolen for a while),
    services, a batch job, abusers active in the history, and new abusers only in the held-out days."""
    all_days = range(HISTORY_DAYS + HELD_OUT_DAYS)
    history, held_out = range(HISTORY_DAYS), range(HISTORY_DAYS, HISTORY_DAYS + HELD_OUT_DAYS)
    streams: list[Stream] = []
    for kind, make, count in (("person", _person, people), ("service", _service, 2), ("batch", _batch, 1)):
        for _ in range(count):
            stream, day = Stream(kind=kind), make(rng, offset_h)
            for d in all_days:
                day(stream, d)
            streams.append(stream)
    kinds = list(ABUSE)
    for i, stolen in enumerate(streams[:5]):  # stolen people's keys: one kind each, in both periods
        _episodes(stolen, rng, kinds[i], history, 1)
        _episodes(stolen, rng, kinds[i], held_out, 1)
    for kind in kinds:
        seen, new = Stream(kind=kind), Stream(kind=kind)
        _episodes(seen, rng, kind, history, 3)
        _episodes(seen, rng, kind, held_out, 1)
        _episodes(new, rng, kind, held_out, 2)
        streams += [seen, new]
    return streams


# --- windows ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Columns:
    t: np.ndarray
    records: list[RequestRecord]
    abusive: np.ndarray


def columns(stream: Stream, model_names: list[str]) -> Columns:
    """The stream sorted by time, as records (the abuse features' input) and a parallel abusive flag."""
    if not stream.t:
        return Columns(np.zeros(0), [], np.zeros(0, dtype=bool))
    t = np.concatenate(stream.t)
    order = np.argsort(t, kind="stable")

    def cat(parts: list[np.ndarray]) -> list[Any]:
        return list(np.concatenate(parts)[order].tolist())

    start = EPOCH.timestamp()
    # Positional: this runs once per generated request (over a million), and keywords cost a third more.
    records = [
        RequestRecord(
            datetime.fromtimestamp(start + at, UTC),
            model_names[m],
            inp if ans else 0,
            out if ans else 0,
            ans,
            fail,
            vio,
            dup,
        )
        for at, m, inp, out, ans, fail, vio, dup in zip(
            t[order].tolist(),
            cat(stream.model),
            cat(stream.input_tokens),
            cat(stream.output_tokens),
            cat(stream.answered),
            cat(stream.failed),
            cat(stream.violated),
            cat(stream.duplicate),
            strict=True,
        )
    ]
    return Columns(t[order], records, np.concatenate(stream.abusive)[order])


def history_windows(cols: Columns, *, days: int = HISTORY_DAYS) -> Iterator[tuple[WindowStats, bool]]:
    """The key's non-empty tumbling windows of the history, as the training query groups them."""
    width = WINDOW.total_seconds()
    end = np.searchsorted(cols.t, days * DAY)
    buckets = (cols.t[:end] // width).astype(int)
    for bucket in np.unique(buckets):
        lo, hi = np.searchsorted(buckets, [bucket, bucket + 1])
        yield _window(cols, bucket * width, (bucket + 1) * width, lo, hi)


def scored_windows(
    cols: Columns, *, first_day: int, days: int, every_s: float = 300.0
) -> Iterator[tuple[WindowStats, bool]]:
    """Sliding windows ending every `every_s` at which the key sent something in the minute before."""
    width = WINDOW.total_seconds()
    for now in np.arange(first_day * DAY + every_s, (first_day + days) * DAY + 1, every_s):
        lo, recent, hi = np.searchsorted(cols.t, [now - width, now - 60.0, now])
        if hi > recent:
            yield _window(cols, now - width, now, lo, hi)


def _window(cols: Columns, start: float, end: float, lo: int, hi: int) -> tuple[WindowStats, bool]:
    window = KeyWindow(EPOCH + timedelta(seconds=start), EPOCH + timedelta(seconds=end), cols.records[lo:hi])
    return summarize(window), bool(cols.abusive[lo:hi].any())


# --- the report ------------------------------------------------------------------------------------------

TENANTS = {"eu-office": 1.0, "us-office": -6.0, "apac-office": 8.0}
"""Tenant -> its UTC offset: each tenant's normal hours differ, which only a per-tenant model knows."""
MODELS = ["fast", "smart", "cheap", "vision"]


def evaluate(seed: int = 7) -> dict[str, Any]:
    """Generate, train per tenant, score the held-out windows; the figures `make bench-guard` prints.

    Scorers: `score` is what preflight gets (`domain.abuse.score_window`: the higher of the two once a tenant
    has a model), beside the heuristic and the model alone, and `noisy_or`, the combination not chosen.
    """
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    labels: list[bool] = []
    kinds: list[str] = []
    scores: dict[str, list[float]] = {"score": [], "heuristic": [], "model": [], "noisy_or": []}
    latencies: list[float] = []
    training: dict[str, Any] = {}
    for tenant, offset in TENANTS.items():
        streams = tenant_streams(rng, offset)
        cols = [columns(s, MODELS) for s in streams]
        history = [w for c in cols for w in history_windows(c)]
        fit_started = time.perf_counter()
        model = train([stats for stats, _ in history], seed=seed)
        training[tenant] = {
            "windows": len(history),
            "abusive_share": round(float(np.mean([abusive for _, abusive in history])), 4),
            "fit_s": round(time.perf_counter() - fit_started, 2),
            "model_bytes": len(model.dump()[0]),
        }
        held_out = [
            (stats, abusive, _kind(stream, abusive))
            for stream, c in zip(streams, cols, strict=True)
            for stats, abusive in scored_windows(c, first_day=HISTORY_DAYS, days=HELD_OUT_DAYS)
        ]
        for stats, abusive, kind in held_out:
            call_started = time.perf_counter()
            scores["score"].append(score_window(stats, model).score)
            latencies.append(time.perf_counter() - call_started)
            labels.append(abusive)
            kinds.append(kind)
        windows = [stats for stats, _, _ in held_out]
        heuristic = np.asarray([heuristic_score(stats) for stats in windows])
        learned = model.scores(windows)
        scores["heuristic"] += heuristic.tolist()
        scores["model"] += learned.tolist()
        scores["noisy_or"] += (1 - (1 - heuristic) * (1 - learned)).tolist()
    y = np.asarray(labels)
    ms = np.asarray(latencies) * 1000
    return {
        "seed": seed,
        "min_training_windows": MIN_TRAINING_WINDOWS,
        "training": training,
        "held_out": {"windows": len(y), "abusive": int(y.sum())},
        "score_window_ms": {f"p{q}": round(float(np.percentile(ms, q)), 3) for q in (50, 99)},
        "scorers": {name: _figures(y, np.asarray(s), kinds) for name, s in scores.items()},
        "elapsed_s": round(time.perf_counter() - started, 1),
    }


def _kind(stream: Stream, abusive: bool) -> str:
    """Normal windows by key kind; abusive ones by the kind of abuse (a stolen person's key: its episodes')."""
    if not abusive:
        return stream.kind if stream.kind in ("person", "service", "batch") else "abuser_idle"
    return stream.episodes[0] if stream.kind == "person" else stream.kind


def _figures(y: np.ndarray, s: np.ndarray, kinds: list[str]) -> dict[str, Any]:
    normal = s[~y]
    # The lowest threshold keeping false positives at or under MAX_FPR: the (1 - MAX_FPR) quantile of normals.
    at_max_fpr = float(np.quantile(normal, 1 - MAX_FPR, method="higher")) if len(normal) else 1.0
    by_kind: dict[str, dict[str, float]] = {}
    kind_array = np.asarray(kinds)
    for kind in sorted(set(kinds)):
        mask = kind_array == kind
        by_kind[kind] = {
            "windows": int(mask.sum()),
            f"share_ge_{FLAG}": round(float((s[mask] >= FLAG).mean()), 4),
            f"share_ge_{THROTTLE}": round(float((s[mask] >= THROTTLE).mean()), 4),
            f"share_ge_{BLOCK}": round(float((s[mask] >= BLOCK).mean()), 4),
        }
    return {
        "roc_auc": round(float(roc_auc_score(y, s)), 4),
        f"fpr_at_{BLOCK}": round(float((normal >= BLOCK).mean()), 4),
        f"tpr_at_{BLOCK}": round(float((s[y] >= BLOCK).mean()), 4),
        f"fpr_at_{FLAG}": round(float((normal >= FLAG).mean()), 4),
        f"tpr_at_{FLAG}": round(float((s[y] >= FLAG).mean()), 4),
        "threshold_for_1pct_fpr": round(at_max_fpr, 4),
        "tpr_at_that_threshold": round(float((s[y] > at_max_fpr).mean()), 4),
        "by_kind": by_kind,
    }
