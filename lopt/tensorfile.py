"""Named-tensor files: the helpers shared by `lopt.io` (learned-optimizer files) and `checkpoints`.

A pytree is stored as a flat dict of arrays named by the '/'-joined key path of each leaf
(`path_str`), checked by a SHA-256 over every tensor (`tensor_digest`) and written atomically
(`write_atomic`).

>>> import jax, numpy as np
>>> [path_str(p) for p, _ in jax.tree_util.tree_flatten_with_path({"a": [np.zeros(2)]})[0]]
['a/0']
>>> len(tensor_digest({"a/0": np.zeros(2, np.float32)}))
64
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import tempfile

import numpy as np


def path_str(path) -> str:
    """'/'-joined names of a pytree key path: ('params', 'Dense_0', 'kernel') -> 'params/Dense_0/kernel'."""
    parts = []
    for k in path:
        for attr in ("key", "name", "idx"):
            if hasattr(k, attr):
                parts.append(str(getattr(k, attr)))
                break
        else:
            parts.append(str(k))
    return "/".join(parts)


def tensor_digest(tensors: dict[str, np.ndarray]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes (names sorted)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        a = tensors[name]
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def write_atomic(path: pathlib.Path, blob: bytes) -> None:
    """Writes `blob` to `path` through a temporary file in the same directory, fsynced and renamed
    into place, then fsyncs the directory: a crash leaves the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
