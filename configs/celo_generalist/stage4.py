"""celo_generalist, stage 4: stage 2's optimizer with Celo's depth feature, on deeper MLPs.

Continues from stage2.safetensors (beside this recipe), adopted by `--config.init_from` into
`Celo(model_features=True)`: the step size also sees log(number of matrices)/log(16), whose weight
starts at zero, so the run starts from stage 2's optimizer exactly. Stage 2's per-element step
(about 8e-3) does not survive an 8-layer ReLU MLP, and its step size could not tell a deep model
from a shallow one. The stage-2 mixture, with depths 0-8 weighted towards deep models and a MAC cap
(2**23) that admits 128-wide 8-layer MLPs at batch 64; half stage 2's outer learning rate.

Command:  python meta_train.py --config configs/celo_generalist/stage4.py --workdir runs/celo_generalist/stage4
          stage4.safetensors is the export of step 1475 of 6000, taken while the run went on:
          python meta_train.py --config configs/celo_generalist/stage4.py --workdir runs/celo_generalist/stage4 --export
Inner steps/s: 2,274, its estimator on its first task draw (a tabular task) after compilation
(`python -m benchmarks.meta_throughput --parts recipes`, 2026-12-07, 2 cores at load ~6).
Cost on 2 CPU cores: 1475 meta-steps in 12 min (5 steps/s once the shapes are compiled).
Result: stage4.safetensors (sha256 3436adbbf6e5…, 6375 meta-steps in all); held-out meta-loss
0.404 → 0.403, learned / Adam 0.532 → 0.513, no dead (diverged) inner problem after step 1400;
the depth weight moved only to −0.025 (an 8-deep model needs about −2 to bring its step to 1e-3).
"""

import ml_collections

from configs.base import base_config

MODEL_AXES = dict(widths=(16, 64, 256), width_weights=(3, 2, 1), depths=(0, 1, 2, 4, 6, 8),
                  depth_weights=(1, 2, 2, 2, 1, 2), batch_sizes=(32, 64, 128), batch_size_weights=(1, 1, 1),
                  activations=("relu", "gelu", "tanh"), activation_weights=(2, 1, 1), max_step_macs=2**23,
                  param_scales=(0.5, 2.0), loss_scales=(0.1, 10.0))


def get_config() -> ml_collections.ConfigDict:
    c = base_config()
    c.num_steps = 6000
    c.init_from = "configs/celo_generalist/stage2.safetensors"
    c.family = ml_collections.ConfigDict(dict(name="mixture", members=dict(
        tabular=dict(num_features=(4, 8, 16, 32, 64), num_classes=(2, 3, 5, 10), train_sizes=(128, 256, 1024),
                     weight=3.0, **MODEL_AXES),
        flax_mlp=dict(datasets=("fashion_mnist",), resolutions=(8, 16), resolution_weights=(2, 1), weight=1.0,
                      **MODEL_AXES),
    )))
    c.lopt = ml_collections.ConfigDict(dict(name="celo", hidden_size=8, model_features=True))
    c.estimator.update(name="pes", num_tasks=8, sigma=0.01, trunc_length=25, min_horizon=300, max_horizon=300,
                       lockstep=True, objective="mean", split="valid")
    c.groups.update(num=2, resample_every=150)
    c.outer.update(peak_lr=5e-4, end_lr=5e-5, warmup_steps=50, weight_decay=0.0, clip=1.0)
    c.eval.update(every=250, num_tasks=3, num_steps=300, curve_every=50, adam_lr=1e-3)
    c.log.update(every=10, histograms_every=250)
    c.probe.update(every=500, repeats=4)
    c.checkpoint.update(every=25, keep=3)
    return c
