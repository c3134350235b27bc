"""The five people of the packaged identity set (celebrity/train, celebrity/val), enrolled
from their training photos: what identity tests match against."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from conftest import data_path

from fer_ros.pipeline import FacePipeline, Gallery

PEOPLE = ["ben_afflek", "elton_john", "jerry_seinfeld", "madonna", "mindy_kaling"]


def rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def celebrity_gallery(pipe: FacePipeline, per_person: int = 5) -> Gallery:
    """Each person's first ``per_person`` training photos in which a face is found."""
    gallery = pipe.new_gallery()
    for person in PEOPLE:
        embeddings = []
        for image in sorted(data_path("celebrity", "train", person).glob("*.jpg")):
            try:
                embeddings.append(pipe.embed_largest_face(rgb(image))[1])
            except ValueError:  # a few training photos hold no detectable face
                continue
            if len(embeddings) == per_person:
                break
        gallery.add(person, np.stack(embeddings))
    return gallery
