"""A tenant's own abuse model: an IsolationForest (scikit-learn) trained on its history windows, unlabelled.

History may hold some abuse; an isolation forest needs no labels and tolerates that, since a few abusive
windows are isolated quickly rather than learned as normal. Its anomaly score (the paper's `2^(-E[h]/c)`, ~0.5
for ordinary points) is placed on the tenant's own scale: `u` = how far a window is from the tenant's median
training score towards the score of a point isolated by the very first split of every tree (`u` = 1). A median
is robust to the abuse in the history, and the end point depends only on the forest's size, so `u` means the
same for a tenant with a tight core of alike windows and one with diverse traffic (a scale of MADs did not: the
same error storm was 15 MADs out in the bench's tenants and 5 in the unit tests'). A logistic maps `u` to 0..1
(`to_unit`); volume alone raises it only so far (`U_VOLUME_ALONE`).

What the forest cannot see: a feature that never varied in the tenant's history (no request of it ever hit a
guardrail, say) is never split on, so an extreme value of it goes unnoticed. The heuristic, whose score the
combination keeps when higher (`domain.abuse.score_window`), covers those.

Stored without pickle: the fitted trees are packed into flat arrays (`PackedForest`) saved as an `.npz` with
`allow_pickle=False`, so loading a row of `abuse_models` can never run code, whoever wrote the row. Packed, a
window scores in ~0.2 ms against scikit-learn's ~16 ms (its per-tree Python overhead), which matters on
preflight; the scores equal scikit-learn's (`tests/domain/test_abuse_model.py`).
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from domain.abuse.features import WINDOW, WindowStats, feature_vector
from domain.abuse.heuristic import shrunk

if TYPE_CHECKING:
    # Imported where a model is fitted: scoring needs numpy only, so preflight never loads scikit-learn.
    from sklearn.ensemble import IsolationForest

MIN_TRAINING_WINDOWS = 200
"""Non-empty key windows a tenant needs before it gets a model: ~33 key-hours of traffic with 10-minute windows,
enough for the median of its scores to be stable to a few percent. Until then the heuristic scores it."""
N_TREES = 100
MAX_SAMPLES = 512
"""Windows per tree. Measured by `make bench-guard` against 256: ROC AUC 0.992 against 0.989, a recurring
batch job a little less isolated; 1,024 adds nothing but size (the model is ~130 KB at 512)."""
MAX_DEPTH = 64
"""A stored forest deeper than this is refused: scoring walks `depth` steps."""
FORMAT = 1
"""The layout of the stored arrays and stats; a model of another format is ignored (the heuristic scores)."""
U_MID = 0.34
"""`u` that maps to 0.5."""
U_WIDTH = 0.0715
"""The logistic's width: U_MID + 0.85 widths (u = 0.40) maps to 0.7, DESIGN.md's example flag threshold; + 1.39
(0.44) to 0.8; + 2.94 (0.55) to 0.95, its block threshold. Chosen on `make bench-guard`'s seed 7, where the
tenants' normal held-out windows reach u ≈ 0.32 at their 99th percentile and 0.4 at their 99.9th, and an error
storm's median is 0.6 (its mix alone, at typical volume, 0.52); checked on seeds 1-3. A block needs the window
to be more than half-way from the tenant's typical window to complete isolation."""
U_VOLUME_ALONE = U_MID + math.log(4) * U_WIDTH  # to_unit = 0.8
"""The most that request rate and token volume raise a window on their own (0.8: over a flag, under DESIGN.md's
throttle and block thresholds): a window scores higher only if what it sends is unusual too, judged at the
tenant's typical volume. A legitimate batch job is as loud as a scraper; rate limits are for loudness."""

VOLUME_INPUTS = [0, 1]
"""The columns of `INPUT_NAMES` that measure how much a key sends rather than what."""
INPUT_NAMES = (
    "log_requests_per_min",
    "log_tokens_per_min",
    "prompt_length_spread",
    "near_duplicate_share",
    "violation_rate",
    "error_rate",
    "distinct_models",
    "off_hours_share",
    "log_tokens_per_request",
)


