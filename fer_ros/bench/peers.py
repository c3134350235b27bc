"""In-process benchmark runners on the same frames, and identity accuracy.

(a) ``naive``: the original system's loop: facenet-pytorch's MTCNN as shipped on the full
    frame, then FaceNet and the emotion model on every face of every frame, no tracking.
(b) ``face_recognition``: the face_recognition library (dlib HOG detector, upsampled once
    as its default, and the 128-d ResNet encoder) on every face of every frame.
(c') ``ours``: FacePipeline with the perception node's settings (tracking on).
Identity accuracy: enrol the 5-celebrity training images, identify the validation images,
top-1 nearest enrolled embedding; an image where no face is found counts as wrong.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch

from fer_ros.assets.datasets import dataset_dir
from fer_ros.pipeline.detection.tv_compat import import_facenet_pytorch
from fer_ros.pipeline.images import read_image_rgb
from fer_ros.pipeline.recognition.gallery import Gallery

PEERS = ("naive", "face_recognition", "ours")


class PeerUnavailable(RuntimeError):
    """A peer library is not installed (``make bench`` installs it)."""


def _face_recognition():
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # face_recognition_models uses pkg_resources
            # Imported here: only `make bench` installs it (requirements/bench.txt).
            import face_recognition
    except ImportError as exc:
        raise PeerUnavailable(f"face_recognition is not installed ({exc}); run `make bench` "
                              "(FER_ROS_BENCH=1 bash scripts/setup_venv.sh)") from exc
    return face_recognition


class Naive:
    """MTCNN (facenet-pytorch, full resolution, its own resampling) + FaceNet + emotion."""

    def __init__(self, models: tuple) -> None:
        facenet_pytorch = import_facenet_pytorch()
        # The original system's settings: facenet-pytorch's defaults, all faces.
        self.mtcnn = facenet_pytorch.MTCNN(keep_all=True, post_process=False, device="cpu")
        _, self.embedder, self.classifier = models

    def boxes(self, rgb: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            boxes, _ = self.mtcnn.detect(rgb)
        if boxes is None or len(boxes) == 0:
            return np.zeros((0, 4))
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, rgb.shape[1])
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, rgb.shape[0])
        keep = (boxes[:, 2] > boxes[:, 0] + 1) & (boxes[:, 3] > boxes[:, 1] + 1)
        return boxes[keep]

    def frame(self, rgb: np.ndarray) -> int:
        boxes = self.boxes(rgb)
        if len(boxes):
            self.embedder.embed(rgb, boxes)
            self.classifier.predict(rgb, boxes)
        return len(boxes)

    def embed_largest(self, rgb: np.ndarray) -> np.ndarray | None:
        boxes = self.boxes(rgb)
        if not len(boxes):
            return None
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        return self.embedder.embed(rgb, boxes[[int(np.argmax(areas))]])[0]


class FaceRecognitionLib:
    """face_recognition: HOG detector (1 upsample, its default) + dlib 128-d ResNet."""

    def __init__(self) -> None:
        self.fr = _face_recognition()

    def frame(self, rgb: np.ndarray) -> int:
        locations = self.fr.face_locations(rgb)
        if locations:
            self.fr.face_encodings(rgb, locations)
        return len(locations)

    def embed_largest(self, rgb: np.ndarray) -> np.ndarray | None:
        locations = self.fr.face_locations(rgb)
        if not locations:
            return None
        largest = max(locations, key=lambda b: (b[2] - b[0]) * (b[1] - b[3]))
        return np.asarray(self.fr.face_encodings(rgb, [largest])[0], np.float64)


class Ours:
    """FacePipeline as the perception node runs it."""

    def __init__(self, pipeline) -> None:
        self.pipeline = pipeline
        self.t = 0.0

    def frame(self, rgb: np.ndarray) -> int:
        self.t += 1 / 30.0
        return len(self.pipeline.process(rgb, color="rgb", stamp=self.t))

    def embed_largest(self, rgb: np.ndarray) -> np.ndarray | None:
        try:
            return self.pipeline.embed_largest_face(rgb)[1]
        except ValueError:
            return None


def time_frames(runner, frames_bgr: list[np.ndarray], warmup: int = 1) -> dict:
    """Per-frame wall time of ``runner.frame`` over the frames (after ``warmup`` frames)."""
    rgbs = [cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in frames_bgr]
    for rgb in rgbs[:warmup]:
        runner.frame(rgb)
    times, faces = [], []
    for rgb in rgbs:
        start = time.perf_counter()
        faces.append(runner.frame(rgb))
        times.append((time.perf_counter() - start) * 1e3)
    arr = np.asarray(times)
    return {"frames": len(arr), "fps": round(1e3 / arr.mean(), 2) if len(arr) else 0.0,
            "ms_mean": round(float(arr.mean()), 1),
            "ms_p50": round(float(np.percentile(arr, 50)), 1),
            "ms_p95": round(float(np.percentile(arr, 95)), 1),
            "ms_max": round(float(arr.max()), 1),
            "faces_mean": round(float(np.mean(faces)), 2),
            "series_ms": [round(t, 1) for t in times]}


def celebrity_split(limit: int = 0) -> tuple[dict[str, list[Path]], dict[str, list[Path]]]:
    root = dataset_dir("celebrity")

    def listing(part: str) -> dict[str, list[Path]]:
        people = sorted(p for p in (root / part).iterdir() if p.is_dir())
        return {p.name: sorted(p.glob("*.jpg"))[:limit or None] for p in people}

    return listing("train"), listing("val")


def identity_accuracy(embed_largest: Callable[[np.ndarray], np.ndarray | None],
                      limit: int = 0, cosine: bool = True) -> dict:
    """Top-1 identity accuracy: enrol train, identify val (nearest enrolled embedding)."""
    train, val = celebrity_split(limit)
    gallery, labels = [], []
    for name, paths in train.items():
        for path in paths:
            emb = embed_largest(read_image_rgb(path))
            if emb is not None:
                gallery.append(emb)
                labels.append(name)
    if not gallery:
        return {"top1": 0.0, "correct": 0, "total": 0, "enrolled": 0}
    g = np.stack(gallery).astype(np.float64)
    correct = total = missed = 0
    for name, paths in val.items():
        for path in paths:
            total += 1
            emb = embed_largest(read_image_rgb(path))
            if emb is None:
                missed += 1
                continue
            e = np.asarray(emb, np.float64)
            if cosine:
                score = (g @ e) / (np.linalg.norm(g, axis=1) * np.linalg.norm(e) + 1e-12)
                best = int(np.argmax(score))
            else:  # face_recognition's own measure: Euclidean distance
                best = int(np.argmin(np.linalg.norm(g - e, axis=1)))
            correct += labels[best] == name
    return {"top1": round(correct / total, 3) if total else 0.0, "correct": correct,
            "total": total, "no_face": missed, "enrolled": len(labels)}


def ours_named_accuracy(pipeline, limit: int = 0) -> dict:
    """Our pipeline's answer with its threshold and margin (a name or 'unknown')."""
    train, val = celebrity_split(limit)
    gallery = Gallery(pipeline.embedder.model_name, pipeline.embedder.dim)
    for name, paths in train.items():
        embs = []
        for path in paths:
            try:
                embs.append(pipeline.embed_largest_face(read_image_rgb(path))[1])
            except ValueError:
                continue
        if embs:
            gallery.add(name, np.stack(embs), [str(p) for p in paths])
    correct = unknown = wrong = 0
    decision = pipeline.decision
    for name, paths in val.items():
        for path in paths:
            try:
                emb = pipeline.embed_largest_face(read_image_rgb(path))[1]
            except ValueError:
                unknown += 1
                continue
            match = gallery.match(emb[None], *decision)[0]
            if match.name == name:
                correct += 1
            elif match.name == "unknown":
                unknown += 1
            else:
                wrong += 1
    total = correct + unknown + wrong
    return {"named_correct": round(correct / total, 3) if total else 0.0,
            "unknown": unknown, "wrong_name": wrong, "total": total, "gallery": gallery}


