"""μP metadata for learned optimizers: per-tensor roles and fan-ins as plain pytrees.

μP (μLO eq. 3) scales the update of every *hidden* weight by 1/fan_in and leaves every other
update (input, output, biases, norms) alone (`multipliers`). `scale_by_mup(roles, fan_in)` is that
scaling as an optax transform; every architecture's `optimizer(theta, roles=, fan_in=)` ends with
it: `optax.chain(<the architecture's own transform>, scale_by_mup(roles, fan_in))`.
Roles come from an `inner_tasks` Task (`task.roles`, `task.fan_in`) or are inferred from any flax
param tree by `infer_roles`:

- a tensor of rank ≤ 1 (bias, norm scale) is 'vector', fan-in 1;
- a flax `Embed` table (leaf named 'embedding') is 'input', fan-in 1 (one-hot input);
- any other tensor is a kernel whose last axis is fan-out and the rest fan-in
  (`Dense` (in, out), `Conv` (kh, kw, in, out)).
- With `base=` (the same model built narrower), axes whose size differs are width axes: a kernel
  with width axes on both sides is 'hidden', on fan-out only 'input', on fan-in only 'output'
  (μP's base-shape rule, exact for any architecture).
- Without `base`, kernels are taken in natural path order (so 'Dense_10' follows 'Dense_9'):
  the first is 'input' (unless an `Embed` table is the input), the last 'output', the rest 'hidden'.
- `overrides={regex: role}` then sets the role of every leaf whose '/'-joined path matches.

A flax user's μP learned optimizer, in three lines:

>>> import jax, flax.linen as nn, lopt
>>> params = nn.Sequential([nn.Dense(64), nn.relu, nn.Dense(64), nn.relu, nn.Dense(10)]).init(
...     jax.random.key(0), jax.numpy.zeros((1, 8)))
>>> roles, fan_in = lopt.infer_roles(params)
>>> opt = lopt.MuLO().optimizer(lopt.MuLO().init(jax.random.key(0)), roles=roles, fan_in=fan_in)
>>> jax.tree.leaves(roles)
['vector', 'input', 'vector', 'hidden', 'vector', 'output']
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lopt.tensorfile import path_str

PyTree = Any
ROLES = ("input", "hidden", "output", "vector")


def _natural_key(path: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path)]


def _fan_in(path: str, shape: tuple[int, ...]) -> int:
    if len(shape) <= 1 or path.endswith("embedding"):
        return 1
    return int(np.prod(shape[:-1]))


def _role_from_base(shape, base_shape) -> str:
    if len(shape) != len(base_shape):
        raise ValueError(f"base shape {base_shape} has a different rank than {shape}")
    diff = [a != b for a, b in zip(shape, base_shape)]
    inf_in, inf_out = any(diff[:-1]), diff[-1]
    if inf_in and inf_out:
        return "hidden"
    return "output" if inf_in else "input"


def infer_roles(
    params: PyTree, base: PyTree | None = None, overrides: Mapping[str, str] | None = None
) -> tuple[PyTree, PyTree]:
    """(roles, fan_in) pytrees shaped like `params`, by the rule in this module's docstring."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    paths = [path_str(p) for p, _ in leaves]
    shapes = [tuple(np.shape(x)) for _, x in leaves]
    roles: list[str] = ["vector" if len(s) <= 1 else "input" for s in shapes]
    kernels = [i for i, (p, s) in enumerate(zip(paths, shapes)) if len(s) >= 2 and not p.endswith("embedding")]
    if base is not None:
        base_leaves, base_def = jax.tree_util.tree_flatten(base)
        if base_def != treedef:
            raise ValueError("base must have the same tree structure as params")
        for i in kernels:
            roles[i] = _role_from_base(shapes[i], tuple(np.shape(base_leaves[i])))
    elif kernels:
        ordered = sorted(kernels, key=lambda i: _natural_key(paths[i]))
        has_embedding = any(p.endswith("embedding") for p in paths)
        for i in ordered[0 if has_embedding else 1 : -1]:
            roles[i] = "hidden"
        if len(ordered) > 1:
            roles[ordered[-1]] = "output"
    for pattern, role in (overrides or {}).items():
        if role not in ROLES:
            raise ValueError(f"override {pattern!r}: unknown role {role!r}; valid: {ROLES}")
        hits = [i for i, p in enumerate(paths) if re.search(pattern, p)]
        if not hits:
            raise ValueError(f"override {pattern!r} matches no parameter; paths are {paths}")
        for i in hits:
            roles[i] = role
    fan_in = [_fan_in(p, s) for p, s in zip(paths, shapes)]
    return jax.tree.unflatten(treedef, roles), jax.tree.unflatten(treedef, fan_in)


def multipliers(roles: PyTree, fan_in: PyTree) -> PyTree:
    """Per-tensor update multipliers: 1/fan_in for 'hidden', 1 otherwise (plain floats)."""

    def one(role: str, fi: int) -> float:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; valid: {ROLES}")
        return 1.0 / float(fi) if role == "hidden" else 1.0

    return jax.tree.map(one, roles, fan_in)


def check_structure(mults: PyTree, params: PyTree) -> None:
    """Raises a clear error when μP metadata does not match the params (or updates) it is applied to."""
    if jax.tree.structure(mults) != jax.tree.structure(params):
        raise ValueError(
            "μP roles/fan_in do not match the params' tree structure:\n"
            f"  roles:  {jax.tree.structure(mults)}\n  params: {jax.tree.structure(params)}"
        )


def scale_by_mup(roles: PyTree | None = None, fan_in: PyTree | None = None) -> optax.GradientTransformationExtraArgs:
    """μP's update scaling as an optax transform: the update of every 'hidden' tensor times 1/fan_in,
    every other update unchanged; the identity when both `roles` and `fan_in` are None.

    `roles` and `fan_in` are plain pytrees shaped like the params (static: strings and ints, see
    `infer_roles`). A hidden update is multiplied in at least float32 and cast back to its dtype.
    Its state is `optax.EmptyState()`; extra args (`value=loss`, …) are accepted and ignored.

    >>> import jax.numpy as jnp
    >>> t = scale_by_mup({"w": "hidden", "b": "vector"}, {"w": 4, "b": 1})
    >>> updates = {"w": jnp.ones((2,)), "b": jnp.ones((2,))}
    >>> t.update(updates, t.init(updates))[0]["w"]
    Array([0.25, 0.25], dtype=float32)
    """
    if roles is None and fan_in is None:
        mults = None
    elif roles is None or fan_in is None:
        raise ValueError("μP needs both roles= and fan_in= (see lopt.infer_roles)")
    else:
        mults = multipliers(roles, fan_in)

    def scale(u: jax.Array, m: float) -> jax.Array:
        if m == 1.0:
            return u
        return (u.astype(jnp.promote_types(u.dtype, jnp.float32)) * m).astype(u.dtype)

    def init_fn(params):
        if mults is not None:
            check_structure(mults, params)
        return optax.EmptyState()

    def update_fn(updates, state, params=None, **extra):
        del params, extra
        if mults is None:
            return updates, state
        check_structure(mults, updates)
        return jax.tree.map(scale, updates, mults), state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
