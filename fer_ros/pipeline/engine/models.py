"""PipelineModels: the models loaded once and shared by every camera.

The detector, the face embedder (SFace or FaceNet, ``embedding_model``) and the emotion
classifier, with what the rest of the system asks
of them (the embedding space's name, the emotion labels, each model's runtime), and the
gallery checks that depend on them. No camera state lives here (engine/camera.py).

The embedder and the emotion classifier are spokes of one shape (``FaceModel``):
``prepare`` turns an image, face boxes and their landmarks into the model's inputs,
``run`` turns a batch of inputs into one output row per face. The batch
(engine/batch.py) is written once for both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from fer_ros.pipeline.config import PipelineConfig
from fer_ros.pipeline.detection.detector import FaceDetector
from fer_ros.pipeline.device import resolve_device
from fer_ros.pipeline.emotion.classifier import EmotionClassifier
from fer_ros.pipeline.images import to_rgb
from fer_ros.pipeline.recognition.facenet import FaceEmbedder
from fer_ros.pipeline.recognition.gallery import Gallery, GalleryError
from fer_ros.pipeline.recognition.sface import SFaceEmbedder
from fer_ros.pipeline.types import Detection


class FaceModel(Protocol):
    """A model that answers one row per face box."""

    def prepare(self, image_rgb: np.ndarray, boxes: np.ndarray,
                landmarks: np.ndarray | None = None) -> np.ndarray: ...

    def run(self, inputs: np.ndarray) -> np.ndarray: ...


def load_embedder(config: PipelineConfig, device: str) -> FaceEmbedder | SFaceEmbedder:
    """The embedding model ``config`` names."""
    if config.embedding_model == "sface":
        if config.facenet_weights:
            raise ValueError("facenet_weights is set, but embedding_model is sface; set "
                             "embedding_model facenet to use those weights")
        return SFaceEmbedder()
    if config.embedding_model == "facenet":
        return FaceEmbedder(config.facenet_weights or None, device=device,
                            backend=config.backend, half=config.half_precision)
    raise ValueError(f"embedding_model must be sface or facenet, not "
                     f"{config.embedding_model!r}")


class PipelineModels:
    """The loaded models. ``embedder`` or ``classifier`` is None when that stage is off."""

    def __init__(self, detector: Any, embedder: FaceEmbedder | None,
                 classifier: EmotionClassifier | None, device: str) -> None:
        self.detector = detector
        self.embedder = embedder
        self.classifier = classifier
        self.device = device

    @classmethod
    def load(cls, config: PipelineConfig) -> PipelineModels:
        """The models ``config`` asks for, on its device."""
        device = resolve_device(config.device)
        detector = FaceDetector(min_face_size=config.min_face_size,
                                thresholds=tuple(config.detection_thresholds),
                                downscale=config.downscale, device=device,
                                min_score=config.detection_min_score,
                                max_width=config.search_max_width,
                                search=config.face_search)
        embedder = classifier = None
        if config.recognition:
            embedder = load_embedder(config, device)
        if config.emotion:
            classifier = EmotionClassifier(config.emotion_weights or None, device=device,
                                           backend=config.backend, half=config.half_precision)
        return cls(detector, embedder, classifier, device)

    @classmethod
    def of(cls, models: PipelineModels | Sequence[Any] | None,
           config: PipelineConfig) -> PipelineModels:
        """``models`` as given (or a (detector, embedder, classifier) tuple), else loaded."""
        if models is None:
            return cls.load(config)
        if isinstance(models, PipelineModels):
            return models
        detector, embedder, classifier = models
        return cls(detector, embedder, classifier, resolve_device(config.device))

    def __iter__(self):  # (detector, embedder, classifier), as older callers unpack them
        return iter((self.detector, self.embedder, self.classifier))

    # ------------------------------------------------------------------ what they are
    @property
    def backends(self) -> dict[str, str]:
        """The runtime of each model, e.g. {"embedder": "onnxruntime", "emotion": "torch"}."""
        models = (("embedder", self.embedder), ("emotion", self.classifier))
        return {name: getattr(m, "backend", "torch") for name, m in models if m is not None}

    @property
    def model_name(self) -> str:
        """The embedding space's name ("" without recognition)."""
        return self.embedder.model_name if self.embedder is not None else ""

    @property
    def emotion_labels(self) -> tuple[str, ...]:
        return tuple(self.classifier.labels) if self.classifier is not None else ()

    def decision(self, config: PipelineConfig) -> tuple[float, float]:
        """(threshold, margin) that name a face: ``config``'s, or the embedder's calibrated
        values where ``config`` leaves them negative."""
        threshold, margin = config.recognition_threshold, config.recognition_margin
        if self.embedder is not None:
            threshold = threshold if threshold >= 0 else self.embedder.threshold
            margin = margin if margin >= 0 else self.embedder.margin
        return max(threshold, 0.0), max(margin, 0.0)

    def same_person(self, config: PipelineConfig) -> float:
        """Similarity at which a face is still its track's person: ``config``'s
        track_similarity, or the embedder's calibrated value where it is negative."""
        value = config.track_similarity
        if value < 0 and self.embedder is not None:
            value = self.embedder.same_person
        return max(value, 0.0)

    # ------------------------------------------------------------------ galleries
    def check_gallery(self, gallery: Gallery) -> None:
        """GalleryError unless ``gallery`` is in this embedder's space."""
        if self.embedder is None:
            return
        gallery.check_model(self.embedder.model_name)
        if gallery.dim != self.embedder.dim:
            raise GalleryError(f"gallery embeddings have {gallery.dim} values, the model "
                               f"gives {self.embedder.dim}")

    def new_gallery(self) -> Gallery:
        if self.embedder is None:
            raise GalleryError("recognition is disabled: no embedding model")
        return Gallery(self.embedder.model_name, self.embedder.dim)

    def embed_largest_face(self, image: np.ndarray, color: str = "rgb",
                           require_single: bool = False) -> tuple[Detection, np.ndarray]:
        """Detect, then embed the largest face (enrolment). Raises ValueError if none."""
        if self.embedder is None:
            raise ValueError("recognition is disabled: no embedding model")
        rgb = to_rgb(image, color)
        detections = self.detector.detect(rgb)
        if not detections:
            raise ValueError("no face found")
        if require_single and len(detections) > 1:
            raise ValueError(f"{len(detections)} faces found, expected exactly one")
        largest = max(detections, key=lambda d: d.area)
        landmarks = None if largest.landmarks is None else largest.landmarks[None]
        return largest, self.embedder.embed(rgb, largest.box[None, :], landmarks)[0]
