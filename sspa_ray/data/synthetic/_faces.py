"""The faces of one synthetic split before they are drawn: expression parameters, identities,
labels under an annotation standard, and valence and arousal as annotators give them.

A sample is a latent expression with a random intensity, plus a per-identity resting face and noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sspa_ray.data.synthetic._annotation import PROTOTYPES, TARGET_STANDARD, AnnotationStandard, valence_arousal
from sspa_ray.data.synthetic._render import PARAMS, identity_looks
from sspa_ray.labels import AFFECTNET_DROPPED, CLASSES

# Annotators' noise on valence and arousal: two of AffectNet's annotators differ by an RMSE of 0.34
# (valence) and 0.36 (arousal), so each is about 0.25 from the truth.
VA_NOISE = 0.25


@dataclass
class Faces:
    """One split before it is drawn: each face's expression parameters, looks and labels."""

    seed: np.random.SeedSequence  # the split's stream; each rendering chunk takes a child of it
    params: np.ndarray        # [N, P]
    looks: dict[str, np.ndarray]  # identity features, one row per face
    labels: np.ndarray        # int64 [N] under the split's own standard; -1 for dropped rows
    true_labels: np.ndarray   # int64 [N] under the noiseless target standard
    dropped_codes: np.ndarray  # int64 [N] AffectNet code 7..10 for rows to drop, else -1
    annotated_va: np.ndarray  # [N, 2] valence and arousal as annotators give them (true + noise)


def expressions(rng: np.random.Generator, n: int, prior: np.ndarray, n_identities: int,
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


def sample_faces(seed: np.random.SeedSequence, n: int, prior: np.ndarray, standard: AnnotationStandard, n_dropped: int = 0) -> Faces:
    """One split's faces: n labelled ones (plus n_dropped rows with AffectNet codes 7..10)."""
    rng = np.random.default_rng(seed)
    total = n + n_dropped
    n_identities = max(8, total // 8)
    params, identity = expressions(rng, total, prior, n_identities)
    looks = identity_looks(rng, n_identities)
    labels = standard.label(params, rng)
    true_labels = TARGET_STANDARD.label(params, None)
    dropped_codes = np.full(total, -1, dtype=np.int64)
    if n_dropped:
        where = rng.choice(total, size=n_dropped, replace=False)
        dropped_codes[where] = rng.choice(sorted(AFFECTNET_DROPPED), size=n_dropped)
        labels[where] = -1
    annotated_va = np.clip(valence_arousal(params) + rng.normal(0.0, VA_NOISE, (total, 2)), -1.0, 1.0)
    return Faces(seed, params, {k: v[identity] for k, v in looks.items()}, labels, true_labels, dropped_codes,
                 annotated_va)
