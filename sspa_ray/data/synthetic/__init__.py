"""The synthetic FER benchmark: drawn faces, two annotation standards, known ground truth.

Every face has six continuous expression parameters (mouth curvature and opening, brow raise
and tilt, eye opening, nose wrinkle). A sample is drawn from a latent expression with a random
intensity, plus a per-identity resting face and noise (``_faces``), and rendered (``_render``) with
varied identity, pose, scale, lighting, background, noise and occlusion.

Labels come from an *annotation standard* (``_annotation``): nearest expression prototype in
parameter space, as seen by a slightly noisy annotator. The target set ("rafdb") is labelled under
the target's standard. The auxiliary set ("affectnet") is drawn in another style (a domain shift) and
labelled under another standard: shifted class boundaries plus systematic confusions of
fear -> surprise, disgust -> anger and sadness -> neutral. The noiseless target standard
applied to each auxiliary sample gives its true label, written to ``ground_truth.csv``.

Valence and arousal are a fixed function of the expression parameters (``valence_arousal``). The
aux set's CSV carries them as its annotators saw them (plus noise, as AffectNet's); the target's
true values, which RAF-DB lacks, are written to ``target_valence_arousal.csv``, so that pseudo
values predicted for the target can be scored.

Both sets are written in the official RAF-DB and AffectNet layouts (``_layouts``), so the real
loaders read them. Class priors follow the shapes of the RAF-DB and AffectNet training sets (paper
Fig. 1), and the aux train split is 23 times the target's, as AffectNet's is RAF-DB's.

Faces are rendered and written in chunks, each from its own random stream, by a pool of worker
processes (``_drawing``): the files are the same whatever the number of workers. This module makes
the benchmark (``generate``), caches it (``ensure``) and reads its ground truth back.
"""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import numpy as np

from sspa_ray.data import rafdb
from sspa_ray.data._progress import Progress
from sspa_ray.data.cache import cache_dir, locked
from sspa_ray.data.synthetic._annotation import AUX_STANDARD, TARGET_STANDARD, valence_arousal
from sspa_ray.data.synthetic._drawing import chunks, draw_all
from sspa_ray.data.synthetic._faces import Faces, expressions, sample_faces
from sspa_ray.data.synthetic._layouts import (
    AFFECTNET_IMAGES,
    RAFDB_IMAGES,
    affectnet_paths,
    rafdb_names,
    write_affectnet_lists,
    write_rafdb_labels,
)
from sspa_ray.data.synthetic._render import Style, identity_looks
from sspa_ray.errors import DataError
from sspa_ray.labels import CLASS_INDEX, CLASSES

VERSION = 5  # bump whenever the generated files change, so cached copies are regenerated
GROUND_TRUTH = "ground_truth.csv"
TARGET_VALENCE_AROUSAL = "target_valence_arousal.csv"  # path,valence,arousal of every target image


# Training-set class counts of the real datasets, canonical order; only their shape is used.
RAFDB_TRAIN_COUNTS = np.array([705, 717, 281, 4772, 2524, 1982, 1290], dtype=np.float64)
AFFECTNET_TRAIN_COUNTS = np.array([24882, 3803, 6378, 134415, 74874, 25459, 14090], dtype=np.float64)

# The paper's data ratio: AffectNet's 283,721 training images of the 7 classes are 23 times
# RAF-DB's 12,271, so its 10% aux share is 2.3 times the target and 100% is 23 times.
AUX_PER_TARGET = 23
# Samples per split at scale 1.0: sized so that the nine-run module ablation of `small` at 32x32,
# with the paper's 10% aux share, finishes in a few minutes on two cores.
BASE_SIZES = {"rafdb/train": 1000, "rafdb/test": 600, "affectnet/train": AUX_PER_TARGET * 1000, "affectnet/val": 350}
DROPPED_SHARE = 0.03  # aux rows with codes 7..10 that the loader must drop

