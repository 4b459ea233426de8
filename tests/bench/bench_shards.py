"""What sharding buys a FetchFeatures query, read raw from Python (run by
hand against a loaded vault, e.g. the one scripts/bench fills):

    python bench_shards.py --addr A --token-file F [ATTRIBUTE ...]

Prints the seconds of the whole stream, of one shard of two alone, and of
both shards side by side (two threads, one connection each)."""
import argparse
import threading
import time

import vaultd
from bench_python import raw_stream as stream


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--addr", required=True)
    ap.add_argument("--token-file", required=True)
    ap.add_argument("attributes", nargs="*")
    args = ap.parse_args()
    clients = [vaultd.Client(args.addr, token_file=args.token_file, timeout=600)
               for _ in range(2)]
    tag = str(time.time_ns())
    n, s = stream(clients[0], f"shards-whole-{tag}", args.attributes)
    print(f"whole stream: {n} rows in {s:.2f} s")
    n, s = stream(clients[0], f"shards-one-{tag}", args.attributes, (0, 2))
    print(f"shard 0 of 2 alone: {n} rows in {s:.2f} s")
    out = []
    t0 = time.monotonic()
    threads = [threading.Thread(target=lambda i=i: out.append(stream(
        clients[i], f"shards-both-{tag}", args.attributes, (i, 2))))
        for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(f"both shards side by side: {sum(n for n, _ in out)} rows in "
          f"{time.monotonic() - t0:.2f} s")


if __name__ == "__main__":
    main()
