"""The bench's identity row: each embedding model on the packaged faces, open-set.

Enrol the 5-celebrity training photos (the largest face of each), then score the 25
validation photos (genuine attempts) and every face of the packaged photos of people who
are not enrolled (strangers, fer_ros.assets.datasets.STRANGER_PHOTOS) with the model's
calibrated threshold and margin: top-1, named correctly, strangers called unknown, the gap
between the lowest genuine and the highest stranger score, TAR at FAR and EER
(fer_ros.pipeline.recognition.openset), and the model's cost per face on one thread.
Faces are found once and embedded by each model, so the models see the same crops.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from fer_ros.assets.datasets import stranger_photos
from fer_ros.bench.backends import median_ms
from fer_ros.bench.peers import celebrity_split
from fer_ros.pipeline.images import read_image_rgb
from fer_ros.pipeline.recognition import openset
from fer_ros.pipeline.recognition.facenet import FaceEmbedder
from fer_ros.pipeline.recognition.gallery import Gallery
from fer_ros.pipeline.recognition.sface import SFaceEmbedder
from fer_ros.pipeline.types import Detection

MODELS: dict[str, Callable[[], object]] = {
    "sface": lambda: SFaceEmbedder(threads=1),
    "facenet": lambda: FaceEmbedder(backend="auto", threads=1),
}
Faces = dict[Path, tuple[np.ndarray, list[Detection]]]
ByPerson = dict[str, list[Path]]


def find_faces(detector, enrol_limit: int = 0) -> tuple[ByPerson, ByPerson, Faces]:
    """(training photos by person, the first ``enrol_limit`` (0: all) in which a face is
    found; validation photos by person; every photo's faces)."""
    train, val = celebrity_split()
    faces: Faces = {}
    for path in [p for paths in (*train.values(), *val.values()) for p in paths] + \
            stranger_photos():
        image = read_image_rgb(path)
        faces[path] = (image, detector.detect(image))
    train = {person: [p for p in paths if faces[p][1]][:enrol_limit or None]
             for person, paths in train.items()}
    return train, val, faces


def _embed(embedder, faces: Faces, path: Path, largest: bool) -> np.ndarray:
    image, found = faces[path]
    if not found:
        return np.zeros((0, embedder.dim), np.float32)
    chosen = [max(found, key=lambda d: d.area)] if largest else found
    return embedder.embed(image, np.stack([d.box for d in chosen]),
                          np.stack([d.landmarks for d in chosen]))


def scores(embedder, train: ByPerson, val: ByPerson,
           faces: Faces) -> tuple[openset.OpenSetScores, int]:
    """Open-set scores of one model, and how many validation photos held no face."""
    gallery = Gallery(embedder.model_name, embedder.dim)
    for person, paths in train.items():
        rows = [_embed(embedder, faces, p, True) for p in paths]
        rows = [r for r in rows if len(r)]
        if rows:
            gallery.add(person, np.concatenate(rows))
    embeddings, labels, missed = [], [], 0
    for person, paths in val.items():
        for path in paths:
            row = _embed(embedder, faces, path, True)
            missed += not len(row)
            embeddings += list(row)
            labels += [person] * len(row)
    for path in stranger_photos():
        rows = _embed(embedder, faces, path, False)
        embeddings += list(rows)
        labels += [None] * len(rows)
    per_person, names = gallery.similarities(np.stack(embeddings))
    return openset.scores_from_similarities(per_person, names, labels), missed


def cost_ms(embedder, faces: Faces, repeats: int = 20) -> float:
    """Median ms to embed one face (alignment or crop included), one thread."""
    image, found = next(v for v in faces.values() if v[1])
    box, points = found[0].box[None], found[0].landmarks[None]
    return round(median_ms(lambda: embedder.embed(image, box, points), repeats), 1)


def measure(detector, enrol_limit: int = 0) -> dict[str, dict]:
    """The identity row of each model (see the module docstring), each person enrolled from
    ``enrol_limit`` training photos (0: all of them)."""
    train, val, faces = find_faces(detector, enrol_limit)
    out: dict[str, dict] = {}
    for name, make in MODELS.items():
        embedder = make()
        found, missed = scores(embedder, train, val, faces)
        figures = openset.summary(found, embedder.threshold, embedder.margin)
        out[name] = {"model": embedder.model_name, **figures, "val_without_face": missed,
                     "enrolled_per_person": min(len(paths) for paths in train.values()),
                     "ms_per_face": cost_ms(embedder, faces)}
    return out


def run(enrol_limit: int = 0) -> dict[str, dict]:
    """``fer-ros bench --identity``: :func:`measure` with the stills detector, on one thread."""
    import torch

    from fer_ros.pipeline import FacePipeline, PipelineConfig

    torch.set_num_threads(1)
    detector = FacePipeline(PipelineConfig.stills(device="cpu", emotion=False,
                                                  recognition=False)).detector
    return measure(detector, enrol_limit)
