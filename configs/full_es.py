"""Full-horizon ES through evosax: SNES over whole 100-step inner runs, with evosax's fitness shaping.

Every estimate runs population_size × num_tasks complete inner problems from scratch (no
truncation), so this is the unbiased but expensive end of the estimator spectrum. A smaller
learned optimizer (μLO hidden 8) keeps the search space modest.

Command:  python meta_train.py --config configs/full_es.py --workdir runs/full_es
Inner steps/s: 515, its estimator on its first task draw (an mlp task) after compilation
(`python -m benchmarks.meta_throughput --parts recipes`, 2026-12-07, 2 cores at load ~6).
Cost on 2 CPU cores: about 10 minutes (2.5 s per step on a quiet machine, 5.2 s with other jobs:
6400 inner steps each).
Measured (seed 0), in the equal-budget head-to-head of benchmarks/head_to_head.py (table in
benchmarks/RESULTS.md): 233 steps in 10.3 minutes (1.49M inner steps); the held-out meta-loss
fell from 4.26 at the initialization (μLO hidden 8) to 0.279, and on the `quick` evaluation suite
the learned optimizer's final validation loss is 0.95x per-task-tuned Adam's (geometric mean;
lower on 2 of 3 tasks, none of 9 runs diverged).
"""

from configs import quick


def get_config():
    c = quick.get_config()
    c.lopt.hidden_size = 8
    c.estimator.update(name="full_es", strategy="snes", fitness_shaping="default", population_size=16,
                       horizon=100, num_tasks=2, sigma=0.01)
    c.outer.update(peak_lr=1e-2, end_lr=3e-3)
    return c
