"""The synthetic FER benchmark: drawn faces, two annotation standards, known ground truth.

Every face has six continuous expression parameters (mouth curvature and opening, brow raise
and tilt, eye opening, nose wrinkle). A sample is drawn from a latent expression with a random
intensity, plus a per-identity resting face and noise, and rendered (``_render``) with varied
identity, pose, scale, lighting, background, noise and occlusion.

Labels come from an *annotation standard*: nearest expression prototype in parameter space, as
seen by a slightly noisy annotator. The target set ("rafdb") is labelled under the target's
standard. The auxiliary set ("affectnet") is drawn in another style (a domain shift) and
labelled under another standard: shifted class boundaries plus systematic confusions of
fear -> surprise, disgust -> anger and sadness -> neutral. The noiseless target standard
applied to each auxiliary sample gives its true label, written to ``ground_truth.csv``.

Valence and arousal are a fixed function of the expression parameters (``valence_arousal``). The
aux set's CSV carries them as its annotators saw them (plus noise, as AffectNet's); the target's
true values, which RAF-DB lacks, are written to ``target_valence_arousal.csv``, so that pseudo
values predicted for the target can be scored.

Both sets are written in the official RAF-DB and AffectNet layouts, so the real loaders read
them. Class priors follow the shapes of the RAF-DB and AffectNet training sets (paper Fig. 1),
and the aux train split is 23 times the target's, as AffectNet's is RAF-DB's.

Faces are rendered and written in chunks of CHUNK, each from its own random stream, by a pool of
worker processes: the files are the same whatever the number of workers.
"""

from __future__ import annotations

import csv
import ctypes
import hashlib
import multiprocessing
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from sspa_ray.data import rafdb
from sspa_ray.data._progress import Progress
from sspa_ray.data._render import PARAMS, P, Style, identity_looks, render
from sspa_ray.data.cache import cache_dir, locked
from sspa_ray.errors import DataError
from sspa_ray.labels import AFFECTNET_CODES, AFFECTNET_DROPPED, CLASS_INDEX, CLASSES, RAFDB_CODES

VERSION = 5  # bump whenever the generated files change, so cached copies are regenerated
GROUND_TRUTH = "ground_truth.csv"
TARGET_VALENCE_AROUSAL = "target_valence_arousal.csv"  # path,valence,arousal of every target image

# Expression prototypes in parameter space, canonical class order.
PROTOTYPES = np.array(
    [
        # curve  open  raise  tilt   eye  wrinkle
        [-0.35, 0.05, -0.50, -1.00, 0.20, 0.25],  # anger: brows down and together, glare
        [-0.55, 0.15, -0.30, -0.40, -0.50, 1.00],  # disgust: nose wrinkle, squint
        [-0.30, 0.60, 0.70, 0.80, 0.90, 0.00],  # fear: brows up and together, wide eyes
        [1.00, 0.35, 0.10, 0.00, -0.35, 0.10],  # happiness: smile, smiling eyes
        [0.00, 0.00, 0.00, 0.00, 0.00, 0.00],  # neutral
        [-0.75, 0.00, -0.10, 0.80, -0.35, 0.00],  # sadness: frown, inner brows up
        [0.00, 1.00, 1.00, 0.15, 1.00, 0.00],  # surprise: open mouth, raised brows, wide eyes
    ],
    dtype=np.float64,
)


