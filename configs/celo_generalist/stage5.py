"""celo_generalist, stage 5: stage 4's optimizer with static width and depth step priors, on MLPs up to 512 wide.

Continues from stage4.safetensors (beside this recipe), adopted by `--config.init_from` into
`Celo(width_power=1, depth_power=1)`: each matrix's step × 64/fan_in above fan-in 64 (μP's law for
Adam-like updates: an update of RMS η moves a layer's outputs by about η·fan_in) and every step ×
3/#matrices above 3 matrices (the changes of L layers add up); both 1 at and below those
references, so small models step as before and the learned weights of ψ correct the priors from
there. The stage-4 mixture with 512-wide MLPs admitted.

Command:  python meta_train.py --config configs/celo_generalist/stage5.py --workdir runs/celo_generalist/stage5
          stage5.safetensors is the run stopped (SIGINT, which checkpoints) at step 1131 of 6000 and exported:
          python meta_train.py --config configs/celo_generalist/stage5.py --workdir runs/celo_generalist/stage5 --export
Inner steps/s: 3,056, its estimator on its first task draw (a tabular task) after compilation
(`python -m benchmarks.meta_throughput --parts recipes`, 2026-12-07, 2 cores at load ~6).
Cost on 2 CPU cores: 1131 meta-steps in 17 min, beside evaluations.
Result: stage5.safetensors (sha256 e19444bb1ca9…, 7506 meta-steps in all); held-out meta-loss
0.290 → 0.305 (3 draws: noisy); on issue 16's retired user-model suite 5 of 10 wins against
per-task-tuned Adam (stage 2: 2), 2 of 30 runs above their initial loss, none non-finite.
"""

import ml_collections

from configs.base import base_config

MODEL_AXES = dict(widths=(16, 64, 256, 512), width_weights=(3, 2, 2, 1), depths=(0, 1, 2, 4, 6, 8),
                  depth_weights=(1, 2, 2, 2, 1, 2), batch_sizes=(32, 64, 128), batch_size_weights=(1, 1, 1),
                  activations=("relu", "gelu", "tanh"), activation_weights=(2, 1, 1), max_step_macs=2**23,
                  param_scales=(0.5, 2.0), loss_scales=(0.1, 10.0))


def get_config() -> ml_collections.ConfigDict:
    c = base_config()
    c.num_steps = 6000
    c.init_from = "configs/celo_generalist/stage4.safetensors"
    c.family = ml_collections.ConfigDict(dict(name="mixture", members=dict(
        tabular=dict(num_features=(4, 8, 16, 32, 64), num_classes=(2, 3, 5, 10), train_sizes=(128, 256, 1024),
                     weight=3.0, **MODEL_AXES),
        flax_mlp=dict(datasets=("fashion_mnist",), resolutions=(8, 16), resolution_weights=(2, 1), weight=1.0,
                      **MODEL_AXES),
    )))
    c.lopt = ml_collections.ConfigDict(dict(name="celo", hidden_size=8, model_features=True, width_power=1.0,
                                            depth_power=1.0))
    c.estimator.update(name="pes", num_tasks=8, sigma=0.01, trunc_length=25, min_horizon=300, max_horizon=300,
                       lockstep=True, objective="mean", split="valid")
    c.groups.update(num=2, resample_every=150)
    c.outer.update(peak_lr=5e-4, end_lr=5e-5, warmup_steps=50, weight_decay=0.0, clip=1.0)
    c.eval.update(every=250, num_tasks=3, num_steps=300, curve_every=50, adam_lr=1e-3)
    c.log.update(every=10, histograms_every=250)
    c.probe.update(every=500, repeats=4)
    c.checkpoint.update(every=25, keep=3)
    return c
