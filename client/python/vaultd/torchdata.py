"""A PyTorch IterableDataset over FetchFeatures, sharded by the vault.

Each DataLoader worker (and each distributed rank, when given) opens its own
connection and streams its own shard: the vault splits the consumers into
disjoint shards by their per-purpose stream position, so N workers read N
disjoint parts of the stream instead of each reading all of it and dropping
most. Items are batches: a LongTensor of tokens (rows x attributes) per
FetchFeatures batch, so a DataLoader takes ``batch_size=None``.

Workers must be spawned, not forked: a process that has used gRPC holds its
threads and locks, and a forked child that uses gRPC again can hang (seen
here: a DataLoader with two forked workers hung in one test run of three).
``FeatureDataset.loader(num_workers)`` makes the DataLoader that way.

Category tokens are 63-bit keyed hashes and fit int64; torch has no uint64.
Needs python3-torch (Debian); the rest of the package does not.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from vaultd.client import Client, Settings


class FeatureDataset(IterableDataset):  # type: ignore[type-arg]
    """Batches of purpose's features for dataset; every worker one shard.

    settings: the client's Settings (``client.settings``), from which each
    worker opens its own channel. rank/world_size: this process's place in a
    distributed job (shards = world_size x workers)."""

    def __init__(self, settings: Settings, purpose: str, dataset: str,
                 attributes: Sequence[str], *, batch_size: int = 1000,
                 rank: int = 0, world_size: int = 1,
                 with_pseudonyms: bool = False):
        if not 0 <= rank < world_size:
            raise ValueError("rank: 0 <= rank < world_size")
        self.settings = settings
        self.purpose, self.dataset = purpose, dataset
        self.attributes = list(attributes)
        self.batch_size = batch_size
        self.rank, self.world_size = rank, world_size
        self.with_pseudonyms = with_pseudonyms

    def loader(self, num_workers: int = 0, **kw: Any) -> DataLoader:  # type: ignore[type-arg]
        """A DataLoader over this dataset: batches as the vault sends them,
        workers spawned (see the module's doc)."""
        if num_workers > 0:
            kw.setdefault("multiprocessing_context", "spawn")
            kw.setdefault("persistent_workers", False)
        return DataLoader(self, batch_size=None, num_workers=num_workers, **kw)

    def shard(self) -> tuple[int, int]:
        """(index, count) of the shard the calling worker reads."""
        info = get_worker_info()  # type: ignore[no-untyped-call]
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        return self.rank * nw + wid, self.world_size * nw

    def __iter__(self) -> Iterator[torch.Tensor | tuple[list[str], torch.Tensor]]:
        index, count = self.shard()
        with Client.from_settings(self.settings) as client:
            for b in client.features(self.purpose, self.dataset, self.attributes,
                                     batch_size=self.batch_size,
                                     shard=(index, count) if count > 1 else None):
                t = torch.from_numpy(b.tokens.astype(np.int64))
                yield (b.pseudonym_hex(), t) if self.with_pseudonyms else t
