"""The synthetic FER benchmark: drawn faces, two annotation standards, known ground truth.

Every face has six continuous expression parameters (mouth curvature and opening, brow raise
and tilt, eye opening, nose wrinkle). A sample is drawn from a latent expression with a random
intensity, plus a per-identity resting face and noise, and rendered with varied identity, pose,
scale, lighting, background, noise and occlusion.

Labels come from an *annotation standard*: nearest expression prototype in parameter space, as
seen by a slightly noisy annotator. The target set ("rafdb") is labelled under the target's
standard. The auxiliary set ("affectnet") is drawn in another style (a domain shift) and
labelled under another standard: shifted class boundaries plus systematic confusions of
fear -> surprise, disgust -> anger and sadness -> neutral. The noiseless target standard
applied to each auxiliary sample gives its true label, written to ``ground_truth.csv``.

Both sets are written in the official RAF-DB and AffectNet layouts, so the real loaders read
them. Class priors follow the shapes of the RAF-DB and AffectNet training sets (paper Fig. 1).
"""

from __future__ import annotations

import csv
import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from sspa_ray.data._progress import Progress
from sspa_ray.data.cache import cache_dir, locked
from sspa_ray.errors import DataError
from sspa_ray.labels import AFFECTNET_CODES, AFFECTNET_DROPPED, CLASS_INDEX, CLASSES, RAFDB_CODES

VERSION = 3  # bump whenever the generated files change, so cached copies are regenerated
GROUND_TRUTH = "ground_truth.csv"

PARAMS = ("mouth_curve", "mouth_open", "brow_raise", "brow_tilt", "eye_open", "nose_wrinkle")
_P = {name: i for i, name in enumerate(PARAMS)}

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

# Training-set class counts of the real datasets, canonical order; only their shape is used.
RAFDB_TRAIN_COUNTS = np.array([705, 717, 281, 4772, 2524, 1982, 1290], dtype=np.float64)
AFFECTNET_TRAIN_COUNTS = np.array([24882, 3803, 6378, 134415, 74874, 25459, 14090], dtype=np.float64)

# Samples per split at scale 1.0: sized so that the nine-run module ablation of `small` at 32x32
# finishes in a few minutes on two cores.
BASE_SIZES = {"rafdb/train": 1000, "rafdb/test": 600, "affectnet/train": 2000, "affectnet/val": 350}
DROPPED_SHARE = 0.03  # aux rows with codes 7..10 that the loader must drop


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
            for (seen_as, written_as, p), draw in zip(self.confusions, draws):
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


@dataclass(frozen=True)
class Style:
    """How one dataset looks: the domain shift between target and auxiliary images."""

    canvas: int          # image side in pixels
    aligned: bool        # faces centred and upright (RAF-DB aligned) or placed freely with a box
    max_roll: float      # degrees
    stripes: float       # strength of the striped background texture
    saturation: float    # of background colours
    noise: tuple[float, float]  # pixel noise std range
    occlusion: float     # share of faces partly covered
    quality: int         # JPEG quality


TARGET_STYLE = Style(canvas=64, aligned=True, max_roll=6, stripes=0.0, saturation=0.25, noise=(2, 8), occlusion=0.12, quality=92)
AUX_STYLE = Style(canvas=80, aligned=False, max_roll=15, stripes=0.5, saturation=0.7, noise=(4, 14), occlusion=0.25, quality=80)
# The face-identity pretraining set (the stand-in for MS-Celeb-1M): aligned crops of celebrities,
# a third style between the target's and the auxiliary set's.
IDENTITY_STYLE = Style(canvas=64, aligned=True, max_roll=10, stripes=0.25, saturation=0.5, noise=(2, 10), occlusion=0.1, quality=90)


@dataclass
class _Drawn:
    """One generated split."""

    images: np.ndarray      # uint8 [N, S, S, 3]
    params: np.ndarray      # [N, P]
    labels: np.ndarray      # int64 [N] under the split's own standard; -1 for dropped rows
    true_labels: np.ndarray  # int64 [N] under the noiseless target standard
    boxes: np.ndarray       # int64 [N, 4] face boxes (x, y, w, h)
    dropped_codes: np.ndarray  # int64 [N] AffectNet code 7..10 for rows to drop, else -1


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