@dataclass(frozen=True)
class AnnotationStandard:
    """How one dataset's annotators turn facial parameters into a label."""

    prototypes: np.ndarray          # [C, P] where each class sits in parameter space
    bias: np.ndarray                # [C] a larger bias widens the class
    jitter: float                   # annotators' perception noise, in parameter units
    confusions: tuple[tuple[str, str, float], ...] = ()  # (seen as, written as, probability)

    def label(self, params: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
        """Labels under this standard; rng=None gives the noiseless decision."""
        seen = params if rng is None else params + rng.normal(0.0, self.jitter, params.shape)
        distance = ((seen[:, None, :] - self.prototypes[None]) ** 2).sum(-1) - self.bias[None]
        labels = distance.argmin(1)
        if rng is not None:
            draws = rng.random((len(self.confusions), len(labels)))
            for (seen_as, written_as, p), draw in zip(self.confusions, draws, strict=True):
                labels = np.where((labels == CLASS_INDEX[seen_as]) & (draw < p), CLASS_INDEX[written_as], labels)
        return labels.astype(np.int64)


def _moved(prototypes: np.ndarray, cls: str, toward: str, share: float) -> np.ndarray:
    out = prototypes.copy()
    out[CLASS_INDEX[cls]] += share * (prototypes[CLASS_INDEX[toward]] - prototypes[CLASS_INDEX[cls]])
    return out


TARGET_STANDARD = AnnotationStandard(prototypes=PROTOTYPES, bias=np.zeros(len(CLASSES)), jitter=0.06)
AUX_STANDARD = AnnotationStandard(
    # Aux annotators put surprise closer to fear, anger closer to disgust and neutral closer to
    # sadness, call mild smiles happy, look less carefully (more jitter) and often write the
    # second expression of a similar pair for the first.
    prototypes=_moved(_moved(_moved(PROTOTYPES, "surprise", "fear", 0.5), "anger", "disgust", 0.5), "neutral", "sadness", 0.6),
    bias=np.array([0.0, -0.05, -0.05, 0.2, 0.05, 0.0, 0.0]),
    jitter=0.35,
    confusions=(("fear", "surprise", 0.8), ("disgust", "anger", 0.8), ("sadness", "neutral", 0.7)),
)


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
CHUNK = 512  # faces per rendering job, drawn from the job's own stream
# Annotators' noise on valence and arousal: two of AffectNet's annotators differ by an RMSE of 0.34
# (valence) and 0.36 (arousal), so each is about 0.25 from the truth.
VA_NOISE = 0.25
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)

TARGET_STYLE = Style(canvas=64, aligned=True, max_roll=6, stripes=0.0, saturation=0.25, noise=(2, 8), occlusion=0.12, quality=92)
AUX_STYLE = Style(canvas=80, aligned=False, max_roll=15, stripes=0.5, saturation=0.7, noise=(4, 14), occlusion=0.25, quality=80)
# The face-identity pretraining set (the stand-in for MS-Celeb-1M): aligned crops of celebrities,
# a third style between the target's and the auxiliary set's.
IDENTITY_STYLE = Style(canvas=64, aligned=True, max_roll=10, stripes=0.25, saturation=0.5, noise=(2, 10), occlusion=0.1, quality=90)


@dataclass
class _Faces:
    """One split before it is drawn: each face's expression parameters, looks and labels."""

    seed: np.random.SeedSequence  # the split's stream; each rendering chunk takes a child of it
    params: np.ndarray        # [N, P]
    looks: dict[str, np.ndarray]  # identity features, one row per face
    labels: np.ndarray        # int64 [N] under the split's own standard; -1 for dropped rows
    true_labels: np.ndarray   # int64 [N] under the noiseless target standard
    dropped_codes: np.ndarray  # int64 [N] AffectNet code 7..10 for rows to drop, else -1
    annotated_va: np.ndarray  # [N, 2] valence and arousal as annotators give them (true + noise)


def _prior(counts: np.ndarray) -> np.ndarray:
    return counts / counts.sum()


