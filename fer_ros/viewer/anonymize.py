"""Hide faces in an image: each face's box, widened to take in hair and ears, is pixelated
into a few coarse blocks.

Pixelation rather than a Gaussian blur: a blur keeps the low frequencies that a face
recogniser relies on (and can be partly undone), whereas ``BLOCKS`` blocks across a face
leave nothing to match (test/viewer/test_anonymize.py measures the embedding similarity).
Only the faces the pipeline found are hidden: a face it missed, in the first image of a
track or beyond the detector's reach, stays as it is.
"""

from __future__ import annotations

from collections.abc import Iterable

import cv2
import numpy as np

from fer_ros.msg import FaceEmotion

ANONYMIZE = ("none", "strangers", "all")
ANONYMIZE_DESCRIPTION = (
    "Faces to pixelate before anything is drawn or sent on: none, strangers (faces not "
    "named from the gallery: 'unknown', or every face when recognition is off) or all "
    "(then no name is drawn or listed either).")
# Names of faces that are nobody's: the pipeline's UNKNOWN, and "" (recognition off).
# Written here, not imported: fer_ros.pipeline brings torch into the light overlay node
# (test_anonymize.py checks the two agree).
STRANGER_NAMES = ("", "unknown")
BLOCKS = 6  # across a face's width
MARGIN = 0.25  # of the box's size, added on each side


def faces_to_hide(faces: Iterable[FaceEmotion], which: str) -> list[FaceEmotion]:
    """The faces that ``which`` (one of ANONYMIZE) hides."""
    if which == "all":
        return list(faces)
    if which == "strangers":
        return [face for face in faces if face.name in STRANGER_NAMES]
    if which == "none":
        return []
    raise ValueError(f"anonymize: {which!r}, expected one of {', '.join(ANONYMIZE)}")


Box = tuple[int, int, int, int]  # x, y, width, height (a RegionOfInterest's)


def box_of(face: FaceEmotion) -> Box:
    return face.box.x_offset, face.box.y_offset, face.box.width, face.box.height


def hidden_region(box: Box, width: int, height: int) -> tuple[int, int, int, int]:
    """(x1, y1, x2, y2) that hides a face in ``box``: widened by MARGIN, inside the image."""
    x, y, w, h = box
    dx, dy = round(w * MARGIN), round(h * MARGIN)
    return max(x - dx, 0), max(y - dy, 0), min(x + w + dx, width), min(y + h + dy, height)


def pixelate(image: np.ndarray, boxes: Iterable[Box]) -> np.ndarray:
    """A copy of ``image`` with the region of each face box pixelated (the image itself
    unchanged)."""
    out = image.copy()
    height, width = image.shape[:2]
    for box in boxes:
        x1, y1, x2, y2 = hidden_region(box, width, height)
        if x2 - x1 < 1 or y2 - y1 < 1:
            continue
        region = out[y1:y2, x1:x2]
        across = max(1, min(BLOCKS, x2 - x1))
        down = max(1, min(round(BLOCKS * (y2 - y1) / (x2 - x1)), y2 - y1))
        small = cv2.resize(region, (across, down), interpolation=cv2.INTER_AREA)
        out[y1:y2, x1:x2] = cv2.resize(small, (x2 - x1, y2 - y1),
                                       interpolation=cv2.INTER_NEAREST)
    return out
