"""VeLO's speed-up metric: how many steps a tuned reference optimizer needs to reach the learned
optimizer's final loss (`evaluation.protocol` uses each task's best tuned baseline for training loss).

>>> speedup([2.0, 1.0, 0.5], [10, 20, 30], 1.0, 30)["value"]  # Adam reaches 1.0 at step 20 of 30
0.6666666666666666
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

SPEEDUP_BASIS = "train"


def speedup(adam_curve: Sequence[float | None], steps: Sequence[int], target: float | None,
            horizon: int, basis: str = SPEEDUP_BASIS) -> dict:
    """VeLO's speed-up: the steps the tuned reference needs to reach `target` (the learned
    optimizer's final loss), divided by the horizon; > 1 means the learned optimizer is faster.

    `adam_curve[i]` is the reference's loss at `steps[i]` (named for VeLO's reference, Adam; a
    window's mean or a point on a fixed sample). The first window
    at or below the target counts, the step linearly interpolated from the window before it (the
    first window: its own end, flagged `first_window`, the value an upper bound). `status` is
    "reached" (with `value`), "never_reached" (Adam never gets there: the speed-up is > 1, `value`
    None) or "learned_diverged" (a non-finite target). `basis` names the curves ("train" or "valid")."""
    out = {"basis": basis, "target": target, "adam_steps": None, "value": None, "status": "learned_diverged",
           "first_window": False}
    if target is None or not math.isfinite(target):
        return out
    a = np.asarray([np.nan if v is None else v for v in adam_curve], np.float64)
    hit = np.flatnonzero(a <= target)
    if not len(hit):
        out["status"] = "never_reached"
        return out
    i = int(hit[0])
    s = float(steps[i])
    if i > 0 and np.isfinite(a[i - 1]) and a[i - 1] > a[i]:
        s = steps[i - 1] + (steps[i] - steps[i - 1]) * (a[i - 1] - target) / (a[i - 1] - a[i])
    out.update(adam_steps=float(s), value=float(s) / horizon, status="reached", first_window=i == 0 and s > 0)
    return out


def speedup_number(s: dict) -> float:
    return math.inf if s["status"] == "never_reached" else s["value"]