def _expressions(rng: np.random.Generator, n: int, prior: np.ndarray, n_identities: int,
                 identity: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Facial parameters [n, P] and identity ids [n]: latent expression x intensity + resting face + noise.

    Identities are drawn at random unless `identity` gives them.
    """
    latent = rng.choice(len(CLASSES), size=n, p=prior)
    intensity = rng.uniform(0.45, 1.2, size=(n, 1))
    if identity is None:
        identity = rng.integers(0, n_identities, size=n)
    resting = rng.normal(0.0, 0.12, size=(n_identities, len(PARAMS)))
    params = intensity * PROTOTYPES[latent] + resting[identity] + rng.normal(0.0, 0.1, size=(n, len(PARAMS)))
    return params, identity


def valence_arousal(params: np.ndarray) -> np.ndarray:
    """The true valence and arousal [N, 2] of faces with expression parameters `params` [N, P].

        valence = 0.75 curve - 0.35 wrinkle - 0.25 furrow
        arousal = 0.3 open + 0.35 eye + 0.2 raise + 0.5 furrow + 0.2 wrinkle + 0.15 smile

    with furrow = max(-brow_tilt, 0) (brows drawn down and together) and smile = max(mouth_curve, 0),
    both clipped to [-1, 1]. At the prototypes this gives (valence, arousal) happiness (+0.71,
    +0.17), surprise (0, +0.85), fear (-0.22, +0.64), anger (-0.60, +0.54), disgust (-0.86, +0.21),
    sadness (-0.56, -0.14) and neutral (0, 0): the quadrants of Russell's circumplex, where
    AffectNet's annotations put these classes.
    """
    curve, wrinkle = params[:, P["mouth_curve"]], params[:, P["nose_wrinkle"]]
    furrow, smile = np.maximum(-params[:, P["brow_tilt"]], 0.0), np.maximum(curve, 0.0)
    valence = 0.75 * curve - 0.35 * wrinkle - 0.25 * furrow
    arousal = (0.3 * params[:, P["mouth_open"]] + 0.35 * params[:, P["eye_open"]] + 0.2 * params[:, P["brow_raise"]]
               + 0.5 * furrow + 0.2 * wrinkle + 0.15 * smile)
    return np.clip(np.stack([valence, arousal], 1), -1.0, 1.0)


def _faces(seed: np.random.SeedSequence, n: int, prior: np.ndarray, standard: AnnotationStandard, n_dropped: int = 0) -> _Faces:
    """One split's faces: n labelled ones (plus n_dropped rows with AffectNet codes 7..10)."""
    rng = np.random.default_rng(seed)
    total = n + n_dropped
    n_identities = max(8, total // 8)
    params, identity = _expressions(rng, total, prior, n_identities)
    looks = identity_looks(rng, n_identities)
    labels = standard.label(params, rng)
    true_labels = TARGET_STANDARD.label(params, None)
    dropped_codes = np.full(total, -1, dtype=np.int64)
    if n_dropped:
        where = rng.choice(total, size=n_dropped, replace=False)
        dropped_codes[where] = rng.choice(sorted(AFFECTNET_DROPPED), size=n_dropped)
        labels[where] = -1
    annotated_va = np.clip(valence_arousal(params) + rng.normal(0.0, VA_NOISE, (total, 2)), -1.0, 1.0)
    return _Faces(seed, params, {k: v[identity] for k, v in looks.items()}, labels, true_labels, dropped_codes,
                  annotated_va)


@dataclass(frozen=True)
class _Job:
    """One chunk of faces to draw: written as JPEG files, or returned (resized to `size`) when there are none."""

    seed: np.random.SeedSequence
    params: np.ndarray
    looks: dict[str, np.ndarray]
    style: Style
    blank: np.ndarray | None = None   # bool [n]: rows drawn as a flat patch (AffectNet's non-face rows)
    files: tuple[Path, ...] = ()
    size: int = 0                     # side of the returned faces; 0 keeps the canvas

    def __len__(self) -> int:
        return len(self.params)


def _jobs(seed: np.random.SeedSequence, params: np.ndarray, looks: dict[str, np.ndarray], style: Style, *,
          blank: np.ndarray | None = None, files: list[Path] | None = None, size: int = 0) -> list[_Job]:
    """The chunks of one split; chunk i draws from the i-th child of `seed`, whoever draws it."""
    jobs = []
    for i, start in enumerate(range(0, len(params), CHUNK)):
        part = slice(start, start + CHUNK)
        jobs.append(_Job(
            seed=np.random.SeedSequence(seed.entropy, spawn_key=(*seed.spawn_key, i)),
            params=params[part], looks={k: v[part] for k, v in looks.items()}, style=style,
            blank=None if blank is None else blank[part], files=tuple(files[part]) if files else (), size=size,
        ))
    return jobs


def _draw(job: _Job) -> tuple[np.ndarray | None, np.ndarray]:
    """Render one chunk: (its faces, or None when they were written to its files; face boxes [n, 4])."""
    images, boxes = render(np.random.default_rng(job.seed), job.params, job.looks, job.style)
    if job.blank is not None:
        images[job.blank] = images[job.blank, :1, :1, :]  # a "non-face" row is a flat patch of colour
    if job.files:
        for path, image in zip(job.files, images, strict=True):
            Image.fromarray(image).save(path, format="JPEG", quality=job.style.quality)
        return None, boxes
    if job.size and job.size != job.style.canvas:
        images = np.stack([np.asarray(Image.fromarray(image).resize((job.size, job.size), Image.Resampling.BILINEAR))
                           for image in images])
    return images, boxes


def _default_workers(jobs: int) -> int:
    """Drawing processes for `jobs` chunks: one per core this process may use, up to 8. A worker
    costs about a second to start (it imports numpy and PIL), as much as drawing two chunks, so
    there are at least two chunks per worker."""
    return max(1, min(8, len(os.sched_getaffinity(0)), jobs // 2))


def _keep_freed_memory() -> None:
    """Pool initializer: let glibc keep freed drawing buffers in the worker's heap. By default it
    maps each buffer of more than 128 KB afresh and unmaps it on free, and faulting the pages back
    in cost a third of the drawing time (1024 aux faces: 1.25 s of CPU, 0.75 s with this)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except AttributeError:
        return  # not glibc: its own defaults
    mallopt(_M_MMAP_THRESHOLD, 64 << 20)
    mallopt(_M_TRIM_THRESHOLD, 256 << 20)


def _draw_all(jobs: list[_Job], workers: int | None, bar: Progress | None = None) -> list[tuple[np.ndarray | None, np.ndarray]]:
    """Every job's result, in order; drawn by `workers` processes (_default_workers when None)."""
    workers = min(workers or _default_workers(len(jobs)), len(jobs))
    if workers <= 1:
        results = map(_draw, jobs)
        pool = None
    else:
        # Spawned, not forked: the caller may be a threaded process (a Ray worker, a Tune driver).
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_keep_freed_memory)
        results = pool.map(_draw, jobs)
    try:
        done = []
        for job, result in zip(jobs, results, strict=True):
            done.append(result)
            if bar is not None:
                bar.update(len(job))
        return done
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)


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
    params, _ = _expressions(rng, total, uniform, identities, identity)
    looks = {k: v[identity] for k, v in identity_looks(rng, identities).items()}
    results = _draw_all(_jobs(stream, params, looks, IDENTITY_STYLE, size=size), workers)
    return np.concatenate([images for images, _ in results]), identity


_RAFDB_CODE = {name: code for code, name in RAFDB_CODES.items()}
_AFFECTNET_CODE = {name: code for code, name in AFFECTNET_CODES.items()}
_AFFECTNET_HEADER = "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal"
_RAFDB_IMAGES = Path("rafdb") / rafdb.IMAGE_DIR
_AFFECTNET_IMAGES = Path("affectnet") / "Manually_Annotated_Images"


def _rafdb_names(split: str, n: int) -> list[str]:
    digits = {"train": 5, "test": 4}[split]  # the official names: train_00001, test_0001
    return [f"{split}_{i:0{digits}d}" for i in range(1, n + 1)]


def _affectnet_paths(seed: int, split: str, n: int) -> list[str]:
    """Real AffectNet files sit in numbered folders under hash-like names."""
    paths = []
    for i in range(n):
        sub = f"{i // 500 + 1 + (0 if split == 'train' else 900)}"
        stem = hashlib.sha1(f"{seed}/{split}/{i}".encode()).hexdigest()[:32]
        paths.append(f"{sub}/{stem}.jpg")
    return paths


def _write_rafdb_labels(out: Path, faces: dict[str, _Faces]) -> None:
    lines = []
    for split in ("train", "test"):
        for name, label in zip(_rafdb_names(split, len(faces[split].labels)), faces[split].labels, strict=True):
            lines.append(f"{name}.jpg {_RAFDB_CODE[CLASSES[label]]}\n")
    label_dir = out / "rafdb" / "EmoLabel"
    label_dir.mkdir(parents=True)
    (label_dir / "list_patition_label.txt").write_text("".join(lines))


def _write_target_valence_arousal(out: Path, faces: dict[str, _Faces]) -> None:
    """The target images' true valence and arousal, by their RAF-DB loader paths."""
    with open(out / TARGET_VALENCE_AROUSAL, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(("path", "valence", "arousal"))
        for split in ("train", "test"):
            truth = valence_arousal(faces[split].params)
            for name, (valence, arousal) in zip(_rafdb_names(split, len(truth)), truth, strict=True):
                writer.writerow((f"{rafdb.IMAGE_DIR.as_posix()}/{name}_aligned.jpg", f"{valence:.6f}", f"{arousal:.6f}"))


def _write_affectnet_lists(out: Path, seed: int, faces: dict[str, _Faces], boxes: dict[str, np.ndarray]) -> list[tuple[str, str, str]]:
    """Write the AffectNet CSVs; return ground-truth rows (path, label, true_label) of kept train rows."""
    lists = out / "affectnet" / "Manually_Annotated_file_lists"
    lists.mkdir(parents=True)
    truth = []
    for split, csv_name in (("train", "training.csv"), ("val", "validation.csv")):
        drawn = faces[split]
        valence, arousal = drawn.annotated_va.T
        rows = [_AFFECTNET_HEADER + "\n"]
        for i, rel in enumerate(_affectnet_paths(seed, split, len(drawn.params))):
            x, y, w, h = boxes[split][i].tolist()
            va = f"{valence[i]:.6f},{arousal[i]:.6f}"
            if drawn.dropped_codes[i] >= 0:
                code = int(drawn.dropped_codes[i])
                if code >= 9:  # AffectNet gives uncertain and non-face rows valence = arousal = -2
                    va = "-2,-2"
            else:
                code = _AFFECTNET_CODE[CLASSES[drawn.labels[i]]]
                if split == "train":
                    truth.append((f"Manually_Annotated_Images/{rel}", CLASSES[drawn.labels[i]], CLASSES[drawn.true_labels[i]]))
            rows.append(f'{rel},{x},{y},{w},{h},"",{code},{va}\n')
        (lists / csv_name).write_text("".join(rows))
    return truth


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
        "train": _faces(streams[0], sizes["rafdb/train"], target_prior, TARGET_STANDARD),
        "test": _faces(streams[1], sizes["rafdb/test"], target_prior, TARGET_STANDARD),
    }
    aux = {
        "train": _faces(streams[2], sizes["affectnet/train"], aux_prior, AUX_STANDARD, n_dropped),
        "val": _faces(streams[3], sizes["affectnet/val"], np.full(len(CLASSES), 1 / len(CLASSES)), AUX_STANDARD),
    }
    (out / _RAFDB_IMAGES).mkdir(parents=True)
    jobs = []
    for split, faces in target.items():
        files = [out / _RAFDB_IMAGES / f"{name}_aligned.jpg" for name in _rafdb_names(split, len(faces.params))]
        jobs += _jobs(faces.seed, faces.params, faces.looks, TARGET_STYLE, files=files)
    aux_jobs = {}
    for split, faces in aux.items():
        rels = _affectnet_paths(seed, split, len(faces.params))
        for folder in sorted({rel.split("/")[0] for rel in rels}):
            (out / _AFFECTNET_IMAGES / folder).mkdir(parents=True)
        aux_jobs[split] = _jobs(faces.seed, faces.params, faces.looks, AUX_STYLE, blank=faces.dropped_codes == 10,
                                files=[out / _AFFECTNET_IMAGES / rel for rel in rels])
    total = sum(len(job) for job in jobs) + sum(len(job) for split_jobs in aux_jobs.values() for job in split_jobs)
    with Progress(total, f"writing the synthetic benchmark (seed {seed}, scale {scale:g})", progress) as bar:
        results = _draw_all(jobs + [job for split_jobs in aux_jobs.values() for job in split_jobs], workers, bar)
    aux_boxes, start = {}, len(jobs)
    for split, split_jobs in aux_jobs.items():
        aux_boxes[split] = np.concatenate([boxes for _, boxes in results[start : start + len(split_jobs)]])
        start += len(split_jobs)
    _write_rafdb_labels(out, target)
    _write_target_valence_arousal(out, target)
    truth = _write_affectnet_lists(out, seed, aux, aux_boxes)
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
