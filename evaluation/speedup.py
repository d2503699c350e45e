"""Speed-ups on training loss against a tuned reference (`evaluation.protocol` uses each task's
best tuned baseline): VeLO's, how many steps the reference needs to reach the learned optimizer's
final loss, and the converse, how many steps the learned optimizer needs to reach the reference's
final loss (finite where VeLO's is unbounded: the reference never gets as low as the learned
optimizer within the run).

>>> speedup([2.0, 1.0, 0.5], [10, 20, 30], 1.0, 30)["value"]  # Adam reaches 1.0 at step 20 of 30
0.6666666666666666
>>> speedup_at_reference([2.0, 1.0, 0.5], [10, 20, 30], 1.0, 30)["value"]  # 1.0 at step 20: 1.5× faster
1.5
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


def speedup_at_reference(learned_curve: Sequence[float | None], steps: Sequence[int], reference_final: float | None,
                         horizon: int, basis: str = SPEEDUP_BASIS) -> dict:
    """The horizon over the steps the learned optimizer needs to reach `reference_final` (the tuned
    reference's final loss), read off its curve as `speedup` reads the reference's; > 1 means the
    learned optimizer is faster. `status` is "reached" (`value` = horizon / `learned_steps`),
    "never_reached" (`value` 0: the learned optimizer never gets there, or diverged) or
    "reference_diverged" (a non-finite `reference_final`: `value` None)."""
    walk = speedup(learned_curve, steps, reference_final, horizon, basis)
    out = {"basis": basis, "target": walk["target"], "learned_steps": walk["adam_steps"], "value": None,
           "status": walk["status"], "first_window": walk["first_window"]}
    if walk["status"] == "learned_diverged":
        out["status"] = "reference_diverged"
    elif walk["status"] == "never_reached":
        out["value"] = 0.0
    elif walk["adam_steps"] > 0:
        out["value"] = horizon / walk["adam_steps"]
    else:  # the reference ended at or above the initial loss: no step is needed
        out["value"], out["status"] = None, "at_start"
    return out


def speedup_at_reference_number(s: dict) -> float:
    return math.inf if s["status"] == "at_start" else s["value"]