def _soft(distance_px: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage of a shape from a signed distance in pixels (negative inside)."""
    return np.clip(0.5 - distance_px, 0.0, 1.0)


def _segment_distance(u, v, u0, v0, u1, v1):
    du, dv = u1 - u0, v1 - v0
    t = np.clip(((u - u0) * du + (v - v0) * dv) / (du * du + dv * dv + 1e-9), 0.0, 1.0)
    return np.hypot(u - (u0 + t * du), v - (v0 + t * dv))


def _identity_looks(rng: np.random.Generator, n_identities: int) -> dict[str, np.ndarray]:
    """What stays the same across one person's images: face shape, skin and hair, feature spacing."""
    tone = rng.uniform(0.35, 0.95, size=n_identities)
    return {
        "skin": np.stack([tone * 0.95 + 0.05, tone * 0.75 + 0.05, tone * 0.6 + 0.05], 1).astype(np.float32),
        "hair": rng.uniform(0.02, 0.5, size=(n_identities, 3)).astype(np.float32),
        "aspect": rng.uniform(0.68, 0.85, size=n_identities),
        "eye_gap": rng.uniform(0.26, 0.36, size=n_identities),
        "mouth_w": rng.uniform(0.24, 0.36, size=n_identities),
    }


@dataclass
class _Scene:
    """The random draws of one batch of faces besides their expression: pose, backdrop, light, occluder.

    Drawn in one fixed order (``_draw_scene``) so a seed always renders the same images."""

    radius: np.ndarray
    cx: np.ndarray
    cy: np.ndarray
    roll: np.ndarray
    yaw: np.ndarray
    bg_a: np.ndarray
    bg_b: np.ndarray
    bg_angle: np.ndarray
    stripe_freq: np.ndarray
    stripe_phase: np.ndarray
    light_angle: np.ndarray
    light: np.ndarray
    gain: np.ndarray
    noise: np.ndarray
    occluded: np.ndarray
    occ_u: np.ndarray
    occ_v: np.ndarray
    occ_w: np.ndarray
    occ_h: np.ndarray
    occ_colour: np.ndarray


def _draw_scene(rng: np.random.Generator, n: int, style: Style) -> _Scene:
    s = style.canvas
    # Pose and framing.
    if style.aligned:
        radius = rng.uniform(0.38, 0.44, size=n) * s
        cx = s / 2 + rng.normal(0, 0.8, size=n)
        cy = s / 2 + 2 + rng.normal(0, 0.8, size=n)
    else:
        radius = rng.uniform(0.24, 0.36, size=n) * s
        cx = rng.uniform(radius * 0.9, s - radius * 0.9)
        cy = rng.uniform(radius * 1.0, s - radius * 0.9)
    roll = np.deg2rad(rng.uniform(-style.max_roll, style.max_roll, size=n))
    yaw = rng.uniform(-0.12, 0.12, size=n)
    # Scene: background, lighting, noise, occlusion.
    bg_a = rng.uniform(0.1, 0.9, size=(n, 3))
    bg_b = rng.uniform(0.1, 0.9, size=(n, 3))
    grey_a, grey_b = bg_a.mean(1, keepdims=True), bg_b.mean(1, keepdims=True)
    return _Scene(
        radius=radius, cx=cx, cy=cy, roll=roll, yaw=yaw,
        bg_a=(grey_a + style.saturation * (bg_a - grey_a)).astype(np.float32),
        bg_b=(grey_b + style.saturation * (bg_b - grey_b)).astype(np.float32),
        bg_angle=rng.uniform(0, 2 * np.pi, size=n),
        stripe_freq=rng.uniform(0.15, 0.6, size=n),
        stripe_phase=rng.uniform(0, 2 * np.pi, size=n),
        light_angle=rng.uniform(0, 2 * np.pi, size=n),
        light=rng.uniform(0.0, 0.6, size=n),
        gain=rng.uniform(0.75, 1.2, size=n),
        noise=rng.uniform(*style.noise, size=n) / 255.0,
        occluded=rng.random(n) < style.occlusion,
        occ_u=rng.uniform(-0.8, 0.5, size=n),
        occ_v=rng.uniform(-0.6, 0.7, size=n),
        occ_w=rng.uniform(0.35, 0.7, size=n),
        occ_h=rng.uniform(0.25, 0.5, size=n),
        occ_colour=rng.uniform(0.0, 1.0, size=(n, 3)),
    )


def _col(values, n: int) -> np.ndarray:
    """One scalar per image, shaped to broadcast over [N, S, S]."""
    return np.asarray(values, dtype=np.float32).reshape(n, 1, 1)


def _rgb(colour) -> np.ndarray:
    """A colour, or one per image, shaped to broadcast over [N, 3, S, S]."""
    return np.asarray(colour, np.float32).reshape(-1, 3, 1, 1)


class _Canvas:
    """N images, channels first while drawing (numpy broadcasts far faster over long inner axes), and
    each pixel's face coordinates (u, v): the face is the unit disc, rolled and turned by the scene."""

    def __init__(self, scene: _Scene, style: Style):
        n, s = len(scene.radius), style.canvas
        self.n, self.s = n, s
        self.ys, self.xs = np.mgrid[0:s, 0:s].astype(np.float32) + 0.5
        self.x, self.y = self.xs[None] - _col(scene.cx, n), self.ys[None] - _col(scene.cy, n)
        cos, sin = _col(np.cos(scene.roll), n), _col(np.sin(scene.roll), n)
        self.r = _col(scene.radius, n)
        self.u = (self.x * cos + self.y * sin) / self.r - _col(scene.yaw, n) * 0.3
        self.v = (-self.x * sin + self.y * cos) / self.r
        # Background: a gradient between two colours, with stripes in the auxiliary style.
        t = (self.xs[None] * _col(np.cos(scene.bg_angle), n) + self.ys[None] * _col(np.sin(scene.bg_angle), n)) / s
        t = np.clip(t * 0.5 + 0.5, 0, 1)
        self.img = _rgb(scene.bg_a) * (1 - t[:, None]) + _rgb(scene.bg_b) * t[:, None]
        if style.stripes:
            stripes = np.sin(self.xs[None] * _col(scene.stripe_freq, n) + _col(scene.stripe_phase, n)) * style.stripes * 0.25
            self.img = self.img + stripes[:, None]
        self.scratch = np.empty_like(self.img)

    def col(self, values) -> np.ndarray:
        return _col(values, self.n)

    def pix(self, distance):
        """Face units -> pixels."""
        return distance * self.r

    def paint(self, alpha, colour) -> None:
        """Blend `colour` in with coverage `alpha`, in place through one scratch buffer (allocation
        dominates otherwise)."""
        np.subtract(colour, self.img, out=self.scratch)
        np.multiply(self.scratch, alpha.astype(np.float32, copy=False)[:, None], out=self.scratch)
        self.img += self.scratch


def _paint_face(c: _Canvas, params: np.ndarray, looks: dict[str, np.ndarray]) -> None:
    """Hair, skin and the expression's features."""
    u, v, pix, col = c.u, c.v, c.pix, c.col
    skin, hair = looks["skin"], looks["hair"]
    # Hair behind the upper face, then the face itself.
    a = col(looks["aspect"])
    hair_d = pix((np.sqrt((u / (a * 1.12)) ** 2 + ((v + 0.18) / 0.95) ** 2) - 1) * 0.9)
    c.paint(_soft(hair_d) * (v < 0.15), _rgb(hair))
    rho2 = (u / a) ** 2 + v**2
    face = _soft(pix((np.sqrt(rho2) - 1) * a))
    shade = (1 - 0.25 * np.clip(rho2, 0, 1))[:, None]
    c.paint(face, _rgb(skin) * shade)
    p = {name: col(params[:, i]) for name, i in _P.items()}
    # Features of one colour are merged (max of coverage) and painted in one pass each.
    # Eyes: openness sets their height; the pupil stays round.
    eye_h = np.clip(0.055 * (1 + 0.9 * p["eye_open"]), 0.012, 0.16)
    sclera, ink = np.zeros_like(u), np.zeros_like(u)  # ink: every dark feature
    for side in (-1, 1):
        eu, ev = u - side * col(looks["eye_gap"]), v + 0.15
        white = _soft(pix((np.sqrt((eu / 0.13) ** 2 + (ev / eye_h) ** 2) - 1) * eye_h))
        sclera = np.maximum(sclera, white)
        ink = np.maximum(ink, _soft(pix(np.hypot(eu, ev) - np.minimum(eye_h, 0.06))) * white)
    c.paint(sclera * face, _rgb([0.95, 0.95, 0.92]))
    # Brows: raise lifts both ends, tilt lifts the inner end (sadness, fear) or lowers it (anger).
    brow_y = -0.42 - 0.14 * p["brow_raise"]
    brows = np.zeros_like(u)
    for side in (-1, 1):
        d = _segment_distance(u, v, side * 0.08, brow_y - 0.12 * p["brow_tilt"], side * 0.45, brow_y + 0.04 * p["brow_tilt"])
        brows = np.maximum(brows, _soft(pix(d - 0.05)))
    c.paint(brows * face, _rgb(hair) * 0.6)
    # Nose, and the wrinkles beside it that disgust adds.
    ink = np.maximum(ink, 0.35 * _soft(pix(_segment_distance(u, v, 0.0, -0.05, 0.0, 0.18) - 0.02)))
    wrinkle = np.clip(p["nose_wrinkle"], 0, 1)
    for side in (-1, 1):
        d = _segment_distance(u, v, side * 0.07, 0.0, side * 0.17, 0.14)
        ink = np.maximum(ink, _soft(pix(d - 0.025)) * wrinkle)
    # Mouth: a curved band; curvature lifts the corners, opening parts the lips.
    mw = col(looks["mouth_w"]) * (1 + 0.12 * np.clip(p["mouth_curve"], 0, 1))
    across = np.clip(1 - (u / mw) ** 2, 0, 1)
    centre = 0.5 + 0.04 * p["mouth_curve"] - 0.16 * p["mouth_curve"] * (u / mw) ** 2
    gap = 0.13 * np.clip(p["mouth_open"], 0, 1.3) * across
    outside_u = pix(np.abs(u) - mw)
    lips = _soft(np.maximum(pix(np.abs(v - centre) - gap - 0.035), outside_u))
    c.paint(lips * face, _rgb(skin) * _rgb([0.8, 0.4, 0.4]))
    ink = np.maximum(ink, _soft(np.maximum(pix(np.abs(v - centre) - gap), outside_u)) * (gap > 0.004))
    c.paint(ink * face, _rgb([0.08, 0.05, 0.05]))


def _finish(rng: np.random.Generator, c: _Canvas, scene: _Scene) -> np.ndarray:
    """Occluder, lighting and sensor noise; uint8 [N, S, S, 3]."""
    col = c.col
    # Occluders: a block over part of the face (a hand, a microphone, a scarf).
    block = np.maximum(np.abs(c.u - col(scene.occ_u)) - col(scene.occ_w) / 2, np.abs(c.v - col(scene.occ_v)) - col(scene.occ_h) / 2)
    c.paint(_soft(c.pix(block)) * col(scene.occluded), _rgb(scene.occ_colour))
    # Lighting: a directional gradient and an overall gain, then sensor noise.
    ramp = (c.x * col(np.cos(scene.light_angle)) + c.y * col(np.sin(scene.light_angle))) / c.s
    c.img *= (col(scene.gain) * (1 + col(scene.light) * ramp))[:, None]
    c.img += rng.standard_normal(c.img.shape, dtype=np.float32) * col(scene.noise)[:, None]
    return np.clip(c.img * 255 + 0.5, 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)


def _face_boxes(rng: np.random.Generator, scene: _Scene) -> np.ndarray:
    """The face box an annotator would draw: a square around the face, slightly off; int64 [N, 4]."""
    n = len(scene.radius)
    side = scene.radius * 2.2 * rng.uniform(0.95, 1.05, size=n)
    bx = scene.cx - side / 2 + rng.normal(0, 0.03, size=n) * scene.radius
    by = scene.cy - side / 2 + rng.normal(0, 0.03, size=n) * scene.radius
    return np.stack([bx, by, side, side], 1).round().astype(np.int64)


def _render(rng: np.random.Generator, params: np.ndarray, looks: dict[str, np.ndarray], style: Style) -> tuple[np.ndarray, np.ndarray]:
    """Draw faces (`looks` holds each face's identity features); returns uint8 [N, S, S, 3] and boxes [N, 4]."""
    scene = _draw_scene(rng, len(params), style)
    canvas = _Canvas(scene, style)
    _paint_face(canvas, params, looks)
    images = _finish(rng, canvas, scene)
    return images, _face_boxes(rng, scene)


def _draw(rng: np.random.Generator, n: int, prior: np.ndarray, style: Style, standard: AnnotationStandard, n_dropped: int = 0) -> _Drawn:
    """Generate one split: n labelled faces (plus n_dropped rows with AffectNet codes 7..10)."""
    total = n + n_dropped
    n_identities = max(8, total // 8)
    params, identity = _expressions(rng, total, prior, n_identities)
    looks = _identity_looks(rng, n_identities)
    labels = standard.label(params, rng)
    true_labels = TARGET_STANDARD.label(params, None)
    dropped_codes = np.full(total, -1, dtype=np.int64)
    if n_dropped:
        where = rng.choice(total, size=n_dropped, replace=False)
        dropped_codes[where] = rng.choice(sorted(AFFECTNET_DROPPED), size=n_dropped)
        labels[where] = -1
    images, boxes = [], []
    for start in range(0, total, 128):  # a batch size that keeps the drawing buffers in cache
        batch = identity[start : start + 128]
        batch_images, batch_boxes = _render(rng, params[start : start + 128], {k: v[batch] for k, v in looks.items()}, style)
        images.append(batch_images)
        boxes.append(batch_boxes)
    images, boxes = np.concatenate(images), np.concatenate(boxes)
    non_face = dropped_codes == 10
    images[non_face] = images[non_face, :1, :1, :]  # a "non-face" row is a flat patch of colour
    return _Drawn(images, params, labels, true_labels, boxes, dropped_codes)


def identity_faces(seed: int, identities: int, per_identity: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Faces for identity pretraining: uint8 [identities * per_identity, size, size, 3] and identity ids.

    The people are drawn from their own random stream, so none of them is a person of the
    benchmark (identity features are continuous draws). Each face shows a random expression of a
    random class at a random intensity, so the expression varies within every identity and says
    nothing about who it is. Deterministic for (seed, identities, per_identity, size).
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, VERSION, 0x1D]))  # 0x1D: not a benchmark stream
    total = identities * per_identity
    identity = np.repeat(np.arange(identities), per_identity)
    uniform = np.full(len(CLASSES), 1 / len(CLASSES))
    params, _ = _expressions(rng, total, uniform, identities, identity)
    looks = _identity_looks(rng, identities)
    out = np.empty((total, size, size, 3), dtype=np.uint8)
    for start in range(0, total, 128):
        ids = identity[start : start + 128]
        images, _ = _render(rng, params[start : start + 128], {k: v[ids] for k, v in looks.items()}, IDENTITY_STYLE)
        for i, image in enumerate(images):
            out[start + i] = np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR))
    return out, identity


