"""VeLO-style: the per-tensor LSTM with a bank of per-parameter MLPs, meta-trained with PES.

VeLO conditions on training progress, so every inner problem gets its horizon (max_horizon) as
num_steps; the truncation schedule is lockstep-free and log-uniform as for μLO.

Command:  python meta_train.py --config configs/velo.py --workdir runs/velo
Inner steps/s: 2,368, its estimator on its first task draw (an mlp task) after compilation
(`python -m benchmarks.meta_throughput --parts recipes`, 2026-12-07, 2 cores at load ~6).
Cost on 2 CPU cores: about 2 minutes (0.14-0.2 s per step, plus about a minute of compilation).
Measured (seed 0), in the equal-budget head-to-head of benchmarks/head_to_head.py (table in
benchmarks/RESULTS.md): 3987 steps in 9.0 minutes (2.55M inner steps); the held-out meta-loss
fell from 0.98 at the initialization to 0.257, and on the `quick` evaluation suite the learned
optimizer's final validation loss is 0.87x per-task-tuned Adam's (geometric mean; lower on 3 of
3 tasks, none of 9 runs diverged). Issue 15's audit measured the default 200 steps at 0.48.
"""

from configs import quick


def get_config():
    c = quick.get_config()
    c.lopt = type(c.lopt)(dict(name="velo"))
    c.estimator.update(name="pes", trunc_length=20, min_horizon=100, max_horizon=500)
    return c
