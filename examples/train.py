#!/usr/bin/env python3
"""A training pipeline on pseudonymous features: streams FetchFeatures for
the 'training' purpose into a labelled DataFrame (the vaultd package),
one-hot encodes it, trains a propensity model for 'converted' and prints
its ROC AUC on a held-out split and its strongest features, by name.

It never sees an id or a plaintext value: only pseudonyms and tokens, and
the labels GetFeatureSpec gives for closed vocabularies and buckets.
With --save DIR the training set is also written as DIR/part-0.csv, which
purge.py keeps clean of consumers deleted later.
"""
import argparse
import pathlib
import time

import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

import vaultd

LABEL = "converted"
FEATURES = ["age", "device", "income_band", "purchases_90d", "last_purchase",
            "email_opt_in"]


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--addr", default="127.0.0.1:50051")
    ap.add_argument("--token-file", default="var/vault/dev-token")
    ap.add_argument("--dataset", default=f"propensity-{int(time.time())}")
    ap.add_argument("--save", type=pathlib.Path, help="write the training set here")
    args = ap.parse_args()
    with vaultd.Client(args.addr, token_file=args.token_file) as vault:
        t0 = time.monotonic()
        df = vault.features("training", args.dataset, FEATURES + [LABEL]).to_pandas()
        elapsed = time.monotonic() - t0
    df = df[df[LABEL].notna()]              # no label: not usable for training
    if args.save:
        args.save.mkdir(parents=True, exist_ok=True)
        df.to_csv(args.save / "part-0.csv", index=False)
    X = pd.get_dummies(df[FEATURES].astype("category"), dummy_na=True)
    y = df[LABEL].astype(bool).to_numpy()
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, random_state=0,
                                          stratify=y)
    model = LogisticRegression(max_iter=2000).fit(Xtr, ytr)
    auc = roc_auc_score(yte, model.predict_proba(Xte)[:, 1])
    top = sorted(zip(model.coef_[0], X.columns), reverse=True)[:3]
    print(f"streamed {len(df)} rows in {elapsed:.2f}s; "
          f"positives {y.mean():.1%}; ROC AUC {auc:.3f}")
    print("strongest features: " + ", ".join(f"{c} ({w:+.2f})" for w, c in top))


if __name__ == "__main__":
    main()
