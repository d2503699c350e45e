"""celo2, stage 2: stage 1's optimizer meta-trained on the same mixture with a 10× larger outer step.

Stage 1's outer learning rate (1e-4, Celo2-base's for its 100k meta-steps) moved θ consistently but
slowly: over its first 2450 meta-steps the skip weights on g/√v and g grew to 0.024 and 0.037
(a random walk of that step would reach ~0.005), while the held-out meta-loss stayed at
0.5822-0.5826. A 2-core budget runs ~10k meta-steps per session, so this stage takes outer AdamW
1e-3 → 1e-4, and the default peak of a run of T steps is 1e-3·(1000/T)^0.5 (`horizon_exponent`
0.5, chosen on `dev`: evaluation/RESULTS.md, "Celo2's defaults"); everything else is stage 1's
(configs/celo2/stage1.py).

Command:  python meta_train.py --config configs/celo2/stage2.py --workdir runs/celo2/stage2
Cost on 2 CPU cores: 7460 meta-steps in 120.5 minutes (2026-12-07, from stage 1's export at
meta-step 4594, beside evaluations and the test suite on the same cores); median 1,700 inner
steps/s; no cache flush, at most 43.2k memory maps (issue 28's 2-hour run).
Result: not shipped. Its held-out meta-loss rose from 0.582 to 0.592 (0.583-0.586 over its first
5000 meta-steps, then 0.587-0.593): the 10× outer step moves θ away from what the held-out
training loss rewards. Its workdir is not committed; do not continue it.
"""

import ml_collections

from configs.celo2 import stage1


def get_config() -> ml_collections.ConfigDict:
    c = stage1.get_config()
    c.init_from = "configs/celo2/stage1.safetensors"
    c.lopt.horizon_exponent = 0.5
    c.outer.update(peak_lr=1e-3, end_lr=1e-4, warmup_steps=100)
    return c
