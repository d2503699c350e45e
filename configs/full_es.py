"""Full-horizon ES through evosax: SNES over whole 100-step inner runs, with evosax's fitness shaping.

Every estimate runs population_size × num_tasks complete inner problems from scratch (no
truncation), so this is the unbiased but expensive end of the estimator spectrum. A smaller
learned optimizer (μLO hidden 8) keeps the search space modest.

Command:  python meta_train.py --config configs/full_es.py --workdir runs/full_es
Cost on 2 CPU cores: about 20 minutes (5.2 s per step: 6400 inner steps, measured over 12 steps).
Expected (full run not yet measured here; 12 steps ran cleanly):
the population's mean loss (meta/loss) falls; held-out evaluation as for the others.
"""

from configs import quick


def get_config():
    c = quick.get_config()
    c.lopt.hidden_size = 8
    c.estimator.update(name="full_es", strategy="snes", fitness_shaping="default", population_size=16,
                       horizon=100, num_tasks=2, sigma=0.01)
    c.outer.update(peak_lr=1e-2, end_lr=3e-3)
    return c
