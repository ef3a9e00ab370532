"""Evaluation metrics (paper section 4.1.2) and the quality of the SSM selection.

Macro averages are taken over the classes that occur in the labels or in the predictions (the
scikit-learn convention); on RAF-DB and CAER-S all seven classes occur, so this is the paper's
1/C sum. A ratio with a zero denominator counts as 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sspa_ray.labels import CLASSES


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros(num.shape, dtype=np.float64), where=den > 0)


def _share(part, whole) -> float:
    return float(part) / float(whole) if whole else 0.0


def classification_metrics(labels: np.ndarray, predictions: np.ndarray, class_names=CLASSES) -> dict:
    """Accuracy, macro precision/recall/F1, per-class figures and the confusion matrix."""
    c = len(class_names)
    labels = np.asarray(labels, dtype=np.int64)
    predictions = np.asarray(predictions, dtype=np.int64)
    confusion = np.bincount(labels * c + predictions, minlength=c * c).reshape(c, c)  # rows: true
    hits = np.diag(confusion).astype(np.float64)
    support, predicted = confusion.sum(axis=1), confusion.sum(axis=0)
    precision, recall = _ratio(hits, predicted), _ratio(hits, support)
    f1 = _ratio(2 * precision * recall, precision + recall)
    present = (support + predicted) > 0
    macro = (lambda v: float(v[present].mean())) if present.any() else (lambda v: 0.0)
    return {
        "accuracy": _share(hits.sum(), labels.size),
        "macro_precision": macro(precision),
        "macro_recall": macro(recall),
        "macro_f1": macro(f1),
        "per_class": {
            name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                   "support": int(support[i])}
            for i, name in enumerate(class_names)
        },
        "confusion": confusion.tolist(),
    }


def selection_metrics(clean: np.ndarray, labels: np.ndarray, true_labels: np.ndarray | None) -> dict:
    """How well the aux samples chosen as clean agree with the target's annotation standard.

    precision: share of the selected aux samples whose label equals the target-standard label;
    recall: share of the agreeing aux samples that were selected; aux_base_rate: share of all aux
    samples that agree (what selecting at random would reach); clean_share: share selected;
    kept_per_class: the share selected of each class of the given labels.
    """
    clean = np.asarray(clean, dtype=bool)
    labels = np.asarray(labels)
    out: dict[str, Any] = {"clean_share": _share(clean.sum(), clean.size)}
    # Per class of the given label: the share kept (what can be seen without ground truth).
    out["kept_per_class"] = {name: _share((clean & (labels == i)).sum(), (labels == i).sum())
                             for i, name in enumerate(CLASSES)}
    if true_labels is not None:
        agree = np.asarray(labels) == np.asarray(true_labels)
        out["precision"] = _share((clean & agree).sum(), clean.sum())
        out["recall"] = _share((clean & agree).sum(), agree.sum())
        out["aux_base_rate"] = _share(agree.sum(), agree.size)
    return out
