"""Tiny: the smallest end-to-end run, for tests and smoke checks (Fashion-MNIST 8×8 MLPs, μLO hidden 4).

Meta-training never sees digits (or any dataset bundled with sklearn): those are held-out
evaluation data, and task families refuse them.

Command:  python meta_train.py --config configs/tiny.py --workdir /tmp/lopt_tiny
Inner steps/s: 6,138, its estimator on its first task draw (an mlp task) after compilation
(`python -m benchmarks.meta_throughput --parts recipes`, 2026-12-07, 2 cores at load ~6).
Cost on 2 CPU cores: about 1 minute, almost all of it compilation.
Expected: 6 meta-steps, TensorBoard events, a checkpoint and WORKDIR/lopt.safetensors; too short
to improve the optimizer.
"""

from configs.base import base_config


def get_config():
    c = base_config()
    c.num_steps = 6
    c.family.update(datasets=("fashion_mnist",), resolutions=(8,), widths=(8,), depths=(1,), batch_sizes=(32,))
    c.lopt.hidden_size = 4
    c.estimator.update(num_tasks=2, trunc_length=5, min_horizon=10, max_horizon=20)
    c.groups.update(num=1, resample_every=100)
    c.outer.warmup_steps = 1
    c.eval.update(every=3, num_tasks=1, num_steps=20, curve_every=10)
    c.log.update(every=2, histograms_every=3)
    c.probe.update(every=3, repeats=2)
    c.checkpoint.update(every=2, keep=2)
    return c
