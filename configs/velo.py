"""VeLO-style: the per-tensor LSTM with a bank of per-parameter MLPs, meta-trained with PES.

VeLO conditions on training progress, so every inner problem gets its horizon (max_horizon) as
num_steps; the truncation schedule is lockstep-free and log-uniform as for μLO.

Command:  python meta_train.py --config configs/velo.py --workdir runs/velo
Cost on 2 CPU cores: about 3 minutes (0.2 s per step, but 1.5 minutes of compilation; measured).
Expected (full run not yet measured here; 12 steps ran cleanly):
the held-out meta-loss falls below the initialization's.
"""

from configs import quick


def get_config():
    c = quick.get_config()
    c.lopt = type(c.lopt)(dict(name="velo"))
    c.estimator.update(name="pes", trunc_length=20, min_horizon=100, max_horizon=500)
    return c
