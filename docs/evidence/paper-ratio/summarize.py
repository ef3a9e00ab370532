import sys

import pandas as pd

for name in sys.argv[1:]:
    try:
        r = pd.read_parquet(f"/work/evidence/{name}/results.parquet")
    except Exception as e:
        print(name, "no results", e)
        continue
    print(f"=== {name}: {len(r)} trials, status {r['status'].value_counts().to_dict()}")
    cols = [c for c in ("selection_precision", "selection_recall", "clean_share", "aux_base_rate", "relabelled_share",
                        "relabel_precision", "relabel_broken", "low_importance_noise", "pseudo_va_rmse", "aux_label_accuracy") if c in r]
    g = r.groupby("row")
    print(g[["accuracy", "macro_f1", *cols]].agg(["mean", "std"]).round(4).to_string())
