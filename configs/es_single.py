"""ES-Single: the quick recipe with one perturbation per particle held for its whole inner problem.

Command:  python meta_train.py --config configs/es_single.py --workdir runs/es_single
Inner steps/s: 352, its estimator on its first task draw (an mlp task) after compilation
(`python -m benchmarks.meta_throughput --parts recipes`, 2026-12-07, 2 cores at load ~6).
Cost on 2 CPU cores: about 3 minutes (0.35-0.4 s per step after compilation).
Measured (seed 0), in the equal-budget head-to-head of benchmarks/head_to_head.py (table in
benchmarks/RESULTS.md): 1500 steps in 8.8 minutes (960k inner steps); the held-out meta-loss
(as in configs/quick.py) fell from 1.40 at the initialization to 0.262, and on the `quick`
evaluation suite the learned optimizer's final validation loss is 0.87x per-task-tuned Adam's
(geometric mean; lower on 3 of 3 tasks, none of 9 runs diverged). Issue 15's audit measured the
default 200 steps at 0.30, before the divergence rule of `estimators.unroll`.
"""

from configs import quick


def get_config():
    c = quick.get_config()
    c.estimator.update(name="es_single", sigma=0.01)
    return c