class NotEnoughHistory(Exception):
    """Fewer than MIN_TRAINING_WINDOWS windows: the tenant keeps the heuristic."""


def model_inputs(windows: Sequence[WindowStats]) -> np.ndarray:
    """The forest's inputs: volumes on a log scale (a forest splits uniformly between a feature's extremes, so a
    linear scale would spend every split on the loudest key), shares shrunk by their evidence like the
    heuristic's. float32, as scikit-learn's trees compare.

    NaN where the window cannot tell: the spread of prompt lengths without two answered requests, the tokens
    per request without one. `AbuseModel` fills those with the tenant's typical values, because 0 would read as
    "one template" and "empty prompts", extremes that a tenant whose windows are rarely that small never saw.
    """
    rows = []
    for stats in windows:
        rpm, tpm, spread, duplicates, violations, errors, models, off_hours = feature_vector(stats)
        n = stats.requests
        answered = stats.answered
        rows.append(
            (
                math.log1p(rpm),
                math.log1p(tpm),
                min(spread, 3.0) if answered >= 2 else math.nan,
                shrunk(duplicates, n),
                shrunk(violations, n),
                shrunk(errors, n),
                models,
                shrunk(off_hours, n),
                # A token flood sends huge prompts: per request, not per minute, what no person sends.
                math.log1p((stats.input_tokens + stats.output_tokens) / answered) if answered else math.nan,
            )
        )
    return np.asarray(rows, dtype=np.float32).reshape(len(rows), len(INPUT_NAMES))


def average_path_length(n: np.ndarray) -> np.ndarray:
    """c(n): the mean depth of an unsuccessful search in a binary tree of n points (as scikit-learn defines)."""
    n = np.asarray(n, dtype=np.float64)
    out = np.zeros_like(n)
    out[n == 2] = 1.0
    many = n > 2
    out[many] = 2.0 * (np.log(n[many] - 1.0) + np.euler_gamma) - 2.0 * (n[many] - 1.0) / n[many]
    return out