def stage_times(pipeline, frames_bgr: dict[str, list[np.ndarray]], repeats: int = 10) -> dict:
    """Median milliseconds of each stage alone: full detection and refinement per frame,
    embedding and emotion per face (one face alone, and per face in a batch of all the
    frame's faces)."""
    out: dict[str, float] = {}

    def median_ms(call, *args) -> float:
        call(*args)  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            call(*args)
            times.append((time.perf_counter() - start) * 1e3)
        return round(float(np.median(times)), 1)

    for name, frames in frames_bgr.items():
        rgb = cv2.cvtColor(frames[0], cv2.COLOR_BGR2RGB)
        faces = pipeline.detector.detect(rgb)
        if not faces:
            continue
        boxes = np.stack([f.box for f in faces])
        n = len(boxes)
        out[f"detect_full_{name}_per_frame"] = median_ms(pipeline.detector.detect, rgb)
        out[f"detect_refine_{name}_per_frame"] = median_ms(pipeline.detector.refine, rgb, boxes)
        stages = (("embed", pipeline.embedder and pipeline.embedder.embed),
                  ("emotion", pipeline.classifier and pipeline.classifier.predict))
        for stage, call in stages:
            if call is None:
                continue
            out[f"{stage}_per_face_batch1"] = median_ms(call, rgb, boxes[:1])
            if n > 1:
                out[f"{stage}_per_face_batch{n}"] = round(median_ms(call, rgb, boxes) / n, 1)
    return out
