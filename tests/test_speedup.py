"""evaluation.speedup: VeLO's speed-up and its converse, against a fine-grid walk of the curve."""

import math

import numpy as np
import pytest

from evaluation.speedup import speedup, speedup_at_reference, speedup_at_reference_number


def _reference_speedup(curve, steps, target, horizon):
    """Walks the piecewise-linear curve on a fine grid (independent of the closed form)."""
    a = np.asarray(curve, np.float64)
    if not (a <= target).any():
        return math.inf
    fine = np.linspace(steps[0], steps[-1], 400001)
    vals = np.interp(fine, steps, a)
    return fine[np.argmax(vals <= target)] / horizon


@pytest.mark.parametrize("curve, target, expected", [
    ([4.0, 3.0, 2.0, 1.0], 2.5, 0.625),   # halfway between steps 50 and 75
    ([4.0, 3.0, 2.0, 1.0], 5.0, 0.25),    # the first window is already below: its end
    ([4.0, 3.0, 2.0, 1.0], 1.0, 1.0),     # reached exactly at the horizon: as fast as Adam
    ([4.0, 2.0, 3.0, 1.0], 2.5, 0.4375),  # the first crossing counts
    ([4.0, 3.0, 2.0, 1.5], 1.0, math.inf),
])
def test_speedup_hand_computed(curve, target, expected):
    steps = [25, 50, 75, 100]
    got = speedup(curve, steps, target, 100)
    value = math.inf if got["status"] == "never_reached" else got["value"]
    assert value == pytest.approx(expected)
    assert value == pytest.approx(_reference_speedup(curve, steps, target, 100), abs=1e-4)
    assert got["status"] == ("never_reached" if expected == math.inf else "reached") and got["basis"] == "train"
    assert got["first_window"] == (expected == 0.25)


STEPS = np.arange(1, 26) * 40  # 25 windows of a 1000-step run


def _noisy_curves(seed, n=20):
    """(curve, target) pairs: a noisy decaying loss and a level somewhere in (or below) its range."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        curve = np.exp(-np.cumsum(rng.uniform(0, 0.2, 25))) + rng.normal(0, 0.01, 25)
        yield curve, rng.uniform(curve.min() - 0.05, curve.max())


def test_speedup_random_curves_and_edge_cases():
    steps = STEPS
    for curve, target in _noisy_curves(0):
        got = speedup(list(curve), list(steps), float(target), 1000)
        got = math.inf if got["status"] == "never_reached" else got["value"]
        assert got == pytest.approx(_reference_speedup(curve, steps, target, 1000), abs=1e-4)
    assert speedup([None, None], [5, 10], 1.0, 10)["status"] == "never_reached"  # Adam diverged
    assert speedup([1.0, 0.5], [5, 10], None, 10)["status"] == "learned_diverged"
    assert speedup([1.0, 0.5], [5, 10], math.nan, 10)["value"] is None


@pytest.mark.parametrize("curve, reference_final, expected, status", [
    ([4.0, 3.0, 2.0, 1.0], 2.5, 100 / 62.5, "reached"),   # halfway between steps 50 and 75
    ([4.0, 3.0, 2.0, 1.0], 1.0, 1.0, "reached"),          # reached at the horizon: as fast as the reference
    ([4.0, 3.0, 2.0, 1.5], 1.0, 0.0, "never_reached"),    # the learned optimizer never gets there
    ([4.0, None, None, None], 3.0, 0.0, "never_reached"),  # it diverged first
    ([4.0, 3.0, 2.0, 1.0], math.nan, None, "reference_diverged"),
])
def test_speedup_at_the_reference_final_loss_hand_computed(curve, reference_final, expected, status):
    got = speedup_at_reference(curve, [25, 50, 75, 100], reference_final, 100)
    assert got["status"] == status
    assert got["value"] == (None if expected is None else pytest.approx(expected))


def test_speedup_at_the_reference_is_the_horizon_over_the_walked_crossing():
    steps = STEPS
    for curve, final in _noisy_curves(1):
        got = speedup_at_reference(list(curve), list(steps), float(final), 1000)
        walked = _reference_speedup(curve, steps, final, 1000)  # the crossing as a fraction of the horizon
        assert got["value"] == pytest.approx(0.0 if walked == math.inf else 1 / walked, rel=1e-3)
    starts_below = speedup_at_reference([1.0, 0.5], [0, 10], 2.0, 10)  # the reference ended above the start
    assert starts_below["status"] == "at_start" and speedup_at_reference_number(starts_below) == math.inf