@dataclass(frozen=True)
class PackedForest:
    """Every tree of a fitted IsolationForest in flat arrays, scored for all trees at once.

    A leaf points at itself (so walking `depth` steps from the roots ends on a leaf whatever its depth) and
    holds its path length: its depth plus c(its training samples), scikit-learn's estimate of the rest.
    """

    left: np.ndarray
    right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    path_length: np.ndarray
    roots: np.ndarray
    depth: int
    normaliser: float
    """Trees x c(max_samples): the expected total path length of an ordinary point."""

    @property
    def isolated(self) -> float:
        """The anomaly score of a point isolated by the first split of every tree (path length 1 in each)."""
        return float(2.0 ** (-len(self.roots) / self.normaliser))

    @classmethod
    def from_sklearn(cls, forest: IsolationForest) -> PackedForest:
        lefts, rights, features, thresholds, lengths, roots = [], [], [], [], [], []
        offset = 0
        max_depth = 0
        for estimator in forest.estimators_:
            tree = estimator.tree_
            left = tree.children_left.astype(np.int64)
            right = tree.children_right.astype(np.int64)
            nodes = len(left)
            depth = np.zeros(nodes, dtype=np.int64)
            depth[0] = 1
            for node in range(nodes):  # children always come after their parent
                if left[node] >= 0:
                    depth[left[node]] = depth[right[node]] = depth[node] + 1
            leaf = left < 0
            own = np.arange(nodes)
            lefts.append(np.where(leaf, own, left) + offset)
            rights.append(np.where(leaf, own, right) + offset)
            features.append(np.where(leaf, 0, tree.feature))
            thresholds.append(np.where(leaf, np.inf, tree.threshold))
            lengths.append(np.where(leaf, depth + average_path_length(tree.n_node_samples) - 1.0, 0.0))
            roots.append(offset)
            offset += nodes
            max_depth = max(max_depth, int(depth.max()))
        return cls(
            left=np.concatenate(lefts).astype(np.int32),
            right=np.concatenate(rights).astype(np.int32),
            feature=np.concatenate(features).astype(np.int32),
            threshold=np.concatenate(thresholds).astype(np.float64),
            path_length=np.concatenate(lengths).astype(np.float64),
            roots=np.asarray(roots, dtype=np.int32),
            depth=max_depth,
            normaliser=float(len(forest.estimators_) * average_path_length(np.asarray([forest.max_samples_]))[0]),
        )

    def anomaly(self, inputs: np.ndarray) -> np.ndarray:
        """The anomaly score of each row (`-IsolationForest.score_samples`): higher = easier to isolate."""
        x = np.asarray(inputs, dtype=np.float32).astype(np.float64)
        nodes = np.broadcast_to(self.roots, (len(x), len(self.roots))).copy()
        rows = np.arange(len(x))[:, None]
        for _ in range(self.depth):
            go_left = x[rows, self.feature[nodes]] <= self.threshold[nodes]
            nodes = np.where(go_left, self.left[nodes], self.right[nodes])
        depths = self.path_length[nodes].sum(axis=1)
        result: np.ndarray = 2.0 ** (-depths / self.normaliser)
        return result

    def check(self) -> None:
        """Raises ValueError unless every index points inside the arrays: a damaged row fails on load, not
        in the middle of a job's preflight."""
        nodes = len(self.left)
        same = all(len(a) == nodes for a in (self.right, self.feature, self.threshold, self.path_length))
        inside = all(len(a) == 0 or (0 <= a.min() and a.max() < nodes) for a in (self.left, self.right, self.roots))
        features_ok = nodes == 0 or (0 <= self.feature.min() and self.feature.max() < len(INPUT_NAMES))
        if not (same and inside and features_ok and len(self.roots) and 0 < self.depth <= MAX_DEPTH):
            raise ValueError("abuse model arrays are inconsistent")
        if not self.normaliser > 0:
            raise ValueError("abuse model normaliser must be positive")

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "left": self.left,
            "right": self.right,
            "feature": self.feature,
            "threshold": self.threshold,
            "path_length": self.path_length,
            "roots": self.roots,
            "depth": np.asarray(self.depth),
            "normaliser": np.asarray(self.normaliser),
        }


@dataclass(frozen=True)
class AbuseModel:
    """A tenant's forest and the spread of its training scores, which map an anomaly score to 0..1."""

    forest: PackedForest
    median: float
    """The training windows' median anomaly score: u = 0."""
    typical: tuple[float, ...]
    """The training windows' median of each input: fills what a window cannot tell, and gives the tenant's
    typical volume (`VOLUME_INPUTS`)."""
    samples: int
    quantiles: dict[str, float]
    """The training anomaly scores' p50/p90/p99/max, kept in `stats` to see what the model learned."""
    window_s: float = WINDOW.total_seconds()

    def score(self, stats: WindowStats) -> float:
        return float(self.scores([stats])[0])

    def scores(self, windows: Sequence[WindowStats]) -> np.ndarray:
        inputs = fill(model_inputs(windows), self.typical)
        # The same windows at the tenant's typical volume: how unusual is what they send, whatever the amount?
        at_typical_volume = inputs.copy()
        at_typical_volume[:, VOLUME_INPUTS] = np.asarray(self.typical, dtype=np.float32)[VOLUME_INPUTS]
        u = self.u(self.forest.anomaly(inputs))
        u_mix = self.u(self.forest.anomaly(at_typical_volume))
        return to_unit(np.minimum(u, np.maximum(u_mix, U_VOLUME_ALONE)))

    def u(self, anomaly: np.ndarray) -> np.ndarray:
        """The way from the tenant's median anomaly (0) to complete isolation (1)."""
        u: np.ndarray = (anomaly - self.median) / (self.forest.isolated - self.median)
        return u

    def dump(self) -> tuple[bytes, dict[str, Any]]:
        """(`abuse_models.model`, `abuse_models.stats`)."""
        buffer = io.BytesIO()
        arrays: dict[str, Any] = self.forest.arrays()
        np.savez_compressed(buffer, **arrays)
        stats = {
            "format": FORMAT,
            "features": list(INPUT_NAMES),
            "window_s": self.window_s,
            "median": self.median,
            "typical": list(self.typical),
            "samples": self.samples,
            "quantiles": self.quantiles,
        }
        return buffer.getvalue(), stats

    @classmethod
    def load(cls, model: bytes, stats: dict[str, Any]) -> AbuseModel:
        """Raises ValueError for a model of another format or feature layout (then the heuristic scores)."""
        if stats.get("format") != FORMAT or stats.get("features") != list(INPUT_NAMES):
            raise ValueError(f"abuse model of format {stats.get('format')!r}, this code reads {FORMAT}")
        with np.load(io.BytesIO(model), allow_pickle=False) as arrays:
            forest = PackedForest(
                left=arrays["left"],
                right=arrays["right"],
                feature=arrays["feature"],
                threshold=arrays["threshold"],
                path_length=arrays["path_length"],
                roots=arrays["roots"],
                depth=int(arrays["depth"]),
                normaliser=float(arrays["normaliser"]),
            )
        forest.check()
        return cls(
            forest=forest,
            median=float(stats["median"]),
            typical=_typical(stats["typical"]),
            samples=int(stats["samples"]),
            quantiles={k: float(v) for k, v in stats.get("quantiles", {}).items()},
            window_s=float(stats.get("window_s", WINDOW.total_seconds())),
        )


