"""celo_generalist, stage 2: stage 1's optimizer meta-trained on validation loss, small training sets, depths 0-8.

Continues from stage1.safetensors (beside this recipe). Tasks (weights in parentheses): flax
default-init MLPs on tabular problems from sklearn's generators (3: 4-64 features, 2-10 classes or
a regression, 128, 256 or 1024 training rows, so that over-fitting happens inside meta-training
as it does on small real datasets) and on Fashion-MNIST at 8 and 16 px (1); widths 16-256, depths
0-8, batch 32-128, the same scale augmentation as stage 1. Meta-objective: the mean normalized
loss on *validation* batches over the 300-step horizon (a training-loss objective taught stage 1 to
over-fit small datasets). PES as in stage 1, groups redrawn every 150 meta-steps.

Command:  python meta_train.py --config configs/celo_generalist/stage2.py --workdir runs/celo_generalist/stage2
          (to continue your own stage 1 instead: --config.init_from=runs/celo_generalist/stage1/lopt.safetensors)
Inner steps/s: 15,167, its estimator on its first task draw (a tabular task) after compilation
(`python -m benchmarks.meta_throughput --parts recipes`, 2026-12-07, 2 cores at load ~6).
Cost on 2 CPU cores: 3000 meta-steps in 23.7 min of compute, on cores shared with other jobs
(3,000-36,000 inner steps/s; depth-8 draws and each new shape's compilation are the slow parts).
Result: stage2.safetensors (sha256 b109b7a78aad…, 4900 meta-steps in all); held-out meta-loss
0.425 → 0.408, learned / Adam (lr 1e-3) 0.654 → 0.632.
"""

import ml_collections

from configs.base import base_config

MODEL_AXES = dict(widths=(16, 64, 256), width_weights=(3, 2, 1), depths=(0, 1, 2, 4, 8),
                  depth_weights=(1, 3, 2, 1, 1), batch_sizes=(32, 64, 128), batch_size_weights=(1, 1, 1),
                  activations=("relu", "gelu", "tanh"), activation_weights=(2, 1, 1), max_step_macs=2**22,
                  param_scales=(0.5, 2.0), loss_scales=(0.1, 10.0))


def get_config() -> ml_collections.ConfigDict:
    c = base_config()
    c.num_steps = 3000
    c.init_from = "configs/celo_generalist/stage1.safetensors"
    c.family = ml_collections.ConfigDict(dict(name="mixture", members=dict(
        tabular=dict(num_features=(4, 8, 16, 32, 64), num_classes=(2, 3, 5, 10), train_sizes=(128, 256, 1024),
                     weight=3.0, **MODEL_AXES),
        flax_mlp=dict(datasets=("fashion_mnist",), resolutions=(8, 16), resolution_weights=(2, 1), weight=1.0,
                      **MODEL_AXES),
    )))
    c.lopt = ml_collections.ConfigDict(dict(name="celo", hidden_size=8))
    c.estimator.update(name="pes", num_tasks=8, sigma=0.01, trunc_length=25, min_horizon=300, max_horizon=300,
                       lockstep=True, objective="mean", split="valid")
    c.groups.update(num=2, resample_every=150)
    c.outer.update(peak_lr=1e-3, end_lr=1e-4, warmup_steps=50, weight_decay=0.0, clip=1.0)
    c.eval.update(every=250, num_tasks=3, num_steps=300, curve_every=50, adam_lr=1e-3)
    c.log.update(every=10, histograms_every=250)
    c.probe.update(every=500, repeats=4)
    c.checkpoint.update(every=25, keep=3)
    return c
