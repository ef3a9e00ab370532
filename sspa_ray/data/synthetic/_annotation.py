"""The synthetic benchmark's annotation standards: how annotators turn a face into a label.

A standard labels a face with the nearest expression prototype in parameter space, as seen by a
slightly noisy annotator. The target's standard is the benchmark's truth; the aux standard has
shifted class boundaries and systematic confusions. Valence and arousal are a fixed function of
the same parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sspa_ray.data.synthetic._render import P
from sspa_ray.labels import CLASS_INDEX, CLASSES

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
