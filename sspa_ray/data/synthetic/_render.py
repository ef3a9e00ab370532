"""The renderer of the synthetic benchmark: faces drawn from six expression parameters.

A face is painted procedurally, with numpy, for a whole batch at once: hair, skin, eyes, brows,
nose, mouth, then an occluder, lighting and sensor noise, on a background in the dataset's
`Style`. Everything random comes from the generator passed in, drawn in one fixed order, so a
generator state always renders the same pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PARAMS = ("mouth_curve", "mouth_open", "brow_raise", "brow_tilt", "eye_open", "nose_wrinkle")
P = {name: i for i, name in enumerate(PARAMS)}
BATCH = 32  # faces drawn at once: keeps the drawing buffers (2.5 MB at 80 px) in cache


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


def _soft(distance_px: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage of a shape from a signed distance in pixels (negative inside)."""
    return np.clip(0.5 - distance_px, 0.0, 1.0)


def _segment_distance(u, v, u0, v0, u1, v1):
    du, dv = u1 - u0, v1 - v0
    t = np.clip(((u - u0) * du + (v - v0) * dv) / (du * du + dv * dv + 1e-9), 0.0, 1.0)
    return np.hypot(u - (u0 + t * du), v - (v0 + t * dv))


def identity_looks(rng: np.random.Generator, n_identities: int) -> dict[str, np.ndarray]:
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
    p = {name: col(params[:, i]) for name, i in P.items()}
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


def _render_batch(rng: np.random.Generator, params: np.ndarray, looks: dict[str, np.ndarray], style: Style) -> tuple[np.ndarray, np.ndarray]:
    """Draw faces (`looks` holds each face's identity features); returns uint8 [N, S, S, 3] and boxes [N, 4]."""
    scene = _draw_scene(rng, len(params), style)
    canvas = _Canvas(scene, style)
    _paint_face(canvas, params, looks)
    images = _finish(rng, canvas, scene)
    return images, _face_boxes(rng, scene)


def render(rng: np.random.Generator, params: np.ndarray, looks: dict[str, np.ndarray], style: Style) -> tuple[np.ndarray, np.ndarray]:
    """Faces with `params` [N, P] and per-face `looks` (see identity_looks, indexed by face):
    uint8 [N, S, S, 3] images and int64 [N, 4] face boxes, drawn BATCH faces at a time."""
    images, boxes = [], []
    for start in range(0, len(params), BATCH):
        batch = slice(start, start + BATCH)
        batch_images, batch_boxes = _render_batch(rng, params[batch], {k: v[batch] for k, v in looks.items()}, style)
        images.append(batch_images)
        boxes.append(batch_boxes)
    return np.concatenate(images), np.concatenate(boxes)
