"""Meta-training's outer loop, as a library: `run(setup, workdir)` meta-trains, resumes and exports.

    setup.py      `Setup`: a run as typed values (`configs.build.build(config)` makes one)
    optimizer.py  the outer optimizer recipe (AdamW, warmup + cosine, clipping, finite-only steps)
    groups.py     task groups: sampled task specs with their estimator populations, redrawn in turn
    resume.py     stop requests (SIGINT/SIGTERM), checkpoints of the whole run, resuming them
    loop.py       the loop itself: meta-steps, logging, evaluation cadences, export

Usage (the CLI, meta_train.py, does exactly this; a tiny run takes about a minute on 2 cores):

    import outer
    from configs import build, tiny
    summary = outer.run(build.build(tiny.get_config()), "runs/tiny")
    summary["export"]  # 'runs/tiny/lopt.safetensors'
"""

from outer.optimizer import OuterOptimizer
from outer.setup import Setup
from outer.loop import EXPORT_NAME, export, outer_step, run  # noqa: E402  (after Setup: loop imports it)

__all__ = ["EXPORT_NAME", "OuterOptimizer", "Setup", "export", "outer_step", "run"]
