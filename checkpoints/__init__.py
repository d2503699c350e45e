"""Resumable meta-training state: atomic safetensors checkpoints with JSON metadata (see `store`)."""

from checkpoints.store import CheckpointError, read_meta, restore, save, steps

__all__ = ["CheckpointError", "read_meta", "restore", "save", "steps"]