TARGET_STYLE = Style(canvas=64, aligned=True, max_roll=6, stripes=0.0, saturation=0.25, noise=(2, 8), occlusion=0.12, quality=92)
AUX_STYLE = Style(canvas=80, aligned=False, max_roll=15, stripes=0.5, saturation=0.7, noise=(4, 14), occlusion=0.25, quality=80)
# The face-identity pretraining set (the stand-in for MS-Celeb-1M): aligned crops of celebrities,
# a third style between the target's and the auxiliary set's.
IDENTITY_STYLE = Style(canvas=64, aligned=True, max_roll=10, stripes=0.25, saturation=0.5, noise=(2, 10), occlusion=0.1, quality=90)


def _prior(counts: np.ndarray) -> np.ndarray:
    return counts / counts.sum()


def identity_faces(seed: int, identities: int, per_identity: int, size: int, *,
                   workers: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Faces for identity pretraining: uint8 [identities * per_identity, size, size, 3] and identity ids.

    The people are drawn from their own random stream, so none of them is a person of the
    benchmark (identity features are continuous draws). Each face shows a random expression of a
    random class at a random intensity, so the expression varies within every identity and says
    nothing about who it is. Deterministic for (seed, identities, per_identity, size).
    """
    stream = np.random.SeedSequence([seed, VERSION, 0x1D])  # 0x1D: not a benchmark stream
    rng = np.random.default_rng(stream)
    total = identities * per_identity
    identity = np.repeat(np.arange(identities), per_identity)
    uniform = np.full(len(CLASSES), 1 / len(CLASSES))
    params, _ = expressions(rng, total, uniform, identities, identity)
    looks = {k: v[identity] for k, v in identity_looks(rng, identities).items()}
    results = draw_all(chunks(stream, params, looks, IDENTITY_STYLE, size=size), workers)
    return np.concatenate([images for images, _ in results]), identity


def _write_target_valence_arousal(out: Path, faces: dict[str, Faces]) -> None:
    """The target images' true valence and arousal, by their RAF-DB loader paths."""
    with open(out / TARGET_VALENCE_AROUSAL, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(("path", "valence", "arousal"))
        for split in ("train", "test"):
            truth = valence_arousal(faces[split].params)
            for name, (valence, arousal) in zip(rafdb_names(split, len(truth)), truth, strict=True):
                writer.writerow((f"{rafdb.IMAGE_DIR.as_posix()}/{name}_aligned.jpg", f"{valence:.6f}", f"{arousal:.6f}"))


def split_sizes(scale: float) -> dict[str, int]:
    return {key: max(7, round(n * scale)) for key, n in BASE_SIZES.items()}


def generate(out: Path, seed: int = 0, scale: float = 1.0, *, progress: bool = False, workers: int | None = None) -> dict:
    """Write the benchmark under `out` (rafdb/, affectnet/, ground_truth.csv); return a summary.

    Deterministic: the same seed and scale give byte-identical files, whatever `workers` (the
    drawing processes; by default one per core, up to 8).
    """
    out = Path(out)
    for name in ("rafdb", "affectnet", GROUND_TRUTH, TARGET_VALENCE_AROUSAL):
        if (out / name).exists():
            raise DataError(f"{out / name} already exists; choose an empty --out folder or delete it")
    sizes = split_sizes(scale)
    streams = np.random.SeedSequence([seed, VERSION]).spawn(4)
    target_prior, aux_prior = _prior(RAFDB_TRAIN_COUNTS), _prior(AFFECTNET_TRAIN_COUNTS)
    n_dropped = round(sizes["affectnet/train"] * DROPPED_SHARE)
    target = {
        "train": sample_faces(streams[0], sizes["rafdb/train"], target_prior, TARGET_STANDARD),
        "test": sample_faces(streams[1], sizes["rafdb/test"], target_prior, TARGET_STANDARD),
    }
    aux = {
        "train": sample_faces(streams[2], sizes["affectnet/train"], aux_prior, AUX_STANDARD, n_dropped),
        "val": sample_faces(streams[3], sizes["affectnet/val"], np.full(len(CLASSES), 1 / len(CLASSES)), AUX_STANDARD),
    }
    (out / RAFDB_IMAGES).mkdir(parents=True)
    jobs = []
    for split, faces in target.items():
        files = [out / RAFDB_IMAGES / f"{name}_aligned.jpg" for name in rafdb_names(split, len(faces.params))]
        jobs += chunks(faces.seed, faces.params, faces.looks, TARGET_STYLE, files=files)
    aux_jobs = {}
    for split, faces in aux.items():
        rels = affectnet_paths(seed, split, len(faces.params))
        for folder in sorted({rel.split("/")[0] for rel in rels}):
            (out / AFFECTNET_IMAGES / folder).mkdir(parents=True)
        aux_jobs[split] = chunks(faces.seed, faces.params, faces.looks, AUX_STYLE, blank=faces.dropped_codes == 10,
                                 files=[out / AFFECTNET_IMAGES / rel for rel in rels])
    total = sum(len(job) for job in jobs) + sum(len(job) for split_jobs in aux_jobs.values() for job in split_jobs)
    with Progress(total, f"writing the synthetic benchmark (seed {seed}, scale {scale:g})", progress) as bar:
        results = draw_all(jobs + [job for split_jobs in aux_jobs.values() for job in split_jobs], workers, bar)
    aux_boxes, start = {}, len(jobs)
    for split, split_jobs in aux_jobs.items():
        aux_boxes[split] = np.concatenate([boxes for _, boxes in results[start : start + len(split_jobs)]])
        start += len(split_jobs)
    write_rafdb_labels(out, target)
    _write_target_valence_arousal(out, target)
    truth = write_affectnet_lists(out, seed, aux, aux_boxes)
    with open(out / GROUND_TRUTH, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(("path", "label", "true_label"))
        writer.writerows(truth)
    target_counts = np.bincount(target["train"].labels, minlength=len(CLASSES))
    return {
        "out": str(out),
        "seed": seed,
        "scale": scale,
        "images": total,
        "rafdb_train": dict(zip(CLASSES, target_counts.tolist(), strict=True)),
        "affectnet_train": len(truth),
        "rafdb_test": sizes["rafdb/test"],
        "imbalance": float(target_counts.max() / max(target_counts.min(), 1)),
        "aux_disagreement": float(np.mean([label != true for _, label, true in truth])) if truth else 0.0,
    }


def read_ground_truth(root: Path) -> dict[str, int]:
    """path -> true label index, from `root`/ground_truth.csv."""
    path = Path(root) / GROUND_TRUTH
    try:
        with open(path, newline="") as handle:
            return {row["path"]: CLASS_INDEX[row["true_label"]] for row in csv.DictReader(handle)}
    except FileNotFoundError:
        raise DataError(f"missing file {path}; regenerate the benchmark with `sspa-ray data synth`") from None
    except (KeyError, TypeError):
        raise DataError(f"{path}: malformed; expected the columns path,label,true_label with canonical class names") from None


def ensure(seed: int, scale: float, *, progress: bool = True, workers: int | None = None) -> Path:
    """The benchmark for (seed, scale) under the cache dir, generated on first use under a lock."""
    name = f"v{VERSION}-seed{seed}-scale{scale:g}"
    final = cache_dir() / "synthetic" / name
    if final.is_dir():
        return final
    with locked(final.parent / f"{name}.lock"):
        if not final.is_dir():  # another process may have made it while we waited
            tmp = final.parent / f"{name}.tmp-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            try:
                generate(tmp, seed, scale, progress=progress, workers=workers)
                os.rename(tmp, final)  # atomic: `final` exists only when complete
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    return final


def true_valence_arousal(root: Path, paths: list[str]) -> np.ndarray:
    """The true valence and arousal, float32 [N, 2], of the target images `paths` (RAF-DB loader
    paths), from `root`/target_valence_arousal.csv."""
    path = Path(root) / TARGET_VALENCE_AROUSAL
    try:
        with open(path, newline="") as handle:
            truth = {row["path"]: (float(row["valence"]), float(row["arousal"])) for row in csv.DictReader(handle)}
    except FileNotFoundError:
        raise DataError(f"missing file {path}; regenerate the benchmark with `sspa-ray data synth`") from None
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{path}: malformed; expected the columns path,valence,arousal with numbers") from None
    missing = [p for p in paths if p not in truth]
    if missing:
        raise DataError(f"{path} has no row for {missing[0]}; delete {root} to regenerate it")
    return np.array([truth[p] for p in paths], dtype=np.float32).reshape(-1, 2)
