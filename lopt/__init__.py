"""Learned optimizers as optax transformations.

An architecture is a frozen config with `init(key) -> theta` (a plain pytree of meta-parameters)
and `optimizer(theta, roles=, fan_in=, num_steps=) -> optax.GradientTransformationExtraArgs`,
which is `optax.chain(<the architecture's step>, scale_by_mup(roles, fan_in))`: μP's 1/fan_in
scaling of hidden-weight updates is its own transform (identity without roles), so an optimizer's
state is the pair (the architecture's state, optax.EmptyState()). Files written by `save` load
back with `load` (ready optimizer) or `load_theta` (architecture and theta).

Modules: `celo`, `celo2`, `mulo`, `velo`, `adam` (the architectures); one feature module per architecture
family, `celo_features` (Celo's accumulators, 10 features and fused MLP), `celo2_features` (Celo2's
accumulators, 6 features, Adam branch and Newton–Schulz) and `mulo_features` (the
28 accumulator features and time features of μLO and VeLO, and their file version
`FEATURE_VERSION`); `common` (the numerics all architectures share: `init_mlp`, MLP evaluation,
decays); `registry` (the architectures by name); `mup` (roles, fan-ins and `scale_by_mup`), `io` (the learned-optimizer file),
`tensorfile` (pytree tensor names, digests and atomic writes, shared with `checkpoints`),
`xla_flags` (the one helper that sets XLA_FLAGS before the backend starts, used by every command
and the tests), `compile_cache` (JAX's persistent compilation cache for the commands, and counters
of compile time and cache hits), and `online` with `online_rules` (online meta-learning of an update rule's
meta-parameters during one training run, standard / optimistic (BMG) / look-ahead meta-gradients,
as an optax transformation: `online_meta`).

>>> import jax, optax, lopt
>>> arch = lopt.ARCHITECTURES["mulo"]()
>>> opt = optax.chain(optax.add_decayed_weights(1e-4), arch.optimizer(arch.init(jax.random.key(0))))

`lopt` imports none of the project's other packages.
"""

from lopt.adam import LearnableAdam
from lopt.celo import Celo
from lopt.celo2 import Celo2
from lopt.io import LoptFileError, list_pretrained, load, load_theta, save
from lopt.mulo import MuLO
from lopt.mulo_features import FEATURE_VERSION
from lopt.mup import infer_roles, multipliers, scale_by_mup
from lopt.online import (OnlineMetaState, bmg_target, lookahead_meta_grad, online_meta, optimistic_meta_grad,
                         standard_meta_grad, unrolled_meta_grad)
from lopt.online_rules import (UpdateRule, elementwise_adam, elementwise_sgd, elementwise_sgd_bmg_closed_form,
                               learned, momentum)
from lopt.registry import ARCHITECTURES, get_arch
from lopt.velo import VeLO

__all__ = [
    "ARCHITECTURES", "FEATURE_VERSION", "Celo", "Celo2", "LearnableAdam", "LoptFileError", "MuLO", "VeLO", "get_arch",
    "infer_roles", "list_pretrained", "load", "load_theta", "multipliers", "save", "scale_by_mup",
    "OnlineMetaState", "UpdateRule", "bmg_target", "elementwise_adam", "elementwise_sgd",
    "elementwise_sgd_bmg_closed_form", "learned", "lookahead_meta_grad", "momentum", "online_meta",
    "optimistic_meta_grad", "standard_meta_grad", "unrolled_meta_grad",
]
