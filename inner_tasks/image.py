"""Image classifiers on Fashion-MNIST (or sklearn digits): MLPs and a small convnet.

>>> import jax
>>> task = MLPSpec(dataset="digits", width=32).make()
>>> params = task.init(jax.random.key(0))
>>> batch = task.sample_batch(jax.random.key(1), "train")
>>> batch["x"].shape, batch["y"].shape
((128, 64), (128,))
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp

from inner_tasks import datasets, models
from inner_tasks.base import TaskSpec, check_choice, check_positive


@dataclasses.dataclass(frozen=True)
class _ImageSpec(TaskSpec):
    """Shared data handling: uint8 images on device, normalized per batch."""

    dataset: str = "fashion_mnist"
    resolution: int = 8
    batch_size: int = 128
    activation: str = "relu"
    parametrization: str = "mup"
    data_dir: str | None = None
    out_dim: ClassVar[int] = datasets.NUM_CLASSES

    def __post_init__(self):
        check_choice("dataset", self.dataset, datasets.IMAGE_DATASETS)
        if self.resolution not in datasets.RESOLUTIONS[self.dataset]:
            raise ValueError(
                f"dataset {self.dataset!r} comes at resolutions {datasets.RESOLUTIONS[self.dataset]}, "
                f"not {self.resolution}"
            )
        check_choice("activation", self.activation, models.ACTIVATIONS)
        check_choice("parametrization", self.parametrization, models.PARAMETRIZATIONS)
        check_positive(batch_size=self.batch_size)

    def load_data(self):
        return datasets.image_data(self.dataset, self.resolution, self.data_dir)

    def _images(self, data, key, split):
        x, y = data[f"{split}_x"], data[f"{split}_y"]
        idx = jax.random.randint(key, (self.batch_size,), 0, x.shape[0])
        x_BxHxW = (x[idx].astype(jnp.float32) / 255.0 - data["mean"]) / data["std"]
        return x_BxHxW, y[idx].astype(jnp.int32)


@dataclasses.dataclass(frozen=True)
class MLPSpec(_ImageSpec):
    """MLP classifier: `depth` hidden layers of `width` units on flattened images."""

    name: ClassVar[str] = "mlp"
    width: int = 128
    depth: int = 2

    def __post_init__(self):
        super().__post_init__()
        check_positive(width=self.width, depth=self.depth)

    @property
    def in_dim(self) -> int:
        return self.resolution * self.resolution

    def init(self, inst, key):
        del inst
        return models.init_mlp(key, self)

    def logits(self, inst, params, batch):
        del inst
        return models.apply_mlp(params, batch["x"], self)

    def loss(self, inst, params, batch):
        return models.cross_entropy(self.logits(inst, params, batch), batch["y"])

    def sample_batch(self, data, inst, key, split):
        del inst
        x, y = self._images(data, key, split)
        return {"x": x.reshape(x.shape[0], -1), "y": y}

    def meta(self):
        return models.meta_mlp(self)


@dataclasses.dataclass(frozen=True)
class ConvSpec(_ImageSpec):
    """Convnet: `depth` stride-2 3×3 convolutions of `channels`, global average pool, linear readout."""

    name: ClassVar[str] = "conv"
    channels: int = 16
    depth: int = 2
    kernel: int = 3

    def __post_init__(self):
        super().__post_init__()
        check_positive(channels=self.channels, depth=self.depth, kernel=self.kernel)
        if 2**self.depth > self.resolution:
            raise ValueError(f"depth={self.depth} stride-2 convs shrink a {self.resolution}px image below 1px")

    def init(self, inst, key):
        del inst
        return models.init_conv(key, self)

    def logits(self, inst, params, batch):
        del inst
        return models.apply_conv(params, batch["x"], self)

    def loss(self, inst, params, batch):
        return models.cross_entropy(self.logits(inst, params, batch), batch["y"])

    def sample_batch(self, data, inst, key, split):
        del inst
        x, y = self._images(data, key, split)
        return {"x": x[..., None], "y": y}

    def meta(self):
        return models.meta_conv(self)
