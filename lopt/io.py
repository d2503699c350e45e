"""The learned-optimizer file: safetensors weights plus JSON metadata, loaded without running code.

A file holds theta's arrays under '/'-joined path names and, in the safetensors header's
metadata, one JSON document under the key "lopt":

    {"format": "lopt", "format_version": 1, "arch": "mulo", "arch_version": 1,
     "arch_config": {...}, "sha256": "<hash of every tensor's name, dtype, shape and bytes>",
     "provenance": {...: config, meta-training steps, tasks, date, ...}}

Loading parses JSON and raw arrays only (no pickle, no code), rebuilds the architecture from the
explicit `ARCHITECTURES` table, checks the hash and every tensor against the architecture's own
init, and raises `LoptFileError` with one clear message on any mismatch.

`arch_version` is the architecture's `version`, bumped whenever the same theta would step
differently. A file of another version is refused, unless it is older and the architecture's
`older_file(version, arch_config)` returns None (it steps under this code as it did when written)
or a dict (the config under which this code steps it as it did, e.g. with a setting that came
later pinned to its old behaviour); otherwise that method's reason is the error. `sha256` covers the tensors only (names, dtypes,
shapes, bytes), so it identifies theta across versions and metadata. Tensor names, the hash
and the atomic write are `lopt.tensorfile`'s (shared with `checkpoints`).
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.resources
import json
import os
import pathlib
from typing import Any

import jax
import numpy as np
import safetensors
import safetensors.numpy

from lopt.registry import ARCHITECTURES
from lopt.tensorfile import path_str, tensor_digest, write_atomic

FORMAT_VERSION = 1
SUFFIX = ".safetensors"
PyTree = Any


class LoptFileError(ValueError):
    """A learned-optimizer file is missing, foreign, corrupted or incompatible."""


def _flatten(theta: PyTree) -> dict[str, np.ndarray]:
    leaves = jax.tree_util.tree_flatten_with_path(theta)[0]
    return {path_str(p): np.array(x, order="C", copy=True) for p, x in leaves}


def _jsonable(x: Any) -> Any:
    return json.loads(json.dumps(x, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


def save(path: str | os.PathLike, arch, theta: PyTree, metadata: dict | None = None) -> pathlib.Path:
    """Writes `theta` of architecture `arch` to one self-describing file, atomically.

    `metadata` is the provenance (config, meta-training steps, tasks, …); the date is added.
    >>> import jax, tempfile, lopt
    >>> arch = lopt.MuLO()
    >>> path = lopt.save(tempfile.mkdtemp() + "/opt.safetensors", arch, arch.init(jax.random.key(0)))
    >>> lopt.load_theta(path)[0] == arch
    True
    """
    path = pathlib.Path(path)
    tensors = _flatten(theta)
    provenance = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    provenance.update(_jsonable(metadata or {}))
    header = {
        "format": "lopt", "format_version": FORMAT_VERSION, "arch": arch.name, "arch_version": arch.version,
        "arch_config": _jsonable(dataclasses.asdict(arch)), "sha256": tensor_digest(tensors), "provenance": provenance,
    }
    blob = safetensors.numpy.save(tensors, metadata={"lopt": json.dumps(header)})
    write_atomic(path, blob)
    return path


def _pretrained_dir() -> pathlib.Path:
    return pathlib.Path(str(importlib.resources.files("lopt") / "pretrained"))


def list_pretrained() -> list[str]:
    """Names of the learned optimizers shipped in `lopt/pretrained/`, loadable offline by name."""
    return sorted(p.name[: -len(SUFFIX)] for p in _pretrained_dir().glob("*" + SUFFIX))


def resolve(path_or_name: str | os.PathLike) -> pathlib.Path:
    """A file path as given, or the shipped file of a pretrained name."""
    path = pathlib.Path(path_or_name)
    if path.is_file():
        return path
    shipped = _pretrained_dir() / (str(path_or_name) + SUFFIX)
    if shipped.is_file():
        return shipped
    raise LoptFileError(
        f"no learned-optimizer file or pretrained name {str(path_or_name)!r}; pretrained: {list_pretrained()}"
    )


def _arch_from_header(header: dict, path) -> Any:
    archs = ARCHITECTURES
    name = header.get("arch")
    if name not in archs:
        raise LoptFileError(f"{path}: unknown architecture {name!r}; this lopt knows {sorted(archs)}")
    cls = archs[name]
    config = header.get("arch_config", {})
    version = header.get("arch_version")
    if version != cls.version:
        older = getattr(cls, "older_file", None)
        why = (older(version, config) if older is not None and isinstance(version, int) and version < cls.version
               else f"this lopt reads version {cls.version}")
        if isinstance(why, dict):
            config = why
        elif why is not None:
            raise LoptFileError(f"{path}: {name!r} file has feature-set version {version}: {why}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(config) - set(fields))
    if unknown:
        raise LoptFileError(f"{path}: {name!r} config has unknown fields {unknown}")
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise LoptFileError(f"{path}: invalid {name!r} config: {e}") from e


def _read(path: pathlib.Path) -> tuple[dict, dict[str, np.ndarray]]:
    try:
        with safetensors.safe_open(str(path), framework="np") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types for bad headers and sizes
        raise LoptFileError(f"{path}: not a readable learned-optimizer file (truncated or corrupted?): {e}") from e
    if "lopt" not in meta:
        raise LoptFileError(f"{path}: a safetensors file without lopt metadata (not a learned-optimizer file)")
    try:
        header = json.loads(meta["lopt"])
    except json.JSONDecodeError as e:
        raise LoptFileError(f"{path}: corrupted lopt metadata: {e}") from e
    if header.get("format") != "lopt" or header.get("format_version") != FORMAT_VERSION:
        raise LoptFileError(f"{path}: format {header.get('format')!r} v{header.get('format_version')}, "
                            f"expected 'lopt' v{FORMAT_VERSION}")
    if tensor_digest(tensors) != header.get("sha256"):
        raise LoptFileError(f"{path}: tensor data does not match its checksum (corrupted file)")
    return header, tensors


def load_theta(path_or_name: str | os.PathLike, arch: str | None = None) -> tuple[Any, PyTree, dict]:
    """(architecture, theta, header) from a file or pretrained name, for use or further meta-training.

    `arch` (a name) makes a file of any other architecture an error."""
    path = resolve(path_or_name)
    header, tensors = _read(path)
    if arch is not None and header.get("arch") != arch:
        raise LoptFileError(f"{path}: holds architecture {header.get('arch')!r}, expected {arch!r}")
    model = _arch_from_header(header, path)
    # theta is float32 by design; its shapes and dtypes are init's without x64, whose default
    # dtype would otherwise turn the template's unspecified float32 arrays into float64.
    with jax.enable_x64(False):
        template = jax.eval_shape(model.init, jax.random.key(0))
    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    names = [path_str(p) for p, _ in leaves]
    if set(names) != set(tensors):
        raise LoptFileError(
            f"{path}: tensors {sorted(set(tensors) ^ set(names))} do not match architecture {model.name!r}"
        )
    for name, (_, t) in zip(names, leaves):
        if tensors[name].shape != t.shape or tensors[name].dtype != t.dtype:
            raise LoptFileError(f"{path}: tensor {name!r} is {tensors[name].dtype}{list(tensors[name].shape)}, "
                                f"architecture expects {t.dtype}{list(t.shape)}")
    theta = jax.tree.unflatten(treedef, [jax.numpy.asarray(tensors[n]) for n in names])
    return model, theta, header


def load(path_or_name: str | os.PathLike, **options):
    """A ready `optax.GradientTransformation` from a file or pretrained name.

    `options` go to the architecture's `optimizer` (roles=, fan_in=, num_steps=)."""
    model, theta, _ = load_theta(path_or_name)
    return model.optimizer(theta, **options)
