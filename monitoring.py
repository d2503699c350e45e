"""TensorBoard monitoring of a meta-training run, written with tensorboardX: the `Writer` and
`flat_hparams`. What is logged comes from elsewhere (the held-out evaluation and its
learning-curve figure are `evaluation.heldout`).

View a run with `tensorboard --logdir WORKDIR` (binds to localhost). Metrics arrive as flat
dicts with slash-separated keys; arrays stay on device until `scalars` fetches them.

>>> import tempfile, numpy as np
>>> with tempfile.TemporaryDirectory() as d:
...     w = Writer(d)
...     w.scalars(3, {"meta/loss": np.float32(0.5)})
...     w.close()
"""

from __future__ import annotations

import json
from typing import Any, Mapping

import jax
import numpy as np
import tensorboardX


class _Discard:
    """Takes any SummaryWriter call and does nothing (the writers of non-primary hosts)."""

    def __getattr__(self, name: str):
        return lambda *args, **kwargs: None


class Writer:
    """A tensorboardX SummaryWriter with the few calls meta-training needs.

    `purge_step` (on resume) drops events a previous process wrote at or after that step;
    `enabled=False` writes nothing (every host but the first of a multi-host run)."""

    def __init__(self, logdir: str, purge_step: int | None = None, enabled: bool = True):
        self._w = tensorboardX.SummaryWriter(logdir, purge_step=purge_step) if enabled else _Discard()

    def scalars(self, step: int, metrics: Mapping[str, Any]) -> None:
        for k, v in jax.device_get(dict(metrics)).items():
            self._w.add_scalar(k, float(np.asarray(v)), step)

    def histogram(self, step: int, tag: str, values: Any) -> None:
        values = np.asarray(jax.device_get(values), np.float64).ravel()
        values = values[np.isfinite(values)]
        if values.size:
            self._w.add_histogram(tag, values, step)

    def figure(self, step: int, tag: str, fig) -> None:
        self._w.add_figure(tag, fig, step, close=True)

    def text(self, tag: str, text: str, step: int = 0) -> None:
        self._w.add_text(tag, text, step)

    def hparams(self, hparams: Mapping[str, Any], metrics: Mapping[str, float]) -> None:
        """Writes the hparams plugin's record (tensorboardX puts it in a sub-run of the logdir)."""
        clean = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in hparams.items()}
        self._w.add_hparams(clean, {f"hparam/{k}": float(v) for k, v in metrics.items()}, name="hparams")

    def flush(self) -> None:
        self._w.flush()

    def close(self) -> None:
        self._w.close()


def flat_hparams(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config as {"estimator.sigma": 0.01, …}; tuples become their JSON text."""
    out = {}
    for k, v in config.items():
        if isinstance(v, Mapping):
            out.update(flat_hparams(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = json.dumps(list(v)) if isinstance(v, (list, tuple)) else v
    return out
