"""Online meta-learning of element-wise learning rates, optimistic (BMG target), in one training run.

A Fashion-MNIST 8×8 MLP 64-128-10 trains for 3000 steps (batch 128) with SGD whose 9,610
element-wise learning rates (from 0.3) are meta-learned online by `lopt.online_meta`: the
optimistic meta-gradient of omg.md §3 (target: L = 5 − 1 bootstrapped steps of the rule, then a
gradient step of α = 0.3, ½‖x̃ − x_{t+1}(w)‖² matching), Adam on w at 3e-3. `outer.online`
runs it and writes TensorBoard scalars every 100 steps (learner/*, meta/*, rates/p10|p50|p90).

Command:  python meta_train.py --config configs/online_fmnist.py --workdir runs/online
          (standard one-step meta-gradients: add --config.online.mode=standard)
Cost on 2 CPU cores: 11 s wall (8 s for the 3000 steps, compilation included), measured beside
another job (load ~3); 6 gradient evaluations per step (1 + L).
Expected (measured, seed 0): at step 3000 learner/train_loss (mean of the last 100 minibatches)
0.391, learner/test_loss 0.438, learner/test_accuracy 0.840; the rates' percentiles p10/p50/p90
0.134/0.178/0.242 (from 0.3). With --config.online.mode=standard (1 gradient per step, 9 s):
0.395, 0.440, 0.840, rates 0.092/0.137/0.21: the one-step meta-gradient shrinks the rates more
(short-horizon bias). 5-seed tables, baselines and meta-lr sweeps: `python -m evaluation.optimism`
(evaluation/RESULTS.md, "Optimistic meta-gradients (issue 17)").
"""

import ml_collections


def get_config():
    c = ml_collections.ConfigDict()
    c.online = ml_collections.ConfigDict(dict(
        rule="sgd", mode="optimistic", target_steps=5, target_lr=0.3, meta_optimizer="adam", meta_lr=3e-3,
        lr0=0.3, steps=3000, seed=0, log_every=100, batch_size=128, hidden=128,
    ))
    return c
