"""Per-class analysis of the modules experiment (README): test recall and aux kept share per class."""
import sys

import pandas as pd

from sspa_ray.labels import CLASSES
from sspa_ray.specs.ablation import load_ablation

exp = sys.argv[1]
df = pd.read_parquet(f"{exp}/results.parquet")
spec = load_ablation(f"{exp}/spec.yaml")
df = df[df.status == "completed"]
print("| row | n | " + " | ".join(c[:5] for c in CLASSES) + " | macro-F1 |")
print("|:--|--:|" + "--:|" * (len(CLASSES) + 1))
for row, g in df.groupby("row"):
    rec = [100 * g[f"recall.{c}"].mean() for c in CLASSES]
    print(f"| {spec.row_name(row)} | {len(g)} | " + " | ".join(f"{r:.1f}" for r in rec) + f" | {100*g.macro_f1.mean():.1f} |")
print()
print("aux kept per given class (%), SSM rows")
print("| row | " + " | ".join(c[:5] for c in CLASSES) + " | kept | precision | recall | base rate |")
print("|:--|" + "--:|" * (len(CLASSES) + 4))
for row, g in df[df["modules.ssm"]].groupby("row"):
    kept = [100 * g[f"kept.{c}"].mean() for c in CLASSES]
    print(f"| {spec.row_name(row)} | " + " | ".join(f"{k:.0f}" for k in kept)
          + f" | {100*g.clean_share.mean():.1f} | {g.selection_precision.mean():.3f} ± {g.selection_precision.std():.3f}"
          + f" | {g.selection_recall.mean():.3f} ± {g.selection_recall.std():.3f} | {g.aux_base_rate.mean():.3f} |")
