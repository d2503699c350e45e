"""Generalist, stage 5: Celo with static width and depth step priors (`width_power`, `depth_power`).

Stages 2-4 learned a per-element step of about 8e-3 that a 1024-wide or 8-deep MLP does not
survive: an Adam-like update of RMS η moves a layer's outputs by about η·fan_in, and the changes of
L layers add up. `lopt.Celo(width_power=1, depth_power=1)` scales each matrix's step by
64/fan_in above fan-in 64 (μP's law for Adam) and every step by 3/#matrices above 3 matrices,
both 1 at and below those references, so the meta-trained behaviour on small models is kept and
large ones get the step μP predicts; the learned weights of ψ (shape and the depth feature,
`model_features`) correct the priors from there. Applied to the stage-2 file without further
meta-training, the priors took the user-model suite's 1024-wide digits MLP from 2.22 to 0.139
and the 8-deep one from 1.65 to 0.225 (tuned Adam 0.0995 and 0.252).

This stage continues from the stage-4 file (adopted: only the priors differ) on the stage-4
mixture with 512-wide MLPs admitted. A first try also added tabular problems of 32 and 64 training
rows, hoping the validation objective would teach caution on tiny datasets; it made things worse
(held-out 0.156 → 0.264 in 750 steps): a 32-row, 32-feature noiseless regression sits at the
interpolation peak, where the validation loss grows 10-30× its initial value whatever the
optimizer does, and those values swamped the meta-gradient.

Command:  python meta_train.py --config configs/generalist_priors.py --workdir runs/generalist5 \\
              --config.init_from=checkpoints/exports/generalist4_step1475.safetensors
Cost on 2 CPU cores: 1131 meta-steps in 17 min. Result: shipped as celo_generalist; user-model
suite 5 of 10 wins against tuned Adam (was 2), 2 of 30 runs above initial (was 4), none non-finite.
"""

from configs import generalist, generalist_depth

PRIOR_AXES = dict(generalist_depth.DEPTH_AXES, widths=(16, 64, 256, 512), width_weights=(3, 2, 2, 1))


def get_config():
    c = generalist.get_config()
    c.num_steps = 6000
    c.lopt.update(model_features=True, width_power=1.0, depth_power=1.0)
    for member in c.family.members.values():
        member.update(PRIOR_AXES)
    c.outer.update(peak_lr=5e-4, end_lr=5e-5, warmup_steps=50)
    return c
