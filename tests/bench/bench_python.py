"""The Python package's benchmark rows (scripts/bench): rows per second of
FetchFeatures read raw (protobuf batches off the wire, nothing converted)
against the same stream turned into one labelled DataFrame (to_pandas), and
the PyTorch example (examples/torch_train.py) with two DataLoader workers,
each on its own shard, against none. Each figure is the median of --runs.

    python bench_python.py --addr A --token-file F [--runs 3]

Prints one line per figure: name, value (rows/s), rows.
"""
import argparse
import pathlib
import re
import statistics
import subprocess
import sys
import time

import vaultd
from vaultd._pb import vault_pb2 as pb

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"


def raw_stream(client, dataset, attributes=(), shard=(0, 0)):
    """(rows, seconds) of one FetchFeatures stream read raw, nothing
    converted; shard is (index, count), (0, 0) for the whole stream."""
    req = pb.FetchFeaturesRequest(purpose="training", dataset_id=dataset,
                                  attributes=attributes, batch_size=2000,
                                  shard_index=shard[0], shard_count=shard[1])
    t0, n = time.monotonic(), 0
    for b in client._fetch(req, None):
        n += len(b.rows)
    return n, time.monotonic() - t0


def to_pandas(client, dataset):
    t0 = time.monotonic()
    df = client.features("training", dataset, batch_size=2000).to_pandas()
    return len(df), time.monotonic() - t0


def torch_example(args, workers, dataset):
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "torch_train.py"), "--addr", args.addr,
         "--token-file", args.token_file, "--workers", str(workers),
         "--dataset", dataset], capture_output=True, text=True, check=True).stdout
    m = re.search(r"trained on (\d+) rows in ([0-9.]+)s", out)
    if not m:
        raise SystemExit(f"bench_python: unexpected output: {out}")
    return int(m.group(1)), float(m.group(2))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--addr", required=True)
    ap.add_argument("--token-file", required=True)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    with vaultd.Client(args.addr, token_file=args.token_file, timeout=600) as c:
        figures = {
            "python-raw-stream": lambda i: raw_stream(c, f"py-bench-raw-{i}"),
            "python-to-pandas": lambda i: to_pandas(c, f"py-bench-pandas-{i}"),
            "torch-workers-0": lambda i: torch_example(args, 0, f"py-bench-t0-{i}"),
            "torch-workers-2": lambda i: torch_example(args, 2, f"py-bench-t2-{i}"),
        }
        results = {k: [] for k in figures}
        for i in range(args.runs):        # interleaved: drift hits all alike
            for name, run in figures.items():
                results[name].append(run(i))
    for name, rs in results.items():
        rate = statistics.median(n / s for n, s in rs)
        print(f"{name} {rate:.0f} {rs[0][0]}")


if __name__ == "__main__":
    main()
