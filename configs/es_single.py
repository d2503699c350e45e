"""ES-Single: the quick recipe with one perturbation per particle held for its whole inner problem.

Command:  python meta_train.py --config configs/es_single.py --workdir runs/es_single
Cost on 2 CPU cores: about the same as configs/quick.py (ES-Single and PES run the same unroll).
Expected: like configs/quick.py, the held-out meta-loss falls below the initialization's.
"""

from configs import quick


def get_config():
    c = quick.get_config()
    c.estimator.update(name="es_single", sigma=0.01)
    return c
