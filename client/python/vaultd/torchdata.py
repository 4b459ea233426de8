"""A PyTorch IterableDataset over FetchFeatures, sharded by the vault.

Each DataLoader worker (and each distributed rank, when given) opens its own
connection and streams its own shard: the vault splits the consumers into
disjoint shards by their per-purpose stream position, so N workers read N
disjoint parts of the stream instead of each reading all of it and dropping
most. Items are batches: a LongTensor of tokens (rows x attributes) per
FetchFeatures batch, so a DataLoader takes ``batch_size=None``.

How workers start: gRPC does not survive a fork. A forked child of a
process that has opened a channel can hang in gRPC or fail to connect
(seen here: with a Client open, two forked workers hung in one test run of
three; with every channel closed, the workers could not connect and the
parent's own later calls timed out). ``FeatureDataset.loader()`` therefore
forks its workers only when this process has never opened a vaultd channel
and has no other thread at the moment they start, and spawns them
otherwise. Spawning costs each worker a fresh interpreter and ``import
torch`` (about 1.1 s here, against about 2 s for a 100k-row stream), so
give the dataset ``Settings.resolve(...)``, not a Client's settings, in the
process that trains, as examples/torch_train.py does. A process that uses
gRPC by other means should pass ``multiprocessing_context="spawn"``.

Category tokens are 63-bit keyed hashes and fit int64; torch has no uint64.
Needs python3-torch (Debian); the rest of the package does not.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from vaultd import client
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
        """A DataLoader over this dataset: batches as the vault sends them;
        workers forked when start_method() finds that safe, spawned
        otherwise, unless multiprocessing_context is given. It knows only
        of vaultd's own channels: a process that uses gRPC by other means
        must pass multiprocessing_context="spawn"."""
        if num_workers > 0 and "multiprocessing_context" not in kw:
            return _Loader(self, batch_size=None, num_workers=num_workers, **kw)
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


def start_method() -> str:
    """"fork" when this process has never opened a vaultd channel and has
    no thread but the caller's (Linux: /proc/self/task), so a forked worker
    inherits neither gRPC's state nor a lock another thread held; "spawn"
    otherwise, and where it cannot tell."""
    if client.channel_opened or not sys.platform.startswith("linux"):
        return "spawn"
    try:
        return "fork" if len(os.listdir("/proc/self/task")) == 1 else "spawn"
    except OSError:
        return "spawn"


class _Loader(DataLoader):  # type: ignore[type-arg]
    """Picks the workers' start method when they start (each iteration),
    not when the loader is made: a channel opened in between counts."""

    def __iter__(self) -> Any:
        self.multiprocessing_context = start_method()
        return super().__iter__()
