"""celo_generalist, stage 1: Celo meta-trained from its init with PES on flax default-init MLPs.

Tasks (weights in parentheses): flax default-init MLPs (`nn.Dense`, LeCun-normal kernels, zero
biases) on tabular problems from sklearn's generators (3: 8 or 32 features, 2 or 10 classes or a
regression, 1024 training rows, features standardized or raw and rescaled) and on Fashion-MNIST
at 8 and 16 px (1); widths 16-256, depths 0-4, batch 32 or 128, and scale augmentation: every
parameter tensor reparametrized by a factor log-uniform in [0.5, 2], the loss by one in [0.1, 10].
No dataset bundled with sklearn is used: those are held-out evaluation data. Meta-objective: the
mean normalized *training* loss over a 300-step horizon. Estimator: PES, 8 antithetic pairs,
σ 0.01, truncation 25, inner problems in lockstep, so that Celo's `num_steps` is each problem's
true horizon (its step-size schedule reads t/num_steps).

Command:  python meta_train.py --config configs/celo_generalist/stage1.py --workdir runs/celo_generalist/stage1
          (the file beside this recipe, stage1.safetensors, is the export of step 1900:
          python meta_train.py --config configs/celo_generalist/stage1.py --workdir runs/celo_generalist/stage1 --export)
Inner steps/s: 13,392, its estimator on its first task draw (a tabular task) after compilation
(`python -m benchmarks.meta_throughput --parts recipes`, 2026-12-07, 2 cores at load ~6).
Cost on 2 CPU cores: 1900 meta-steps in 28 min, on cores shared with other jobs (the run then died
of an out-of-memory LLVM compilation error, since bounded by `estimators.PerClassJit(max_programs=24)`).
Result: stage1.safetensors (sha256 1e6643a7618d…, step 1900 of 2000); the held-out meta-loss
(3 unseen draws of the family, 300 steps) fell from 0.427 at the init (per-tensor-normalized Adam
at 1e-3) to 0.357 at step 1750, learned / Adam (lr 1e-3, untuned) 0.80 → 0.75.
"""

import ml_collections

from configs.base import base_config

MODEL_AXES = dict(widths=(16, 64, 256), width_weights=(3, 2, 1), depths=(0, 1, 2, 4), depth_weights=(1, 3, 2, 1),
                  batch_sizes=(32, 128), batch_size_weights=(1, 1), activations=("relu", "gelu", "tanh"),
                  activation_weights=(2, 1, 1), max_step_macs=2**22, param_scales=(0.5, 2.0), loss_scales=(0.1, 10.0))


def get_config() -> ml_collections.ConfigDict:
    c = base_config()
    c.num_steps = 2000
    c.family = ml_collections.ConfigDict(dict(name="mixture", members=dict(
        tabular=dict(num_features=(8, 32), num_classes=(2, 10), train_sizes=(1024,), weight=3.0, **MODEL_AXES),
        flax_mlp=dict(datasets=("fashion_mnist",), resolutions=(8, 16), resolution_weights=(2, 1), weight=1.0,
                      **MODEL_AXES),
    )))
    c.lopt = ml_collections.ConfigDict(dict(name="celo", hidden_size=8))
    c.estimator.update(name="pes", num_tasks=8, sigma=0.01, trunc_length=25, min_horizon=300, max_horizon=300,
                       lockstep=True, objective="mean", split="train")
    c.groups.update(num=2, resample_every=100)
    c.outer.update(peak_lr=1e-3, end_lr=1e-4, warmup_steps=50, weight_decay=0.0, clip=1.0)
    c.eval.update(every=250, num_tasks=3, num_steps=300, curve_every=50, adam_lr=1e-3)
    c.log.update(every=10, histograms_every=250)
    c.probe.update(every=500, repeats=4)
    c.checkpoint.update(every=25, keep=3)
    return c
