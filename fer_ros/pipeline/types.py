"""The typed values that flow through the face pipeline.

Images are numpy arrays of shape (H, W, 3), dtype uint8, in **RGB** order unless a
function says otherwise. Boxes are (x1, y1, x2, y2) in pixels of that image.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# The name of a face that matches nobody in the gallery (or no gallery is loaded).
UNKNOWN = "unknown"


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise intersection-over-union of boxes (N,4) and (M,4), x1 y1 x2 y2."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


@dataclass
class Detection:
    """One face found by the detector."""

    box: np.ndarray  # (4,) float32: x1, y1, x2, y2 in pixels
    score: float  # detector face probability, [0, 1]
    # (5, 2) float32 pixels: left eye, right eye, nose, left mouth, right mouth; or None
    landmarks: np.ndarray | None = None

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def height(self) -> float:
        return float(self.box[3] - self.box[1])

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)


@dataclass
class FaceResult:
    """Everything the pipeline knows about one face in one frame."""

    detection: Detection
    track_id: int = 0  # 0 = untracked
    name: str = ""  # gallery label, "unknown", or "" when recognition is off
    similarity: float = 0.0  # cosine similarity to the best gallery match
    emotion: str = ""  # argmax label, "" when emotion is off
    emotion_score: float = 0.0
    emotion_labels: tuple[str, ...] = ()
    emotion_scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    emotion_scores_raw: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    embedding: np.ndarray | None = None  # (D,) L2-normalised, when computed this frame

    @property
    def box(self) -> np.ndarray:
        return self.detection.box

    @property
    def score(self) -> float:
        return self.detection.score

    def to_json(self) -> dict:
        """The JSON object of `fer-ros identify` (without the "image" key)."""
        return {
            "box": [round(float(v), 1) for v in self.box],
            "score": round(float(self.score), 4),
            "track_id": self.track_id,
            "name": self.name,
            "similarity": round(float(self.similarity), 4),
            "emotion": self.emotion,
            "emotion_score": round(float(self.emotion_score), 4),
            "emotion_scores": {label: round(float(p), 4)
                               for label, p in zip(self.emotion_labels, self.emotion_scores,
                                                   strict=False)},
        }


@dataclass
class StageTimes:
    """What the last frame cost: milliseconds per stage and what was done."""

    detect: float = 0.0
    embed: float = 0.0
    emotion: float = 0.0
    total: float = 0.0
    faces: int = 0
    embedded: int = 0  # faces embedded before the frame was returned
    # False: the idle gate skipped the image (nobody tracked, nothing changed): no faces.
    searched: bool = True
    full_detection: bool = False  # the whole image was searched (not only tracked faces)
    reembed_background: int = 0  # tracked faces handed to the background re-embedding
