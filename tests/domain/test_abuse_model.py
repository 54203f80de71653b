"""domain/abuse/model.py: the packed forest scores as scikit-learn does, survives bytes, and learns a tenant's
normal; domain/abuse: how the model and the heuristic combine."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
from sklearn.ensemble import IsolationForest

from domain.abuse import score_window
from domain.abuse.features import WindowStats
from domain.abuse.heuristic import heuristic_score
from domain.abuse.model import (
    MIN_TRAINING_WINDOWS,
    AbuseModel,
    NotEnoughHistory,
    PackedForest,
    model_inputs,
    to_unit,
    train,
)
from tests.domain.test_abuse_heuristic import window

FLAG, THROTTLE, BLOCK = 0.7, 0.85, 0.95


def history(rng: np.random.Generator, n: int = 600) -> list[WindowStats]:
    """A tenant's ordinary windows: people at 0.2-3 requests a minute, varied prompts, now and then an error,
    a repeated prompt or a blocked one (each request drawn, so small windows are as lumpy as real ones)."""
    windows: list[WindowStats] = []
    while len(windows) < n:
        requests = int(rng.poisson(float(rng.lognormal(np.log(0.8), 0.7)) * 10))
        if not requests:
            continue
        failed = int(rng.binomial(requests, 0.03))
        prompts = rng.lognormal(np.log(float(rng.lognormal(np.log(700), 0.5))), 0.8, requests - failed)
        windows.append(
            WindowStats(
                window_s=600,
                requests=requests,
                answered=requests - failed,
                input_tokens=float(prompts.sum()),
                input_tokens_sq=float((prompts**2).sum()),
                output_tokens=300.0 * (requests - failed),
                failed=failed,
                violated=int(rng.binomial(requests, 0.01)),
                near_duplicates=int(rng.binomial(requests, 0.05)),
                off_hours=int(rng.binomial(requests, 0.05)),
                models=int(rng.integers(1, 3)),
            )
        )
    return windows


@pytest.fixture(scope="module")
def tenant_history() -> list[WindowStats]:
    return history(np.random.default_rng(3))


@pytest.fixture(scope="module")
def model(tenant_history: list[WindowStats]) -> AbuseModel:
    return train(tenant_history, seed=1)


def test_the_packed_forest_scores_exactly_as_scikit_learn() -> None:
    rng = np.random.default_rng(0)
    train_x = rng.normal(size=(700, 9)).astype(np.float32)
    train_x[:, 6] = rng.integers(1, 4, 700)  # a discrete column, with ties at the thresholds
    forest = IsolationForest(n_estimators=30, max_samples=256, random_state=0).fit(train_x)
    probe = np.vstack([train_x[:50], rng.normal(scale=3, size=(50, 9)).astype(np.float32)])

    packed = PackedForest.from_sklearn(forest)

    np.testing.assert_allclose(packed.anomaly(probe), -forest.score_samples(probe), rtol=1e-12)


def test_a_model_survives_its_trip_through_bytes(model: AbuseModel, tenant_history: list[WindowStats]) -> None:
    blob, stats = model.dump()

    loaded = AbuseModel.load(blob, stats)

    probe = [*tenant_history[:20], window(300.0, failed=0.9)]
    np.testing.assert_array_equal(loaded.scores(probe), model.scores(probe))
    assert loaded.samples == model.samples == len(tenant_history)
    # Plain arrays: readable without pickle, so loading a row can never run code.
    with np.load(io.BytesIO(blob), allow_pickle=False) as arrays:
        assert all(arrays[name].dtype != object for name in arrays.files)


def test_a_model_of_another_format_is_refused(model: AbuseModel) -> None:
    blob, stats = model.dump()

    with pytest.raises(ValueError, match="format"):
        AbuseModel.load(blob, {**stats, "format": 99})
    with pytest.raises(ValueError, match="format"):
        AbuseModel.load(blob, {**stats, "features": ["something", "else"]})


def test_a_damaged_model_fails_on_load_not_on_scoring(model: AbuseModel) -> None:
    left = model.forest.left.copy()
    left[3] = len(left) + 10  # points past the arrays
    damaged = dataclasses.replace(model, forest=dataclasses.replace(model.forest, left=left))
    blob, stats = damaged.dump()

    with pytest.raises(ValueError, match="inconsistent"):
        AbuseModel.load(blob, stats)


def test_too_little_history_keeps_the_heuristic(tenant_history: list[WindowStats]) -> None:
    with pytest.raises(NotEnoughHistory):
        train(tenant_history[: MIN_TRAINING_WINDOWS - 1])


def test_the_model_learns_the_tenants_normal(model: AbuseModel, tenant_history: list[WindowStats]) -> None:
    fresh = history(np.random.default_rng(99), n=300)

    scores = model.scores(fresh)

    assert (scores >= FLAG).mean() <= 0.01
    assert (scores >= BLOCK).sum() == 0


ABUSE = [
    ("error storm", window(60.0, failed=0.9, prompt=60.0)),
    ("guardrail probing", window(5.0, violated=0.7, failed=0.7)),
    ("token flood", window(30.0, prompt=40_000.0, output=3000.0, off_hours=1.0, spread=0.3)),
]


@pytest.mark.parametrize(("name", "stats"), ABUSE)
def test_what_the_tenant_never_does_scores_above_all_its_normal_windows(
    model: AbuseModel, tenant_history: list[WindowStats], name: str, stats: WindowStats
) -> None:
    normal = model.scores(history(np.random.default_rng(5), n=300))

    assert model.score(stats) > normal.max(), name
    assert model.score(stats) >= FLAG, name


@pytest.mark.parametrize(("name", "stats"), ABUSE)
def test_clear_abuse_is_blocked_by_the_combination(model: AbuseModel, name: str, stats: WindowStats) -> None:
    assert score_window(stats, model).score >= BLOCK, name


class LoudIsOdd:
    """A forest that finds a window odd when it is loud (log rate over 3) or fails (errors over 0.5)."""

    isolated = 0.9

    def anomaly(self, inputs: np.ndarray) -> np.ndarray:
        loud = inputs[:, 0] > 3.0
        failing = inputs[:, 5] > 0.5
        result: np.ndarray = 0.4 + 0.35 * loud + 0.35 * failing
        return result


def test_volume_alone_raises_the_model_score_only_to_what_a_flag_needs(model: AbuseModel) -> None:
    judge = dataclasses.replace(model, forest=LoudIsOdd(), median=0.4)  # type: ignore[arg-type]
    batch = window(300.0, spread=0.8)
    storm = window(300.0, spread=0.8, failed=0.9)

    assert float(to_unit(judge.u(judge.forest.anomaly(model_inputs([batch]))))[0]) > 0.95  # the forest alone
    assert FLAG <= judge.score(batch) <= 0.8 + 1e-9
    assert judge.score(storm) > 0.95  # loud and failing: the mix is odd at any volume
    assert judge.score(window(1.0)) < 0.5


def test_windows_of_one_request_are_not_extreme(model: AbuseModel) -> None:
    one_failed = WindowStats(window_s=600, requests=1, failed=1, models=1)
    one_late = WindowStats(
        window_s=600, requests=1, answered=1, input_tokens=900, input_tokens_sq=810_000, off_hours=1, models=1
    )

    assert model.score(one_failed) < FLAG
    assert model.score(one_late) < FLAG


def test_model_inputs_have_one_row_per_window_even_when_empty() -> None:
    assert model_inputs([]).shape == (0, 9)
    assert np.isnan(model_inputs([WindowStats(window_s=600)])).tolist() == [[False, False, True] + [False] * 5 + [True]]


def test_without_a_model_the_heuristic_scores() -> None:
    stats = window(60.0, failed=0.9, prompt=60.0)

    scored = score_window(stats, None)

    assert (scored.method, scored.score) == ("heuristic", heuristic_score(stats))
    assert scored.features["requests_per_min"] == pytest.approx(60.0)


def test_with_a_model_the_higher_of_the_two_scores(model: AbuseModel) -> None:
    odd_for_this_tenant = window(2.0, models=4, duplicates=0.35)  # the heuristic sees little here
    loud = window(400.0, spread=0.8)  # and the model caps volume lower than the heuristic does here

    for stats in (odd_for_this_tenant, loud):
        scored = score_window(stats, model)
        assert scored.method == "model"
        assert scored.score == max(model.score(stats), heuristic_score(stats))
    assert model.score(odd_for_this_tenant) > heuristic_score(odd_for_this_tenant)
