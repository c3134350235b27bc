"""FaceStreams and FacePipeline: the face pipeline's front door.

``FaceStreams`` serves several cameras ("streams") with one copy of the models
(PipelineModels): each stream has its own CameraState (tracks and track ids, idle gate,
background search, stage times), so a face seen on one stream never shows up on another;
they share the detector, FaceNet, the emotion model and the gallery. ``process`` takes
the newest image of any number of streams and batches their faces (engine/batch.py).
A stream whose image fails (a malformed image) gets its exception back and the others
their faces. Stream names are the caller's (the perception node uses them as topic
prefixes); "" is the single default stream.

``FacePipeline`` is FaceStreams of one camera: ``process(image, color="rgb"|"bgr",
stamp=seconds)`` gives every face of the image. With tracking on, a face is embedded
only when its track is new, every ``reembed_interval`` images, or when it has grown
markedly (a closer, better view); its name is the vote over the track's recent
embeddings, and its emotion probabilities are smoothed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from fer_ros.pipeline.config import PipelineConfig
from fer_ros.pipeline.engine.batch import process_frames
from fer_ros.pipeline.engine.camera import CameraState
from fer_ros.pipeline.engine.models import PipelineModels
from fer_ros.pipeline.images import to_rgb
from fer_ros.pipeline.recognition.gallery import Gallery
from fer_ros.pipeline.types import Detection, FaceResult, StageTimes


class FaceStreams:
    def __init__(self, config: PipelineConfig | None = None, names: Iterable[str] = ("",),
                 models: PipelineModels | Sequence[Any] | None = None) -> None:
        """Load the models once (or share ``models``: PipelineModels, or a (detector,
        embedder, classifier) tuple)."""
        self.config = config or PipelineConfig()
        self.models = PipelineModels.of(models, self.config)
        self._gallery: Gallery | None = None
        self.streams: dict[str, CameraState] = {}
        self.set_streams(names)

    def set_streams(self, names: Iterable[str]) -> None:
        """Serve exactly ``names``: streams kept keep their tracks, new ones start empty
        (with the current gallery and settings)."""
        names = list(dict.fromkeys(names))
        if not names:
            raise ValueError("at least one stream is needed")
        streams = {name: self.streams.get(name)
                   or CameraState(self.config.changed(), self.models, self._gallery)
                   for name in names}
        for name, camera in self.streams.items():
            if name not in streams:
                camera.close()
        self.streams = streams

    def __getitem__(self, name: str) -> CameraState:
        return self.streams[name]

    # ------------------------------------------------------------------ images
    def process(self, frames: Mapping[str, tuple[np.ndarray, str, float | None]],
                ) -> dict[str, list[FaceResult] | Exception]:
        """{stream: (image, color, stamp)} -> {stream: faces, or the image's exception}."""
        names = list(frames)
        jobs = [(self.streams[name], *frames[name]) for name in names]
        return dict(zip(names, process_frames(self.models, jobs), strict=True))

    def embed_largest_face(self, image: np.ndarray, color: str = "rgb",
                           require_single: bool = False) -> tuple[Detection, np.ndarray]:
        """Detect, then embed the largest face (enrolment). Raises ValueError if none."""
        return self.models.embed_largest_face(image, color, require_single)

    def configure(self, **changes: Any) -> None:
        """Run-time settings (RUNTIME_SETTINGS) for every stream, now and to come."""
        for camera in self.streams.values():
            camera.configure(**changes)
        for name, value in changes.items():
            setattr(self.config, name, value)

    def close(self) -> None:
        """End the streams' background threads (the models stay)."""
        for camera in self.streams.values():
            camera.close()

    # ------------------------------------------------------------------ gallery
    @property
    def gallery(self) -> Gallery | None:
        return self._gallery

    def set_gallery(self, gallery: Gallery | None) -> None:
        """One gallery for every stream, now and to come: checked against the model
        (GalleryError), and a large one's index built here, never in an image."""
        if gallery is not None:
            self.models.check_gallery(gallery)
            gallery.prepare()
        for camera in self.streams.values():
            camera.set_gallery(gallery)
        self._gallery = gallery

    def new_gallery(self) -> Gallery:
        return self.models.new_gallery()

    # ------------------------------------------------------------------ models
    @property
    def device(self) -> str:
        return self.models.device

    @property
    def detector(self) -> Any:
        return self.models.detector

    @property
    def embedder(self) -> Any:
        return self.models.embedder

    @property
    def classifier(self) -> Any:
        return self.models.classifier

    @property
    def model_name(self) -> str:
        return self.models.model_name

    @property
    def emotion_labels(self) -> tuple[str, ...]:
        return self.models.emotion_labels

    @property
    def decision(self) -> tuple[float, float]:
        """(threshold, margin) that name a face: the configured ones, or the embedding
        model's calibrated ones where the config leaves them negative."""
        return self.models.decision(self.config)

    @property
    def backends(self) -> dict[str, str]:
        return self.models.backends


class FacePipeline(FaceStreams):
    """FaceStreams of one camera: ``process`` takes one image.

    The pipeline works on its own copy of ``config`` (``self.config``): change settings
    at run time with ``configure``, not by editing the object passed in."""

    def __init__(self, config: PipelineConfig | None = None, gallery: Gallery | None = None,
                 models: PipelineModels | Sequence[Any] | None = None) -> None:
        super().__init__(config, ("",), models)
        self.camera = self.streams[""]
        self.config = self.camera.config  # run-time changes show here, as they apply
        if gallery is not None:
            self.set_gallery(gallery)

    def set_streams(self, names: Iterable[str]) -> None:
        if list(names) != [""] or self.streams:
            raise ValueError("a FacePipeline serves one camera: use FaceStreams for more")
        super().set_streams([""])

    def process(self, image: np.ndarray, color: str = "rgb",  # type: ignore[override]
                stamp: float | None = None) -> list[FaceResult]:
        """All faces in one image. ``stamp`` (seconds) drives track ageing.

        With ``idle_detection_rate`` set, an image seen while nobody is tracked may not be
        searched (IdleGate): it gives [] and ``last_times.searched`` is False.
        """
        result = process_frames(self.models, [(self.camera, image, color, stamp)])[0]
        if isinstance(result, Exception):
            raise result
        return result

    def configure(self, **changes: Any) -> None:
        self.camera.configure(**changes)

    # What the one camera remembers, for callers that look into it.
    @property
    def last_times(self) -> StageTimes:
        return self.camera.last_times

    @property
    def tracker(self) -> Any:
        return self.camera.tracker

    @property
    def idle(self) -> Any:
        return self.camera.idle

    @property
    def search(self) -> Any:
        return self.camera.search

    @property
    def reembed_errors(self) -> int:
        return self.camera.reembed_errors

    @staticmethod
    def to_rgb(image: np.ndarray, color: str) -> np.ndarray:
        return to_rgb(image, color)
