#!/usr/bin/env python3
"""Keeps a training set clean of deleted consumers: follows the dataset's
deletion feed (WatchDeletions, resumed after the last sequence on a dropped
connection) and removes those pseudonyms' rows from every CSV/JSONL file
under DIR, atomically. Without --follow it purges what was deleted so far
and exits; --after-seq resumes from a sequence kept from an earlier run.
"""
import argparse

import vaultd


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--addr", default="127.0.0.1:50051")
    ap.add_argument("--token-file", default="var/vault/dev-token")
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--dir", required=True, help="the training set's files")
    ap.add_argument("--after-seq", type=int, default=0)
    ap.add_argument("--follow", action="store_true")
    args = ap.parse_args()
    with vaultd.Client(args.addr, token_file=args.token_file) as vault:
        feed = vault.watch_deletions(args.dataset, after_seq=args.after_seq,
                                     follow=args.follow)
        if not args.follow:
            events = list(feed)
            r = vaultd.purge_files(args.dir, events)
            last = events[-1].seq if events else args.after_seq
            print(f"{len(events)} deletions; purged {r.rows_removed} rows from "
                  f"{r.changed} of {r.files} files; resume after seq {last}")
            return
        for e in feed:
            r = vaultd.purge_files(args.dir, [e])
            print(f"seq {e.seq}: purged {r.rows_removed} rows", flush=True)


if __name__ == "__main__":
    main()
