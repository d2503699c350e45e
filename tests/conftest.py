"""Shared test settings: strict JAX flags and data fixtures."""

import os

import jax
import pytest

from inner_tasks import datasets

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture(scope="session")
def fashion_mnist_dir():
    """Fashion-MNIST's directory. Missing data fails under CI (which installs it) and skips elsewhere."""
    try:
        return str(datasets.fashion_mnist_dir())
    except datasets.DatasetNotFoundError as e:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(e))
