#!/usr/bin/python3
"""Reference figure for `flashstream eval`: a tuned scikit-learn random forest on the
feature rows the C code exports (`flashstream eval MODEL ... --export-csv FILE`:
columns split,y[,mase_scale],features; "train" rows fit, "test" rows score).

Tuning: grid over max_features and min_samples_leaf, chosen on the last 20% of the
training rows (they are in time order), then refit on all training rows.
Usage: tools/compare_sklearn.py FILE.csv {mae|auc} [--seed N]
Needs Debian's python3-sklearn and python3-pandas.
"""
import argparse
import json

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.metrics import mean_absolute_error, roc_auc_score

ap = argparse.ArgumentParser()
ap.add_argument("csv")
ap.add_argument("metric", choices=["mae", "auc"])
ap.add_argument("--seed", type=int, default=1)
a = ap.parse_args()

df = pd.read_csv(a.csv)
scale = df.pop("mase_scale").iloc[0] if "mase_scale" in df else None
tr, te = df[df.split == "train"], df[df.split == "test"]
feats = [c for c in df.columns if c not in ("split", "y")]
X, y, Xt, yt = tr[feats].values, tr.y.values, te[feats].values, te.y.values
clf = a.metric == "auc"


def fit(Xf, yf, mf, leaf):
    cls = RandomForestClassifier if clf else RandomForestRegressor
    m = cls(n_estimators=300, max_features=mf, min_samples_leaf=leaf, n_jobs=-1,
            random_state=a.seed)
    return m.fit(Xf, yf)


def score(m, Xs, ys):
    if clf:
        return -roc_auc_score(ys, m.predict_proba(Xs)[:, 1])
    return mean_absolute_error(ys, m.predict(Xs))


cut = int(len(X) * 0.8)
grid = [(mf, leaf) for mf in (0.2, 0.33, 0.5, 1.0) for leaf in (1, 3, 5, 10, 20)]
best = min(grid, key=lambda g: score(fit(X[:cut], y[:cut], *g), X[cut:], y[cut:]))
model = fit(X, y, *best)
out = {"rows": len(te), "train_rows": len(tr), "max_features": best[0],
       "min_samples_leaf": best[1]}
if clf:
    out["roc_auc"] = round(-score(model, Xt, yt), 4)
else:
    out["mae"] = round(score(model, Xt, yt), 4)
    if scale is not None:
        out["mase"] = round(out["mae"] / scale, 4)
print(json.dumps(out))
