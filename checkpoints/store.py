"""Resumable meta-training state: one safetensors file per step, JSON metadata, no pickle.

`save(workdir, step, tree, meta)` writes `<workdir>/checkpoints/ckpt_<step:08d>.safetensors`
atomically. Tensors are the leaves of `tree` under '/'-joined key-path names; the safetensors
header metadata holds one JSON document under the key "lopt-checkpoint":

    {"format": "lopt-checkpoint", "format_version": 1, "step": 12,
     "sha256": "<hash of every tensor's name, dtype, shape and bytes>",
     "keys": {"<name of a typed PRNG key leaf>": "<impl name>", ...}, "meta": {...}}

Typed PRNG keys are stored as their key data and rebuilt with `jax.random.wrap_key_data`.
`restore(workdir, template)` returns the newest checkpoint that is intact and matches the
template, skipping corrupted ones with a warning; loading parses JSON and raw arrays only.

>>> import tempfile, jax, jax.numpy as jnp
>>> from checkpoints import store
>>> with tempfile.TemporaryDirectory() as workdir:
...     state = {"theta": jnp.arange(3.0), "key": jax.random.key(0), "t": None}
...     _ = store.save(workdir, 5, state, {"lr": 1e-3})
...     step, restored, meta = store.restore(workdir, state)
...     print(step, meta, restored["theta"], restored["key"].dtype, store.steps(workdir))
5 {'lr': 0.001} [0. 1. 2.] key<fry> [5]
"""

from __future__ import annotations

import collections
import json
import os
import pathlib
import re
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import safetensors
import safetensors.numpy
from absl import logging

from lopt.tensorfile import path_str, tensor_digest, write_atomic

FORMAT = "lopt-checkpoint"
FORMAT_VERSION = 1
SUBDIR = "checkpoints"
_NAME = re.compile(r"ckpt_(\d{8}|[1-9]\d{8,})\.safetensors")  # exactly the names save writes
PyTree = Any


class CheckpointError(ValueError):
    """A checkpoint is foreign, corrupted or incompatible with the run or template."""


def _path(workdir: str | os.PathLike, step: int) -> pathlib.Path:
    return pathlib.Path(workdir) / SUBDIR / f"ckpt_{step:08d}.safetensors"


def _is_key(x: Any) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _flatten(tree: PyTree) -> tuple[list[tuple[str, Any]], Any]:
    """(name, leaf) pairs in tree order and the treedef; None leaves vanish, names must be unique."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
    named = [(path_str(p), x) for p, x in leaves]
    dups = sorted(n for n, c in collections.Counter(n for n, _ in named).items() if c > 1)
    if dups:
        raise ValueError(f"leaves with the same path name {dups}: rename the containers' keys")
    return named, treedef


def _stored(x: Any, abstract: bool = False) -> Any:
    """What a leaf is stored as: key data for typed keys, JAX's array for Python scalars, else itself."""
    if _is_key(x):
        return jax.eval_shape(jax.random.key_data, x) if abstract else jax.random.key_data(x)
    return jnp.asarray(x) if type(x) in (bool, int, float, complex) else x


