"""One pass over the newest image of several cameras through the shared models.

Each camera does its own part (CameraState: idle gate, detection, tracking), then all
their faces go through FaceNet and the emotion model as one batch each: on a GPU one
large batch costs little more than one face; on a CPU it saves the per-call overhead.
Data flows one way: this module calls the cameras' public steps and the models'
``prepare``/``run``; neither calls back.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from fer_ros.pipeline.engine.camera import CameraState, FrameJob
from fer_ros.pipeline.engine.models import FaceModel, PipelineModels
from fer_ros.pipeline.types import FaceResult


def process_frames(models: PipelineModels,
                   jobs: Sequence[tuple[CameraState, np.ndarray, str, float | None]],
                   ) -> list[list[FaceResult] | Exception]:
    """One image for each (camera, image, color, stamp): faces, or that image's error.

    A frame whose own part fails (a bad image, a detector error) gets its exception in
    its place and the others go on; an error of the shared models is every frame's.
    Every searched frame goes on, with faces or without: tracks age (and end) only when
    the tracker sees the images that no longer hold their face.
    """
    if any(camera.models is not models for camera, *_ in jobs):
        raise ValueError("cameras batched together must share these models")
    frames: list[FrameJob | Exception] = []
    for camera, image, color, stamp in jobs:
        try:
            frames.append(camera.begin(image, color, stamp))
        except Exception as exc:  # this camera's problem only
            frames.append(exc)
    searched = [(camera, f) for (camera, *_), f in zip(jobs, frames, strict=True)
                if isinstance(f, FrameJob) and f.times.searched]
    if searched:
        try:
            _run_models(models, searched)
        except Exception as exc:
            failed = {id(f) for _, f in searched}
            frames = [exc if id(f) in failed else f for f in frames]
    return [f if isinstance(f, Exception) else camera.finish(f)
            for (camera, *_), f in zip(jobs, frames, strict=True)]


def _run_models(models: PipelineModels, searched: list[tuple[CameraState, FrameJob]]) -> None:
    """Plan every frame, run each model once on the faces of all, hand the rows back."""
    for camera, job in searched:
        camera.plan(job)
    live = [(camera, job) for camera, job in searched if job.results]
    t1 = time.perf_counter()
    embeddings = _run_batched(models.embedder, [(job.rgb, job.embed_boxes, job.embed_landmarks)
                                                 for _, job in live])
    t2 = time.perf_counter()
    probabilities = _run_batched(models.classifier, [(job.rgb, job.boxes, None)
                                                     for _, job in live])
    t3 = time.perf_counter()
    for k, (camera, job) in enumerate(live):
        camera.apply(job, embeddings[k], probabilities[k])
        job.times.embed, job.times.emotion = (t2 - t1) * 1e3, (t3 - t2) * 1e3  # shared


def _run_batched(model: FaceModel | None,
                 parts: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]],
                 ) -> list[np.ndarray | None]:
    """The model's rows for each (image, boxes, landmarks), all boxes in one ``run``; None
    per part when the model is off."""
    if model is None:
        return [None] * len(parts)
    inputs = [model.prepare(rgb, boxes, landmarks) for rgb, boxes, landmarks in parts
              if len(boxes)]
    if not inputs:
        return [np.zeros((0,), np.float32) for _ in parts]
    rows = model.run(np.concatenate(inputs))
    out, start = [], 0
    for _, boxes, _ in parts:
        out.append(rows[start:start + len(boxes)])
        start += len(boxes)
    return out
