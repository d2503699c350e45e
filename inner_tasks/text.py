"""Byte-level transformer language model on a text corpus already on disk.

The default corpus is the Python standard library's own source files; `text_dir` (or
$LOPT_TEXT_DIR) points at any directory of text instead.

>>> import jax
>>> task = LMSpec(width=32, depth=1, num_heads=2, context=16, batch_size=4).make()
>>> task.sample_batch(jax.random.key(0), "train")["tokens"].shape
(4, 17)
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp

from inner_tasks import datasets, models
from inner_tasks.base import TaskSpec, check_choice, check_positive


@dataclasses.dataclass(frozen=True)
class LMSpec(TaskSpec):
    """Pre-LayerNorm causal transformer over bytes; loss is mean next-byte cross-entropy (nats)."""

    name: ClassVar[str] = "lm"
    width: int = 64
    depth: int = 2
    num_heads: int = 4
    context: int = 64
    batch_size: int = 16
    parametrization: str = "mup"
    text_dir: str | None = None
    max_bytes: int = 16 << 20
    vocab: ClassVar[int] = 256

    def __post_init__(self):
        check_positive(
            width=self.width, depth=self.depth, num_heads=self.num_heads, context=self.context,
            batch_size=self.batch_size, max_bytes=self.max_bytes,
        )
        if self.width % self.num_heads:
            raise ValueError(f"width={self.width} is not divisible by num_heads={self.num_heads}")
        check_choice("parametrization", self.parametrization, models.PARAMETRIZATIONS)

    def load_data(self):
        data = datasets.text_data(self.text_dir, self.max_bytes)
        shortest = min(int(v.shape[0]) for v in data.values())
        if shortest <= self.context + 1:
            raise ValueError(f"context={self.context} does not fit a corpus split of {shortest} bytes")
        return data

    def init(self, inst, key):
        del inst
        return models.init_transformer(key, self)

    def logits(self, inst, params, batch):
        del inst
        return models.apply_transformer(params, batch["tokens"][:, :-1].astype(jnp.int32), self)

    def loss(self, inst, params, batch):
        return models.cross_entropy(self.logits(inst, params, batch), batch["tokens"][:, 1:])

    def sample_batch(self, data, inst, key, split):
        del inst
        stream = data[split]
        starts = jax.random.randint(key, (self.batch_size,), 0, stream.shape[0] - self.context - 1)
        window = lambda s: jax.lax.dynamic_slice(stream, (s,), (self.context + 1,))
        return {"tokens": jax.vmap(window)(starts)}

    def meta(self):
        return models.meta_transformer(self)
