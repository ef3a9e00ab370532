"""Datasets in their official layouts, decoded once per node into a shared uint8 cache.

``load_joint_data(cfg)`` is the one entry point of the engine: the target's train and test
splits plus a seeded, class-stratified share of the auxiliary train split. ``--target synthetic``
generates the synthetic benchmark on first use and reads it through the same loaders.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np

from sspa_ray.config import Config
from sspa_ray.data import affectnet, caers, rafdb, synthetic
from sspa_ray.data._decode import decode_listing
from sspa_ray.data._listing import Listing
from sspa_ray.data.cache import cached_images
from sspa_ray.errors import DataError
from sspa_ray.labels import CLASSES, NUM_CLASSES

__all__ = [
    "Split", "JointData", "load_joint_data", "load_split", "check_dataset", "read_listing", "data_root",
    "configured_root", "official_size", "stratified_subset",
]

READERS: dict[str, ModuleType] = {"rafdb": rafdb, "affectnet": affectnet, "caers": caers}


@dataclass
class Split:
    images: np.ndarray  # uint8 [N, H, W, 3], usually a read-only np.memmap of the cache
    labels: np.ndarray  # int64 [N], canonical class indices (sspa_ray.labels.CLASSES)
    paths: list[str]    # dataset-relative paths, written to selection.csv
    valence_arousal: np.ndarray | None = None  # float32 [N, 2] in [-1, 1] (AffectNet), else None

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class JointData:
    target_train: Split
    aux_train: Split | None             # None when data.aux == "none" or data.aux_ratio == 0
    test: Split                         # the target's test split (RAF-DB test, CAER-S test)
    aux_true_labels: np.ndarray | None  # int64 [N_aux], labels under the target's standard (synthetic only)
    # float32 [N_target, 2], the target train split's true valence and arousal (synthetic only), to
    # measure pseudo values predicted for it: RAF-DB and CAER-S carry none.
    target_true_valence_arousal: np.ndarray | None = None


def configured_root(root: str | os.PathLike | None) -> str | os.PathLike | None:
    """The data root that is asked for, `root` else $SSPA_DATA_ROOT, whether it exists or not."""
    return root or os.environ.get("SSPA_DATA_ROOT") or None


def official_size(dataset: str, split: str) -> int:
    """Images in one split of the full dataset as published, for plans made without the data."""
    return READERS[dataset].OFFICIAL_SIZES[split]


def data_root(root: str | os.PathLike | None) -> Path:
    """The folder holding rafdb/, affectnet/ and caers/: `root`, else $SSPA_DATA_ROOT."""
    root = configured_root(root)
    if not root:
        raise DataError(
            "no data root: pass --data-root DIR (or set data.root, or SSPA_DATA_ROOT) pointing at the folder "
            "that holds rafdb/, affectnet/ and caers/"
        )
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DataError(f"data root {path} is not a folder; fix --data-root / data.root / SSPA_DATA_ROOT")
    return path


def read_listing(dataset: str, split: str, root: str | os.PathLike) -> Listing:
    """The files, labels and face boxes of one split, without decoding anything."""
    if dataset not in READERS:
        raise DataError(f"unknown dataset '{dataset}': expected one of {', '.join(READERS)}")
    reader = READERS[dataset]
    if split not in reader.SPLITS:
        raise DataError(f"{dataset} has no split '{split}': expected one of {', '.join(reader.SPLITS)}")
    return reader.read(Path(root) / dataset, split)


def load_split(dataset: str, split: str, root: str | os.PathLike, image_size: int, progress: bool = True) -> Split:
    """One split, decoded at `image_size` (from the node's cache when it is there)."""
    return _decoded(read_listing(dataset, split, root), image_size, progress)


def _decoded(listing: Listing, image_size: int, progress: bool) -> Split:
    return Split(images=cached_images(listing, image_size, progress=progress), labels=listing.labels, paths=listing.paths,
                 valence_arousal=listing.valence_arousal)


def stratified_subset(labels: np.ndarray, ratio: float, seed: int) -> np.ndarray:
    """Sorted indices of a seeded share `ratio` of each class (at least one sample of a present class)."""
    rng = np.random.default_rng(seed)
    chosen = []
    for cls in range(NUM_CLASSES):
        members = np.flatnonzero(labels == cls)
        if len(members):
            take = max(1, int(np.floor(ratio * len(members) + 0.5)))
            chosen.append(rng.permutation(members)[:take])
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


def _subset(split: Split, index: np.ndarray) -> Split:
    if len(index) == len(split):
        return split  # the whole split: keep the shared memory map, copy nothing
    return Split(
        images=np.ascontiguousarray(split.images[index]),
        labels=split.labels[index],
        paths=[split.paths[i] for i in index],
        valence_arousal=None if split.valence_arousal is None else split.valence_arousal[index],
    )


def load_joint_data(cfg: Config, *, progress: bool = True) -> JointData:
    """Target train + aux share + target test, as `cfg` asks."""
    size = cfg.data.image_size
    if cfg.data.is_synthetic:
        root = synthetic.ensure(cfg.data.synthetic_seed, cfg.data.synthetic_scale, progress=progress)
        target = "rafdb"  # the synthetic target is written in RAF-DB's layout, its aux in AffectNet's
    else:
        root, target = data_root(cfg.data.root), cfg.data.target
    # Read (and so validate) every label file first: a malformed line or a missing column in the
    # aux CSV is reported before minutes of decoding the target, not after.
    listings = [read_listing(target, "train", root), read_listing(target, "test", root)]
    if cfg.data.uses_aux:
        listings.append(read_listing(cfg.data.aux, "train", root))
    target_train, test, *aux = (_decoded(listing, size, progress) for listing in listings)
    aux_train = aux_true = target_va = None
    if cfg.data.is_synthetic:
        target_va = synthetic.true_valence_arousal(root, target_train.paths)
    if cfg.data.uses_aux:
        full = aux[0]
        aux_train = _subset(full, stratified_subset(full.labels, cfg.data.aux_ratio, cfg.train.seed))
        if cfg.data.is_synthetic:
            truth = synthetic.read_ground_truth(root)
            missing = [p for p in aux_train.paths if p not in truth]
            if missing:
                raise DataError(f"{root / synthetic.GROUND_TRUTH} has no row for {missing[0]}; delete {root} to regenerate it")
            aux_true = np.array([truth[p] for p in aux_train.paths], dtype=np.int64)
    return JointData(target_train=target_train, aux_train=aux_train, test=test, aux_true_labels=aux_true,
                     target_true_valence_arousal=target_va)


def check_dataset(dataset: str, root: str | os.PathLike | None, *, progress: bool = True) -> dict:
    """Class counts per split, dropped rows, problems and (AffectNet) the ranges of valence and arousal
    per split; every image is decoded once to find bad ones.

    Structural problems (a missing folder, a malformed line, a missing column) and unreadable
    images raise DataError naming the file; softer findings are listed under "problems".
    """
    root = data_root(root)
    if dataset not in READERS:
        raise DataError(f"unknown dataset '{dataset}': expected one of {', '.join(READERS)}")
    report: dict = {"dataset": dataset, "root": str(root / dataset)}
    dropped, problems, bad, affect = {}, [], [], {}
    for split in READERS[dataset].SPLITS:
        listing = read_listing(dataset, split, root)
        counts = np.bincount(listing.labels, minlength=NUM_CLASSES)
        report[split] = {name: int(n) for name, n in zip(CLASSES, counts, strict=True)}
        dropped[split] = listing.dropped
        if listing.valence_arousal is not None:
            affect[split] = _ranges(listing.valence_arousal)
        problems += listing.problems
        problems += [f"{split}: no images of class {name}" for name, n in report[split].items() if n == 0]
        # A small decode size is enough to prove each file is readable; JPEGs decode at 1/8 scale.
        for _, result in decode_listing(listing, 16, label=f"checking {dataset}/{split}", progress=progress):
            if isinstance(result, DataError):
                bad.append(str(result))
    if bad:
        more = f" (and {len(bad) - 1} more unreadable images)" if len(bad) > 1 else ""
        raise DataError(bad[0] + more)
    report["dropped"] = dropped
    if affect:
        report["valence_arousal"] = affect
    report["problems"] = problems
    return report


def _ranges(valence_arousal: np.ndarray) -> dict:
    """min, max and mean of valence and of arousal (kept rows: all in [-1, 1])."""
    return {
        name: {"min": float(column.min()), "max": float(column.max()), "mean": float(column.mean())}
        for name, column in zip(("valence", "arousal"), valence_arousal.T.astype(np.float64), strict=True)
    }
