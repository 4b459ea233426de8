#!/usr/bin/python3
"""Loads synthetic marketing consumers into a vault through the API.

Realistic-looking distributions: age, zip, device (by age), income band (by
age), purchases in the last 90 days (by income), last purchase date (by
activity), and a 'converted' label that depends on them plus noise.
"""
import argparse
import concurrent.futures
import datetime
import math
import random

import vaultd

DEVICES = ["mobile", "desktop", "tablet", "tv", "other"]
BANDS = ["low", "lower_middle", "middle", "upper_middle", "high"]
ZIPS = [f"{z:05d}" for z in random.Random(7).sample(range(1000, 99999), 300)]


def consumer(rng, i):
    age = int(min(90, max(18, rng.gauss(41, 14))))
    young = age < 35
    device = rng.choices(DEVICES, weights=[6, 2, 1, 1, 0.3] if young else [3, 4, 2, 1, 0.3])[0]
    band_i = min(4, max(0, int(rng.gauss(1.5 + (age - 18) / 30, 1.1))))
    purchases = min(100, int(rng.expovariate(1 / (1 + band_i * 1.5))))
    days_ago = int(rng.expovariate(1 / (30 + 300 / (1 + purchases))))
    last = datetime.date.today() - datetime.timedelta(days=min(days_ago, 1500))
    score = (-2.2 + 0.35 * min(purchases, 8) + 0.45 * band_i
             + (0.6 if device == "mobile" else 0) - 0.012 * abs(age - 38)
             + (0.5 if days_ago < 30 else 0) + rng.gauss(0, 0.8))
    converted = rng.random() < 1 / (1 + math.exp(-score))
    return f"cust-{i:07d}@example.test", {
        "email": f"cust-{i:07d}@example.test", "zip": rng.choice(ZIPS),
        "age": str(age), "device": device, "income_band": BANDS[band_i],
        "purchases_90d": str(purchases), "last_purchase": last.isoformat(),
        "email_opt_in": "true" if rng.random() < 0.6 else "false",
        "converted": "true" if converted else "false",
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--addr", default="127.0.0.1:50051")
    ap.add_argument("--token-file", default="var/vault/dev-token")
    ap.add_argument("--consumers", type=int, default=5000)
    ap.add_argument("--opt-out-rate", type=float, default=0.05,
                    help="share of consumers who opt out of training")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=8)
    args = ap.parse_args()
    vault = vaultd.Client(args.addr, token_file=args.token_file)
    rng = random.Random(args.seed)
    people = [consumer(rng, i) for i in range(args.consumers)]

    def load(item):
        cid, attrs = item
        vault.put(cid, attrs)
        if rng.random() < args.opt_out_rate:
            vault.set_consent(cid, "training", granted=False, source="user")

    with vault, concurrent.futures.ThreadPoolExecutor(args.threads) as pool:
        list(pool.map(load, people))
    print(f"loaded {len(people)} consumers")


if __name__ == "__main__":
    main()
