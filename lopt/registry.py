"""The architectures by name: the table that configs and learned-optimizer files name them by.

>>> sorted(ARCHITECTURES)
['adam', 'celo', 'celo2', 'mulo', 'velo']
>>> get_arch("mulo", hidden_size=8).hidden_size
8
"""

from __future__ import annotations

from typing import Any

from lopt.adam import LearnableAdam
from lopt.celo import Celo
from lopt.celo2 import Celo2
from lopt.mulo import MuLO
from lopt.velo import VeLO

ARCHITECTURES = {"mulo": MuLO, "velo": VeLO, "adam": LearnableAdam, "celo": Celo, "celo2": Celo2}


def get_arch(name: str, **config: Any) -> Any:
    """An architecture config by name (see ARCHITECTURES)."""
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; valid: {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[name](**config)
