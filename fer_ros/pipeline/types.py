"""The typed values that flow through the face pipeline.

Images are numpy arrays of shape (H, W, 3), dtype uint8, in **RGB** order unless a
function says otherwise. Boxes are (x1, y1, x2, y2) in pixels of that image.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


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
    """Milliseconds spent in each stage for the last frame."""

    detect: float = 0.0
    embed: float = 0.0
    emotion: float = 0.0
    total: float = 0.0
    faces: int = 0
    embedded: int = 0
    extra: dict = field(default_factory=dict)
