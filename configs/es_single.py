"""ES-Single: the quick recipe with one perturbation per particle held for its whole inner problem.

Command:  python meta_train.py --config configs/es_single.py --workdir runs/es_single
Cost on 2 CPU cores: about 3 minutes (0.4 s per step after compilation, measured over 12 steps).
Expected (full run not yet measured here; 12 steps ran cleanly):
like configs/quick.py, the held-out meta-loss falls below the initialization's.
"""

from configs import quick


def get_config():
    c = quick.get_config()
    c.estimator.update(name="es_single", sigma=0.01)
    return c