def _spec(x: Any) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) a template leaf expects in the file."""
    x = _stored(x, abstract=True)
    return tuple(x.shape), np.dtype(x.dtype)


def save(workdir: str | os.PathLike, step: int, tree: PyTree, meta: dict, keep: int = 3) -> pathlib.Path:
    """Writes `tree` and `meta` (a JSON-able dict) as checkpoint `step`, atomically, keeping the newest `keep`.

    Only after the new file is in place are the oldest other checkpoints beyond `keep` deleted."""
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
        raise ValueError(f"step must be a non-negative int, got {step!r}")
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise ValueError(f"keep must be an int >= 1, got {keep!r}")
    if not isinstance(meta, dict):
        raise ValueError(f"meta must be a dict, got {type(meta).__name__}")
    step = int(step)
    named, _ = _flatten(tree)
    # np.asarray(order="C"), not np.ascontiguousarray: that one turns 0-d arrays into shape [1]
    tensors = {n: np.asarray(_stored(x), order="C") for n, x in named}
    keys = {n: str(jax.random.key_impl(x)) for n, x in named if _is_key(x)}
    header = {"format": FORMAT, "format_version": FORMAT_VERSION, "step": step, "sha256": tensor_digest(tensors),
              "keys": keys, "meta": meta}
    try:
        text = json.dumps(header)
    except (TypeError, ValueError) as e:
        raise ValueError(f"meta is not JSON-serializable: {e}") from e
    path = _path(workdir, step)
    write_atomic(path, safetensors.numpy.save(tensors, metadata={FORMAT: text}))
    others = [s for s in steps(workdir) if s != step]  # never the file just written
    for old in others[: max(0, len(others) + 1 - keep)]:
        _path(workdir, old).unlink(missing_ok=True)
    return path


def steps(workdir: str | os.PathLike) -> list[int]:
    """Steps of the checkpoint files in `workdir`, ascending (temporary files are ignored)."""
    d = pathlib.Path(workdir) / SUBDIR
    if not d.is_dir():
        return []
    return sorted(int(m.group(1)) for p in d.iterdir() if (m := _NAME.fullmatch(p.name)) and p.is_file())


def _header(path: pathlib.Path, step: int) -> dict:
    try:
        with safetensors.safe_open(str(path), framework="np") as f:
            raw = (f.metadata() or {}).get(FORMAT)
    except Exception as e:  # safetensors raises its own error types for bad headers and sizes
        raise CheckpointError(f"not a readable safetensors file (truncated or corrupted?): {e}") from e
    if raw is None:
        raise CheckpointError(f"a safetensors file without {FORMAT!r} metadata (foreign file)")
    try:
        header = json.loads(raw)
    except json.JSONDecodeError as e:
        raise CheckpointError(f"corrupted {FORMAT!r} metadata: {e}") from e
    if not isinstance(header, dict) or header.get("format") != FORMAT or header.get("format_version") != FORMAT_VERSION:
        got = (header.get("format"), header.get("format_version")) if isinstance(header, dict) else header
        raise CheckpointError(f"format {got!r}, expected {FORMAT!r} v{FORMAT_VERSION}")
    if header.get("step") != step or not all(isinstance(header.get(k), dict) for k in ("meta", "keys")):
        raise CheckpointError(f"header step {header.get('step')!r}, meta or keys do not match file step {step}")
    return header


def _tensors(path: pathlib.Path, header: dict) -> dict[str, np.ndarray]:
    try:
        with safetensors.safe_open(str(path), framework="np") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:
        raise CheckpointError(f"unreadable tensor data (truncated or corrupted?): {e}") from e
    if tensor_digest(tensors) != header.get("sha256"):
        raise CheckpointError("tensor data does not match its sha256 (corrupted file)")
    return tensors


def _unflatten(header: dict, tensors: dict[str, np.ndarray], template: PyTree) -> PyTree:
    named, treedef = _flatten(template)
    names = {n for n, _ in named}
    if names != set(tensors):
        raise CheckpointError(f"tensors do not match the template: missing {sorted(names - set(tensors))}, "
                              f"extra {sorted(set(tensors) - names)}")
    saved_keys = header["keys"]
    leaves = []
    for name, t in named:
        a = tensors[name]
        if (a.shape, a.dtype) != _spec(t):
            shape, dtype = _spec(t)
            raise CheckpointError(f"tensor {name!r} is {a.dtype}{list(a.shape)}, template expects {dtype}{list(shape)}")
        if _is_key(t) != (name in saved_keys):
            raise CheckpointError(f"leaf {name!r}: typed PRNG key in template {_is_key(t)}, in file {not _is_key(t)}")
        if name in saved_keys:
            try:
                leaves.append(jax.random.wrap_key_data(jnp.asarray(a), impl=saved_keys[name]))
            except Exception as e:  # an unknown impl name or key-data shape
                raise CheckpointError(f"key {name!r} cannot be rebuilt: {e}") from e
            if leaves[-1].dtype != t.dtype:
                raise CheckpointError(f"key {name!r} is {leaves[-1].dtype}, template expects {t.dtype}")
        elif jax.dtypes.canonicalize_dtype(a.dtype) == a.dtype:
            leaves.append(jnp.asarray(a))
        else:  # e.g. float64 with jax_enable_x64 off: jax would truncate, so keep the exact numpy array
            leaves.append(a)
    return jax.tree_util.tree_unflatten(treedef, leaves)


def read_meta(workdir: str | os.PathLike) -> tuple[int, dict] | None:
    """(step, meta) of the newest checkpoint whose header parses; None if there are no checkpoints.

    Needs no template, so a workdir's compatibility can be checked before building any state."""
    errors = []
    for step in reversed(steps(workdir)):
        try:
            return step, _header(_path(workdir, step), step)["meta"]
        except CheckpointError as e:
            errors.append(f"{_path(workdir, step)}: {e}")
    if errors:
        raise CheckpointError("no checkpoint header is readable:\n" + "\n".join(errors))
    return None


def restore(
    workdir: str | os.PathLike, template: PyTree, check: Callable[[dict], None] | None = None
) -> tuple[int, PyTree, dict] | None:
    """(step, tree, meta) of the newest intact checkpoint matching `template`; None if there is none.

    `check(meta)` runs on each candidate's meta; a CheckpointError it raises propagates (an
    incompatible run is refused). Corrupted or mismatching candidates are skipped with a warning
    and kept on disk; if all are, CheckpointError lists each file and its reason. Leaves come back as
    jax arrays with the saved bytes (numpy arrays for dtypes jax cannot hold, e.g. float64 without x64)."""
    errors = []

    def skip(path: pathlib.Path, e: CheckpointError) -> None:
        logging.warning("skipping checkpoint %s: %s", path, e)
        errors.append(f"{path}: {e}")

    for step in reversed(steps(workdir)):
        path = _path(workdir, step)
        try:
            header = _header(path, step)
        except CheckpointError as e:
            skip(path, e)
            continue
        if check is not None:
            check(header["meta"])  # a CheckpointError here refuses the workdir: let it propagate
        try:
            return step, _unflatten(header, _tensors(path, header), template), header["meta"]
        except CheckpointError as e:
            skip(path, e)
    if errors:
        raise CheckpointError("every checkpoint is corrupted or mismatching:\n" + "\n".join(errors))
    return None
