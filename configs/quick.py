"""Quick: the README's main job. μLO meta-trained with PES on Fashion-MNIST 8×8 μP MLPs.

Command:  python meta_train.py --config configs/quick.py --workdir runs/quick
Inner steps/s: 443, its estimator on its first task draw (an mlp task) after compilation
(`python -m benchmarks.meta_throughput --parts recipes`, 2026-12-07, 2 cores at load ~6).
Cost on 2 CPU cores: 3 to 7 minutes (measured 2 min 55 s, a third of it compilation; on a slower
day of the same 2-core machine, 6 min 36 s, and 6 min 25 s for the code before the sharding change).
Expected (measured, seed 0): the held-out meta-loss (mean training loss over 300 steps of two
unseen MLPs, divided by their first loss) falls from 1.40 at the initialization to 0.34 after 100
steps and 0.31 after 200; the learned optimizer's final validation losses on those MLPs go from
4.0 / 6.1 at the initialization to 0.57 / 0.51, against 0.81 / 0.91 for Adam at lr 3e-3 (untuned).
`eval/heldout_meta_loss` in TensorBoard and the summary printed at the end show both.
Run longer in the equal-budget head-to-head (benchmarks/head_to_head.py, table in
benchmarks/RESULTS.md): 836 steps in 9.1 minutes reach 0.277, and on the `quick` suite the
learned optimizer's final validation loss is 0.90x per-task-tuned Adam's (lower on 3 of 3 tasks).
"""

from configs.base import base_config


def get_config():
    c = base_config()
    c.num_steps = 200
    c.family.update(datasets=("fashion_mnist",), resolutions=(8,), widths=(32, 64), depths=(1, 2),
                    activations=("relu",), batch_sizes=(128,), parametrization="mup")
    c.lopt.update(name="mulo", hidden_size=32)
    c.estimator.update(name="pes", num_tasks=8, sigma=0.01, trunc_length=20, min_horizon=100, max_horizon=500)
    c.groups.update(num=2, resample_every=50)
    c.outer.update(peak_lr=3e-3, end_lr=1e-3, warmup_steps=10)
    c.eval.update(every=100, num_tasks=2, num_steps=300, curve_every=25, adam_lr=3e-3)
    c.log.update(every=5, histograms_every=50)
    c.probe.update(every=100, repeats=8)
    c.checkpoint.update(every=25, keep=3)
    return c
