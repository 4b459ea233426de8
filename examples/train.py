#!/usr/bin/python3
"""A training pipeline on pseudonymous features: streams FetchFeatures for
the 'training' purpose, one-hot encodes the tokens, trains a propensity
model for 'converted' and prints its ROC AUC on a held-out split.

It never sees an id or a plaintext value: only pseudonyms and tokens.
"""
import argparse
import time

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import OneHotEncoder

from vaultapi import Vault

LABEL = "converted"
FEATURES = ["age", "device", "income_band", "purchases_90d", "last_purchase",
            "email_opt_in"]


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--addr", default="127.0.0.1:50051")
    ap.add_argument("--token-file", default="var/vault/dev-token")
    ap.add_argument("--dataset", default=f"propensity-{int(time.time())}")
    args = ap.parse_args()
    vault = Vault(args.addr, args.token_file)
    spec = {a.attribute: a for a in vault.feature_spec("training").attributes}
    assert spec[LABEL].kind == "bool"

    rows, labels, t0 = [], [], time.monotonic()
    for names, batch in vault.fetch_features("training", args.dataset,
                                             FEATURES + [LABEL]):
        li = names.index(LABEL)
        for r in batch:
            if r.tokens[li] == 0:        # no label: not usable for training
                continue
            labels.append(1 if r.tokens[li] == 2 else 0)
            rows.append([t for i, t in enumerate(r.tokens) if i != li])
    elapsed = time.monotonic() - t0
    X = OneHotEncoder(handle_unknown="ignore").fit_transform(np.array(rows, dtype=np.int64))
    y = np.array(labels)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, random_state=0,
                                          stratify=y)
    model = LogisticRegression(max_iter=2000).fit(Xtr, ytr)
    auc = roc_auc_score(yte, model.predict_proba(Xte)[:, 1])
    print(f"streamed {len(rows)} rows in {elapsed:.2f}s; "
          f"positives {y.mean():.1%}; ROC AUC {auc:.3f}")


if __name__ == "__main__":
    main()