def fill(inputs: np.ndarray, typical: Sequence[float]) -> np.ndarray:
    """The inputs with what a window cannot tell (NaN) replaced by the tenant's typical value."""
    filled: np.ndarray = np.where(np.isnan(inputs), np.asarray(typical, dtype=np.float32), inputs)
    return filled


def _typical(values: Any) -> tuple[float, ...]:
    typical = tuple(float(v) for v in values)
    if len(typical) != len(INPUT_NAMES) or not all(math.isfinite(v) for v in typical):
        raise ValueError("abuse model typical values are malformed")
    return typical


def to_unit(u: np.ndarray) -> np.ndarray:
    """The logistic of `U_MID` and `U_WIDTH`."""
    unit: np.ndarray = 1.0 / (1.0 + np.exp(-(u - U_MID) / U_WIDTH))
    return unit


def fit_forest(inputs: np.ndarray, *, seed: int) -> IsolationForest:
    from sklearn.ensemble import IsolationForest

    forest = IsolationForest(n_estimators=N_TREES, max_samples=min(MAX_SAMPLES, len(inputs)), random_state=seed)
    return forest.fit(inputs)


def train(windows: Sequence[WindowStats], *, seed: int = 0) -> AbuseModel:
    """Fit a tenant's model on its history windows (non-empty ones; `FEATURE_NAMES` order, unlabelled).

    Raises:
        NotEnoughHistory: fewer than MIN_TRAINING_WINDOWS windows.
    """
    if len(windows) < MIN_TRAINING_WINDOWS:
        raise NotEnoughHistory(f"{len(windows)} windows, {MIN_TRAINING_WINDOWS} needed")
    raw = model_inputs(windows)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a column of NaN only (no window was ever answered)
        medians = np.nanmedian(raw, axis=0)
    typical = tuple(float(v) for v in np.nan_to_num(medians, nan=0.0))
    inputs = fill(raw, typical)
    forest = PackedForest.from_sklearn(fit_forest(inputs, seed=seed))
    anomaly = forest.anomaly(inputs)
    median = float(np.median(anomaly))
    if median >= forest.isolated:
        # Every window alike (each tree a single leaf): nothing is unusual, nothing to learn.
        raise NotEnoughHistory(f"{len(windows)} windows, all alike")
    p50, p90, p99, top = (float(v) for v in np.quantile(anomaly, [0.5, 0.9, 0.99, 1.0]))
    return AbuseModel(
        forest=forest,
        median=median,
        typical=typical,
        samples=len(windows),
        quantiles={"p50": p50, "p90": p90, "p99": p99, "max": top},
    )
