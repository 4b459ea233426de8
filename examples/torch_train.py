#!/usr/bin/env python3
"""The same propensity model in PyTorch, fed by a DataLoader whose workers
each stream their own shard of the features (FetchFeatures' shard_index and
shard_count): with --workers N the vault splits the consumers N ways, so no
worker reads another's rows. Prints rows, seconds and the final loss.
"""
import argparse
import time

import torch

import vaultd
from vaultd.torchdata import FeatureDataset, start_method

LABEL = "converted"
FEATURES = ["age", "device", "income_band", "purchases_90d", "last_purchase",
            "email_opt_in"]
BUCKETS = 4096          # tokens hashed into an embedding table


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--addr", default="127.0.0.1:50051")
    ap.add_argument("--token-file", default="var/vault/dev-token")
    ap.add_argument("--dataset", default=f"propensity-torch-{int(time.time())}")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=2000)
    args = ap.parse_args()
    # Settings, not a Client: no channel in this process, so the loader may
    # fork its workers instead of spawning them (vaultd.torchdata).
    settings = vaultd.Settings.resolve(args.addr, token_file=args.token_file)
    ds = FeatureDataset(settings, "training", args.dataset, FEATURES + [LABEL],
                        batch_size=args.batch_size)
    torch.manual_seed(0)
    emb = torch.nn.EmbeddingBag(BUCKETS * len(FEATURES), 1, mode="sum")
    opt = torch.optim.Adam(emb.parameters(), lr=0.05)
    offsets = torch.arange(len(FEATURES)) * BUCKETS
    started = start_method() if args.workers else "in process"
    t0, rows, loss = time.monotonic(), 0, torch.tensor(0.0)
    for _ in range(args.epochs):
        for batch in ds.loader(args.workers):
            y = batch[:, -1]
            keep = y != 0                       # no label: not usable
            x = batch[keep, :-1].remainder(BUCKETS) + offsets
            target = (y[keep] == 2).float()
            logit = emb(x).squeeze(1)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logit, target)
            opt.zero_grad()
            loss.backward()
            opt.step()
            rows += int(keep.sum())
    elapsed = time.monotonic() - t0
    print(f"workers {args.workers} ({started}): trained on {rows} rows in {elapsed:.2f}s; "
          f"loss {loss.item():.3f}")


if __name__ == "__main__":
    main()
