"""Online meta-learning of element-wise learning-rate multipliers on top of Adam, optimistic.

As configs/online_fmnist.py, with the rule φ = −e^w ⊙ Adam's direction (w from log 3e-3, tuned
Adam's rate on this model). The target's last step is a plain gradient step, so α must be
comparable to L − 1 Adam steps: α = 10 with L = 5 (α ≤ 3 let some rates blow up); Adam on w at 1e-3
(at 1e-2 the optimistic target diverges, see evaluation/RESULTS.md).

Command:  python meta_train.py --config configs/online_fmnist_adam.py --workdir runs/online_adam
Cost on 2 CPU cores: 11 s wall (load ~3), 6 gradient evaluations per step.
Expected (measured, seed 0): at step 3000 learner/train_loss 0.375, learner/test_loss 0.430,
learner/test_accuracy 0.841; rates p10/p50/p90 0.0015/0.0021/0.0028 (from 0.003): on top of Adam
the meta-learned rates decrease in both modes, and optimism does not beat the standard
meta-gradient at its best meta-lr (evaluation/RESULTS.md).
"""

from configs import online_fmnist


def get_config():
    c = online_fmnist.get_config()
    c.online.update(rule="adam", lr0=3e-3, target_steps=5, target_lr=10.0, meta_lr=1e-3)
    return c
