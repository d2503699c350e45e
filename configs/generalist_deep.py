"""Generalist, stage 3: the generalist recipe (configs/generalist.py) with wider and deeper MLPs.

The stage-2 export (checkpoints/exports/generalist2_step3000.safetensors) never saw a width-128
depth-8 MLP (the MAC cap of 2**22 cut it) and, on the user-model suite, drove a 128×8 digits MLP
to chance loss and a 256-wide diabetes MLP to a constant prediction: its early steps were too
large for them. This stage continues from it on MLPs of widths 32-256 and depths 1-8 in equal
parts (MAC cap 2**24), at half the peak outer learning rate.

Command:  python meta_train.py --config configs/generalist_deep.py --workdir runs/generalist3 \
              --config.init_from=checkpoints/exports/generalist2_step3000.safetensors
Cost on 2 CPU cores: 1500 meta-steps in 15.5 min. Result (checkpoints/exports/README.md): held-out
0.410 → 0.420, 476 dead inner problems; user-model suite (quick) 1 of 5 against tuned Adam, the
8-deep digits MLP still at chance loss. Not shipped; configs/generalist_depth.py is the next try.
"""

from configs import generalist

DEEP_AXES = dict(generalist.MODEL_AXES, widths=(32, 64, 128, 256), width_weights=(2, 2, 2, 1), depths=(1, 2, 4, 8),
                 depth_weights=(1, 1, 1, 1), max_step_macs=2**24)


def get_config():
    c = generalist.get_config()
    c.num_steps = 1500
    for member in c.family.members.values():
        member.update(DEEP_AXES)
    c.outer.update(peak_lr=5e-4, end_lr=5e-5, warmup_steps=50)
    return c
