"""Fixed, disjoint train/val/test splits of procedural house seeds.

Each split owns its own block of SPLIT_STRIDE seeds (REFERENCE.md: houses split train:test 10:1;
the default HouseConfig is 100/10/10), so growing one split never changes the houses of another
and no seed can appear in two splits:

    seed(split, i) = base_seed * 3 * SPLIT_STRIDE + SPLIT_INDEX[split] * SPLIT_STRIDE + i

Worked example (base_seed 0): train_0000 is seed 0, val_0000 is 1_000_000, test_0003 is
2_000_003.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from safevla_core.config import HouseConfig
from safevla_core.houses.generator import generate_house

#: Split names and their block index (ours).
SPLIT_INDEX: dict[str, int] = {"train": 0, "val": 1, "test": 2}
#: Seeds per split block (ours: far above any split size we would generate).
SPLIT_STRIDE: int = 1_000_000

_DEFAULT_CFG = HouseConfig()


def _split_size(split: str, cfg: HouseConfig) -> int:
    if split not in SPLIT_INDEX:
        raise ValueError(f"unknown split {split!r}; known: {sorted(SPLIT_INDEX)}")
    size = {"train": cfg.num_train, "val": cfg.num_val, "test": cfg.num_test}[split]
    if size > SPLIT_STRIDE:
        raise ValueError(f"split {split!r} of {size} houses exceeds SPLIT_STRIDE={SPLIT_STRIDE}")
    if cfg.base_seed < 0:
        raise ValueError(f"base_seed must be >= 0, got {cfg.base_seed}")
    return size


def split_seeds(split: str, cfg: HouseConfig = _DEFAULT_CFG) -> list[int]:
    """House seeds of a split, in house-index order.

    Args:
        split: ``"train"``, ``"val"`` or ``"test"``.
        cfg: Split sizes (``num_train``/``num_val``/``num_test``) and ``base_seed``.

    Returns:
        ``cfg.num_<split>`` distinct non-negative seeds, disjoint from the other splits'.

    Raises:
        ValueError: On an unknown split, a split larger than SPLIT_STRIDE or a negative
            base seed.
    """
    size = _split_size(split, cfg)
    first = cfg.base_seed * len(SPLIT_INDEX) * SPLIT_STRIDE + SPLIT_INDEX[split] * SPLIT_STRIDE
    return list(range(first, first + size))


def house_id(split: str, index: int) -> str:
    """The id of house ``index`` of ``split``, e.g. ``"test_0003"``."""
    return f"{split}_{index:04d}"


@lru_cache(maxsize=1024)
def _house_json(split: str, index: int, cfg: HouseConfig) -> str:
    # Cached as an immutable JSON string: every caller gets a fresh dict to mutate.
    seed = split_seeds(split, cfg)[index]
    return json.dumps(generate_house(seed, cfg, house_id=house_id(split, index)))


def load_house(split: str, index: int, cfg: HouseConfig = _DEFAULT_CFG) -> dict[str, Any]:
    """House ``index`` of a split, generated once per process and then served from a cache.

    Args:
        split: ``"train"``, ``"val"`` or ``"test"``.
        index: ``0 <= index < cfg.num_<split>``.
        cfg: Split and generator settings.

    Returns:
        A fresh house dict (safe to mutate) with id like ``"test_0003"``.

    Raises:
        ValueError: On an unknown split or an out-of-range / non-integer index.
    """
    size = _split_size(split, cfg)
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < size:
        raise ValueError(f"index {index!r} out of range for split {split!r} of {size} houses")
    house: dict[str, Any] = json.loads(_house_json(split, index, cfg))
    return house


def load_split(split: str, cfg: HouseConfig = _DEFAULT_CFG) -> list[dict[str, Any]]:
    """All houses of a split, in index order (see :func:`load_house`)."""
    return [load_house(split, i, cfg) for i in range(_split_size(split, cfg))]
