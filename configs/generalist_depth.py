"""Generalist, stage 4: the stage-2 recipe (configs/generalist.py) with Celo's model feature.

Stage 2's optimizer (shipped as celo_generalist) cannot tell a deep model from a shallow one: its
step size sees only the training fraction and each tensor's shape, and it settled at a per-element
step (~8e-3) that kills an 8-layer ReLU MLP. Here Celo's step size also sees log(number of
matrices)/log(16) (`lopt.Celo(model_features=True)`), whose weight starts at zero when the run
starts from the stage-2 file (`Celo.adopt`), on the stage-2 task mixture with depths 0-8 weighted
towards deep models and a MAC cap (2**23) that admits 128-wide 8-layer MLPs at batch 64.

Command:  python meta_train.py --config configs/generalist_depth.py --workdir runs/generalist4 \
              --config.init_from=checkpoints/exports/generalist2_step3000.safetensors
Cost on 2 CPU cores: 1475 meta-steps in 12 min (5 steps/s once shapes are compiled). Result so far
(checkpoints/exports/README.md, stage 4): held-out 0.404 → 0.403; the depth weight moved to −0.025.
"""

from configs import generalist

DEPTH_AXES = dict(generalist.MODEL_AXES, depths=(0, 1, 2, 4, 6, 8), depth_weights=(1, 2, 2, 2, 1, 2), max_step_macs=2**23)


def get_config():
    c = generalist.get_config()
    c.num_steps = 6000
    c.lopt.model_features = True
    for member in c.family.members.values():
        member.update(DEPTH_AXES)
    c.outer.update(peak_lr=5e-4, end_lr=5e-5, warmup_steps=50)
    return c
