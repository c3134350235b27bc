"""Frames of several streams through the shared models at once (cross-stream batching).

``FacePipeline.process`` is ``process_frames`` with one frame; a multi-camera node
(fer_ros/pipeline/streams.py) passes the newest frame of every stream, so all their faces
go through FaceNet and the emotion model in one batch each, while each stream keeps its
own tracks, idle gate and background search (one FacePipeline per stream).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from fer_ros.pipeline.gallery import Gallery
from fer_ros.pipeline.types import FaceResult, StageTimes

if TYPE_CHECKING:  # pipeline.py imports this module
    from fer_ros.pipeline.pipeline import FacePipeline


@dataclass
class Frame:
    """One frame on its way through the pipeline (see process_frames)."""

    rgb: np.ndarray
    stamp: float
    t0: float  # perf_counter at the start
    results: list[FaceResult]
    times: StageTimes
    gallery: Gallery | None = None
    tracks: list = field(default_factory=list)
    thumbs: list = field(default_factory=list)
    to_embed: list[int] = field(default_factory=list)


def process_frames(jobs: Sequence[tuple[FacePipeline, np.ndarray, str, float | None]],
                   ) -> list[list[FaceResult] | Exception]:
    """One frame for each (pipeline, image, color, stamp), all faces of all frames through
    FaceNet and the emotion model as one batch each.

    The pipelines are separate streams (their own tracks, idle gates and searches) that
    share one embedder and one classifier (``FacePipeline(models=...)``). A frame whose
    own part fails (a bad image, a detector error) gets its exception in its place and
    the others go on; an error of the shared models is every frame's.
    """
    frames: list[Frame | Exception] = []
    for pipeline, image, color, stamp in jobs:
        try:
            frames.append(pipeline._begin(image, color, stamp))
        except Exception as exc:  # this stream's problem only
            frames.append(exc)
    # Every searched frame goes on, with faces or without: tracks age (and end) only
    # when the tracker sees the frames that no longer hold their face.
    searched = [(p, f) for (p, *_), f in zip(jobs, frames, strict=True)
                if isinstance(f, Frame) and f.times.extra["searched"]]
    if searched:
        try:
            _batch_models(searched)
        except Exception as exc:
            failed = {id(f) for _, f in searched}
            frames = [exc if id(f) in failed else f for f in frames]
    return [f if isinstance(f, Exception) else p._end(f)
            for (p, *_), f in zip(jobs, frames, strict=True)]


def _batch_models(searched: list[tuple[FacePipeline, Frame]]) -> None:
    """Tracking for every searched frame, then FaceNet and emotion for the faces of all of
    them, each model run once."""
    embedder, classifier = searched[0][0].embedder, searched[0][0].classifier
    if any(p.embedder is not embedder or p.classifier is not classifier for p, _ in searched):
        raise ValueError("pipelines batched together must share their models")
    with ExitStack() as held:
        for lock in dict.fromkeys(p._lock for p, _ in searched):  # each once, fixed order
            held.enter_context(lock)
        for pipeline, frame in searched:
            pipeline._plan(frame)
        live = [(p, f) for p, f in searched if f.results]
        t1 = time.perf_counter()
        if embedder is not None and live:
            crops = [embedder.crop(f.rgb, np.stack([f.results[i].box for i in f.to_embed]))
                     for _, f in live if f.to_embed]
            embeddings = (embedder.embed_crops(np.concatenate(crops)) if crops
                          else np.zeros((0, embedder.dim), np.float32))
            start = 0
            for pipeline, frame in live:
                n = len(frame.to_embed)
                pipeline._name(frame, embeddings[start:start + n])
                start += n
        t2 = time.perf_counter()
        if classifier is not None and live:
            inputs = np.concatenate([classifier.inputs(f.rgb, np.stack([r.box for r in f.results]))
                                     for _, f in live])
            probs = classifier.predict_inputs(inputs)
            start = 0
            for pipeline, frame in live:
                pipeline._feel(frame, probs[start:start + len(frame.results)])
                start += len(frame.results)
        t3 = time.perf_counter()
    for _, frame in live:  # the batch's time, shared by its frames
        frame.times.embed, frame.times.emotion = (t2 - t1) * 1e3, (t3 - t2) * 1e3