def _save_jpeg(path: Path, image: np.ndarray, quality: int) -> None:
    Image.fromarray(image).save(path, format="JPEG", quality=quality)


_RAFDB_CODE = {name: code for code, name in RAFDB_CODES.items()}
_AFFECTNET_CODE = {name: code for code, name in AFFECTNET_CODES.items()}
_AFFECTNET_HEADER = "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal"


def _write_rafdb(out: Path, splits: dict[str, _Drawn], bar: Progress) -> None:
    image_dir = out / "rafdb" / "Image" / "aligned"
    label_dir = out / "rafdb" / "EmoLabel"
    image_dir.mkdir(parents=True)
    label_dir.mkdir(parents=True)
    lines = []
    for split, digits in (("train", 5), ("test", 4)):  # the official names: train_00001, test_0001
        drawn = splits[split]
        for i, (image, label) in enumerate(zip(drawn.images, drawn.labels), start=1):
            name = f"{split}_{i:0{digits}d}"
            _save_jpeg(image_dir / f"{name}_aligned.jpg", image, TARGET_STYLE.quality)
            lines.append(f"{name}.jpg {_RAFDB_CODE[CLASSES[label]]}\n")
            bar.update()
    (label_dir / "list_patition_label.txt").write_text("".join(lines))


def _valence_arousal(params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    valence = np.clip(0.8 * params[:, _P["mouth_curve"]] - 0.3 * params[:, _P["nose_wrinkle"]], -1, 1)
    arousal = np.clip((params[:, _P["mouth_open"]] + params[:, _P["eye_open"]] + params[:, _P["brow_raise"]]) / 3, -1, 1)
    return valence, arousal


def _write_affectnet(out: Path, seed: int, splits: dict[str, _Drawn], bar: Progress) -> list[tuple[str, str, str]]:
    """Write the AffectNet layout; return ground-truth rows (path, label, true_label) of kept train rows."""
    root = out / "affectnet"
    (root / "Manually_Annotated_file_lists").mkdir(parents=True)
    truth = []
    for split, csv_name in (("train", "training.csv"), ("val", "validation.csv")):
        drawn = splits[split]
        valence, arousal = _valence_arousal(drawn.params)
        rows = [_AFFECTNET_HEADER + "\n"]
        for i in range(len(drawn.images)):
            # Real AffectNet files sit in numbered folders under hash-like names.
            sub = f"{i // 500 + 1 + (0 if split == 'train' else 900)}"
            stem = hashlib.sha1(f"{seed}/{split}/{i}".encode()).hexdigest()[:32]
            rel = f"{sub}/{stem}.jpg"
            folder = root / "Manually_Annotated_Images" / sub
            folder.mkdir(parents=True, exist_ok=True)
            _save_jpeg(folder / f"{stem}.jpg", drawn.images[i], AUX_STYLE.quality)
            x, y, w, h = drawn.boxes[i].tolist()
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
            bar.update()
        (root / "Manually_Annotated_file_lists" / csv_name).write_text("".join(rows))
    return truth


def split_sizes(scale: float) -> dict[str, int]:
    return {key: max(7, round(n * scale)) for key, n in BASE_SIZES.items()}


def generate(out: Path, seed: int = 0, scale: float = 1.0, *, progress: bool = False) -> dict:
    """Write the benchmark under `out` (rafdb/, affectnet/, ground_truth.csv); return a summary.

    Deterministic: the same seed and scale give byte-identical files.
    """
    out = Path(out)
    for name in ("rafdb", "affectnet", GROUND_TRUTH):
        if (out / name).exists():
            raise DataError(f"{out / name} already exists; choose an empty --out folder or delete it")
    sizes = split_sizes(scale)
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence([seed, VERSION]).spawn(4)]
    target_prior, aux_prior = _prior(RAFDB_TRAIN_COUNTS), _prior(AFFECTNET_TRAIN_COUNTS)
    n_dropped = round(sizes["affectnet/train"] * DROPPED_SHARE)
    drawn = {
        "rafdb/train": _draw(streams[0], sizes["rafdb/train"], target_prior, TARGET_STYLE, TARGET_STANDARD),
        "rafdb/test": _draw(streams[1], sizes["rafdb/test"], target_prior, TARGET_STYLE, TARGET_STANDARD),
        "affectnet/train": _draw(streams[2], sizes["affectnet/train"], aux_prior, AUX_STYLE, AUX_STANDARD, n_dropped),
        "affectnet/val": _draw(streams[3], sizes["affectnet/val"], np.full(len(CLASSES), 1 / len(CLASSES)), AUX_STYLE, AUX_STANDARD),
    }
    out.mkdir(parents=True, exist_ok=True)
    total = sum(len(d.images) for d in drawn.values())
    with Progress(total, f"writing the synthetic benchmark (seed {seed}, scale {scale:g})", progress) as bar:
        _write_rafdb(out, {"train": drawn["rafdb/train"], "test": drawn["rafdb/test"]}, bar)
        truth = _write_affectnet(out, seed, {"train": drawn["affectnet/train"], "val": drawn["affectnet/val"]}, bar)
    with open(out / GROUND_TRUTH, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(("path", "label", "true_label"))
        writer.writerows(truth)
    target_counts = np.bincount(drawn["rafdb/train"].labels, minlength=len(CLASSES))
    return {
        "out": str(out),
        "seed": seed,
        "scale": scale,
        "images": total,
        "rafdb_train": dict(zip(CLASSES, target_counts.tolist())),
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


def ensure(seed: int, scale: float, *, progress: bool = True) -> Path:
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
                generate(tmp, seed, scale, progress=progress)
                os.rename(tmp, final)  # atomic: `final` exists only when complete
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    return final
