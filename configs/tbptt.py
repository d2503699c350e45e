"""TBPTT: the quick recipe with truncated backpropagation through each 20-step truncation.

The exact gradient of each truncation's objective (biased toward short horizons, low variance);
slots carry their inner state on to the next truncation. Backprop through the unroll costs memory
per slot, so 4 slots instead of PES's 8 pairs, and BMG's smaller outer learning rate.

Command:  python meta_train.py --config configs/tbptt.py --workdir runs/tbptt
Inner steps/s: 49, its estimator on its first task draw (an mlp task) after compilation
(`python -m benchmarks.meta_throughput --parts recipes`, 2026-12-07, 2 cores at load ~6).
Cost on 2 CPU cores: about 3 minutes for the 200 steps (0.7 s per step after compilation on a
quiet machine, 1.8 s with two other jobs on the cores, plus about 45 s of compilation and the
held-out evaluation).
Measured (seed 0), in the equal-budget head-to-head of benchmarks/head_to_head.py (table in
benchmarks/RESULTS.md): 804 steps in 10.0 minutes (129k inner steps: one member per slot); the
held-out meta-loss fell from 1.40 at the initialization to 0.263, and on the `quick` evaluation
suite the learned optimizer's final validation loss is 0.85x per-task-tuned Adam's (geometric
mean; lower on 3 of 3 tasks, none of 9 runs diverged). A 12-step run reached 0.64.
"""

from configs import quick


def get_config():
    c = quick.get_config()
    c.estimator.update(name="tbptt", num_tasks=4, trunc_length=20)
    c.outer.update(peak_lr=1e-3, end_lr=3e-4)
    return c
