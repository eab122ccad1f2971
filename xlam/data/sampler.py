"""A balanced, deterministic, rank-aware and resumable multi-source sampler.

The sampler plans the whole run up front: source ``s`` delivers ``planned[s]`` samples
(``size × epochs``). Each source's samples are spread evenly over the stream (stride
scheduling), so sources interleave smoothly and every source's total is exact. Within a
source, each pass over the data is a fresh permutation seeded by ``(seed, source, pass)``;
a fractional last pass takes a prefix of its permutation, so nothing repeats within it.

Global stream position ``p`` belongs to rank ``p % world_size``; the state is one integer
(samples consumed per rank), so restoring it costs the same at any point of the run.
No Lightning imports here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np


def _seed(*parts: object) -> int:
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


@dataclass(frozen=True)
class SampleRef:
    """A pointer into the data: which source, which record, and where in the stream."""

    source: str
    index: int
    position: int


class BalancedSampler:
    """Interleave several sources by plan.

    Args:
        sizes: Number of records per source.
        planned: Number of samples each source delivers over the run.
        seed: Base seed.
        rank: This process's rank.
        world_size: Number of data-parallel ranks.
    """

    def __init__(
        self,
        sizes: dict[str, int],
        planned: dict[str, int],
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} not in [0, {world_size})")
        for name, n in planned.items():
            if n > 0 and sizes.get(name, 0) <= 0:
                raise ValueError(f"source {name!r} plans {n} samples but has no records")
        self.sizes = dict(sizes)
        self.planned = {k: int(v) for k, v in planned.items() if v > 0}
        self.names = sorted(self.planned)
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.consumed = 0
        self._order: np.ndarray | None = None
        self._perm_cache: dict[tuple[str, int], np.ndarray] = {}

    @property
    def total(self) -> int:
        """Samples in the whole stream (all ranks)."""
        return sum(self.planned.values())

    def __len__(self) -> int:
        """Samples this rank sees (the stream is cut to a multiple of the world size)."""
        return self.total // self.world_size

    def _build_order(self) -> np.ndarray:
        # Stride scheduling: the k-th sample of a source with c samples sits at (k + 0.5) / c.
        keys, owners = [], []
        for s, name in enumerate(self.names):
            c = self.planned[name]
            keys.append((np.arange(c, dtype=np.float64) + 0.5) / c)
            owners.append(np.full(c, s, dtype=np.int32))
        key = np.concatenate(keys)
        owner = np.concatenate(owners)
        order = np.lexsort((owner, key))
        src = owner[order]
        # The k-th occurrence of a source in the stream is its k-th sample.
        occ = np.empty_like(src, dtype=np.int64)
        for s in range(len(self.names)):
            where = np.nonzero(src == s)[0]
            occ[where] = np.arange(len(where))
        return np.stack([src.astype(np.int64), occ], axis=1)

    def _perm(self, name: str, epoch: int) -> np.ndarray:
        key = (name, epoch)
        if key not in self._perm_cache:
            rng = np.random.default_rng(_seed(self.seed, name, epoch))
            if len(self._perm_cache) > 64:
                self._perm_cache.clear()
            self._perm_cache[key] = rng.permutation(self.sizes[name])
        return self._perm_cache[key]

    def ref(self, position: int) -> SampleRef:
        """Resolve a global stream position to a record."""
        if self._order is None:
            self._order = self._build_order()
        s, k = self._order[position]
        name = self.names[int(s)]
        size = self.sizes[name]
        epoch, j = divmod(int(k), size)
        return SampleRef(name, int(self._perm(name, epoch)[j]), position)

    def __iter__(self) -> Iterator[SampleRef]:
        n = len(self)
        while self.consumed < n:
            pos = self.consumed * self.world_size + self.rank
            yield self.ref(pos)
            self.consumed += 1

    def state_dict(self) -> dict[str, int]:
        return {"consumed": self.consumed, "seed": self.seed, "world_size": self.world_size}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state.get("world_size", self.world_size) != self.world_size:
            raise ValueError(
                f"sampler state was saved with world_size={state['world_size']}, "
                f"now {self.world_size}: the stream would not resume exactly"
            )
        if state.get("seed", self.seed) != self.seed:
            raise ValueError(f"sampler state has seed={state['seed']}, config has {self.seed}")
        self.consumed = int(state["consumed"])
