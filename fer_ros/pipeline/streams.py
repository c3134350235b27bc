"""FaceStreams: several camera streams served by one copy of the models.

Each stream is its own FacePipeline (its own tracks and track ids, idle gate, background
search and stage times), so a face seen on one stream never shows up on another; they
share the detector, FaceNet, the emotion model and the gallery. ``process`` takes the
newest frame of any number of streams and runs all their faces through FaceNet and the
emotion model as one batch each (fer_ros/pipeline/batch.py): on a GPU one large batch
costs little more than one face; on a CPU it saves the per-call overhead.

A stream whose frame fails (a malformed image) gets its exception back and the others
their faces. The stream names are the caller's (the perception node uses them as topic
prefixes); "" is the single default stream.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from fer_ros.pipeline.batch import process_frames
from fer_ros.pipeline.gallery import Gallery
from fer_ros.pipeline.pipeline import FacePipeline, PipelineConfig
from fer_ros.pipeline.types import Detection, FaceResult


class FaceStreams:
    def __init__(self, config: PipelineConfig | None = None,
                 names: Iterable[str] = ("",), models: tuple | None = None) -> None:
        """Load the models once (or share ``models`` = (detector, embedder, classifier))."""
        self.config = config or PipelineConfig()
        # Loads the models and answers for them (names, labels, enrolment crops); it
        # serves no stream, so a stream always starts with nothing of another's.
        self._template = FacePipeline(dataclasses.replace(self.config), models=models)
        self.models = (self._template.detector, self._template.embedder,
                       self._template.classifier)
        self.device = self._template.device
        self._gallery: Gallery | None = None
        self.streams: dict[str, FacePipeline] = {}
        self.set_streams(names)

    def set_streams(self, names: Iterable[str]) -> None:
        """Serve exactly ``names``: streams kept keep their tracks, new ones start empty
        (with the current gallery and settings)."""
        names = list(dict.fromkeys(names))
        if not names:
            raise ValueError("at least one stream is needed")
        streams = {}
        for name in names:
            if name in self.streams:
                streams[name] = self.streams[name]
            else:
                streams[name] = FacePipeline(dataclasses.replace(self.config),
                                             gallery=self._gallery, models=self.models)
        for name, pipeline in self.streams.items():
            if name not in streams:
                pipeline.close()
        self.streams = streams

    def __getitem__(self, name: str) -> FacePipeline:
        return self.streams[name]

    # ------------------------------------------------------------------ frames
    def process(self, frames: Mapping[str, tuple[np.ndarray, str, float | None]],
                ) -> dict[str, list[FaceResult] | Exception]:
        """{stream: (image, color, stamp)} -> {stream: faces, or the frame's exception}."""
        names = list(frames)
        jobs = [(self.streams[name], *frames[name]) for name in names]
        return dict(zip(names, process_frames(jobs), strict=True))

    def embed_largest_face(self, image: np.ndarray, color: str = "rgb",
                           require_single: bool = False) -> tuple[Detection, np.ndarray]:
        return self._template.embed_largest_face(image, color, require_single)

    def configure(self, **changes: Any) -> None:
        """Run-time settings (RUNTIME_SETTINGS) for every stream, now and to come."""
        for pipeline in self.streams.values():
            pipeline.configure(**changes)
        for name, value in changes.items():
            setattr(self.config, name, value)

    def close(self) -> None:
        for pipeline in self.streams.values():
            pipeline.close()

    # ------------------------------------------------------------------ gallery
    @property
    def gallery(self) -> Gallery | None:
        return self._gallery

    def set_gallery(self, gallery: Gallery | None) -> None:
        """One gallery for every stream, now and to come (checked against the model)."""
        self._template.set_gallery(gallery)  # raises GalleryError for a wrong model
        for pipeline in self.streams.values():
            pipeline.set_gallery(gallery)
        self._gallery = gallery

    def new_gallery(self) -> Gallery:
        return self._template.new_gallery()

    # ------------------------------------------------------------------ models
    @property
    def embedder(self) -> Any:
        return self.models[1]

    @property
    def classifier(self) -> Any:
        return self.models[2]

    @property
    def model_name(self) -> str:
        return self._template.model_name

    @property
    def emotion_labels(self) -> tuple[str, ...]:
        return self._template.emotion_labels

    @property
    def backends(self) -> dict[str, str]:
        return self._template.backends
