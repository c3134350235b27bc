"""Face detection with facenet-pytorch's MTCNN (every face, boxes and 5 landmarks).

The MTCNN weights ship inside the facenet-pytorch wheel (``facenet_pytorch/data``);
they are checked by SHA-256 before use, never downloaded.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from fer_ros.assets import AssetError, sha256_of
from fer_ros.pipeline.images import check_image
from fer_ros.pipeline.types import Detection, iou_matrix

# facenet-pytorch==2.6.0, facenet_pytorch/data/*.pt
MTCNN_WEIGHTS_SHA256 = {
    "pnet.pt": "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f",
    "rnet.pt": "bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86",
    "onet.pt": "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d",
}
# PNet's receptive field: MTCNN cannot see faces smaller than this in the image it is given.
_PNET_MIN_FACE = 12


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


class ChannelsLastMaxPool2d(nn.Module):
    """The same max pool, computed in channels-last layout.

    torch 2.13's CPU max_pool2d on NCHW batches is slow: on MTCNN's R/O-Net batches
    (e.g. 158x28x22x22) it takes 4x longer than on the channels-last copy, and the pools
    were about a third of a detection. Max is exact, so the results are identical.
    """

    def __init__(self, pool: nn.MaxPool2d) -> None:
        super().__init__()
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x.contiguous(memory_format=torch.channels_last)).contiguous()


def _speed_up_pools(net: nn.Module) -> int:
    count = 0
    for name, child in list(net.named_children()):
        if isinstance(child, nn.MaxPool2d):
            setattr(net, name, ChannelsLastMaxPool2d(child))
            count += 1
        else:
            count += _speed_up_pools(child)
    return count


def _nms(boxes: np.ndarray, scores: np.ndarray, threshold: float,
         mode: str = "union") -> np.ndarray:
    """Greedy NMS, indices kept by falling score. ``union``: IoU on x2-x1 sides (as
    torchvision); ``min``: overlap over the smaller box on +1 sides (as MTCNN's last stage)."""
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    one = 1.0 if mode == "min" else 0.0
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = (x2 - x1 + one) * (y2 - y1 + one)
    remaining = np.argsort(-scores, kind="stable")
    keep = []
    while remaining.size:
        i, rest = remaining[0], remaining[1:]
        keep.append(i)
        w = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + one, 0, None)
        h = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + one, 0, None)
        inter = w * h
        denom = (np.minimum(areas[i], areas[rest]) if mode == "min"
                 else areas[i] + areas[rest] - inter)
        with np.errstate(divide="ignore", invalid="ignore"):
            overlap = inter / denom
        remaining = rest[~(overlap > threshold)]
    return np.asarray(keep, np.int64)


def _square(boxes: np.ndarray) -> np.ndarray:
    """MTCNN's rerec: each box made square (its longer side) about its centre."""
    out = boxes.copy()
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    out[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
    out[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def _regress(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    out = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    out[:, :4] = boxes[:, :4] + reg[:, :4] * np.stack([w, h, w, h], axis=1)
    return out


def _crops(image: np.ndarray, boxes: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3, size, size) float32 network input of the boxes (clipped to the image, as
    facenet-pytorch does) and the mask of boxes that had any pixels."""
    height, width = image.shape[:2]
    b = np.trunc(boxes[:, :4]).astype(np.int64)
    x, y = np.maximum(b[:, 0], 1), np.maximum(b[:, 1], 1)
    ex, ey = np.minimum(b[:, 2], width), np.minimum(b[:, 3], height)
    valid = (ey > y - 1) & (ex > x - 1)
    out = np.empty((int(valid.sum()), size, size, 3), np.float32)
    k = 0
    for i in np.flatnonzero(valid):
        patch = image[y[i] - 1:ey[i], x[i] - 1:ex[i]]
        out[k] = cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA)
        k += 1
    out = (out - 127.5) * 0.0078125
    # NCHW-contiguous, as facenet-pytorch feeds R/O-Net (a strided view would run the
    # convolutions channels-last, rounding differently).
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2)), valid


def _outside(boxes: np.ndarray, known: np.ndarray | None) -> np.ndarray:
    """``boxes`` (N, >=4) without those overlapping a ``known`` box by IoU > 0.3."""
    if known is None or not len(known) or not len(boxes):
        return boxes
    return boxes[iou_matrix(boxes[:, :4], known).max(axis=1) <= 0.3]


def detect_faces_fast(image: np.ndarray, min_size: float, pnet: nn.Module, rnet: nn.Module,
                      onet: nn.Module, thresholds: tuple[float, float, float],
                      factor: float = 0.709, known: np.ndarray | None = None,
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """facenet-pytorch's three-stage MTCNN ``detect_face`` for one uint8 RGB image, with
    the resampling done by OpenCV on uint8/float32 HWC arrays and the bookkeeping in NumPy.

    facenet-pytorch resizes every pyramid level and every candidate crop with
    ``interpolate(mode="area")``: on one 640x480 frame with five faces that is about 190
    small torch calls and a quarter of the detection time; ``cv2.resize`` does the same
    area averaging for a fraction. The networks, thresholds, pyramid and NMS steps are
    unchanged. Returns boxes (N, 4), scores (N,), landmarks (N, 5, 2) in pixels.
    ``known`` (M, 4): faces already tracked; candidates on them are dropped before R-Net
    and O-Net, which then see only possible new faces (most of their work otherwise).
    """
    empty = (np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2)))
    device = next(pnet.parameters()).device  # inputs go to the nets' device, results back
    height, width = image.shape[:2]
    scale = 12.0 / min_size
    min_side = min(height, width) * scale
    scales = []
    while min_side >= 12:
        scales.append(scale)
        scale *= factor
        min_side *= factor
    candidates = []
    for scale in scales:
        level = cv2.resize(image, (int(width * scale + 1), int(height * scale + 1)),
                           interpolation=cv2.INTER_AREA).astype(np.float32)
        level = (level - 127.5) * 0.0078125
        reg, probs = pnet(torch.from_numpy(level.transpose(2, 0, 1)[None].copy()).to(device))
        reg, probs = reg.cpu(), probs.cpu()
        prob = probs[0, 1].numpy()
        ys, xs = np.nonzero(prob >= thresholds[0])
        if ys.size == 0:
            continue
        cells = np.stack([xs, ys], axis=1).astype(np.float64)
        boxes = np.concatenate([
            np.floor((2 * cells + 1) / scale), np.floor((2 * cells + 12) / scale),
            prob[ys, xs][:, None], reg[0].numpy()[:, ys, xs].T], axis=1)
        candidates.append(boxes[_nms(boxes[:, :4], boxes[:, 4], 0.5)])
    if not candidates:
        return empty
    boxes = np.concatenate(candidates)
    boxes = boxes[_nms(boxes[:, :4], boxes[:, 4], 0.7)]
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    boxes = np.stack([boxes[:, 0] + boxes[:, 5] * w, boxes[:, 1] + boxes[:, 6] * h,
                      boxes[:, 2] + boxes[:, 7] * w, boxes[:, 3] + boxes[:, 8] * h,
                      boxes[:, 4]], axis=1)
    boxes = _outside(_square(boxes), known)

    data, valid = _crops(image, boxes, 24)
    boxes = boxes[valid]
    if len(boxes) == 0:
        return empty
    reg, probs = rnet(torch.from_numpy(data).to(device))
    reg, probs = reg.cpu(), probs.cpu()
    score = probs[:, 1].numpy()
    keep = score > thresholds[1]
    boxes = np.concatenate([boxes[keep, :4], score[keep, None]], axis=1)
    reg = reg.numpy()[keep]
    pick = _nms(boxes[:, :4], boxes[:, 4], 0.7)
    boxes = _outside(_square(_regress(boxes[pick], reg[pick])), known)

    return onet_stage(image, boxes, onet, thresholds[2])


def _onet(image: np.ndarray, boxes: np.ndarray,
          onet: nn.Module) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """O-Net on square candidate boxes (N, >=4): for the boxes with pixels (the mask),
    regressed boxes (M, 4), scores (M,) and landmarks (M, 5, 2)."""
    data, valid = _crops(image, boxes, 48)
    boxes = boxes[valid, :4]
    if len(boxes) == 0:
        return np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2)), valid
    device = next(onet.parameters()).device
    reg, points, probs = (t.cpu() for t in onet(torch.from_numpy(data).to(device)))
    reg, points, score = reg.numpy(), points.numpy(), probs[:, 1].numpy()
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    landmarks = np.stack([w[:, None] * points[:, :5] + boxes[:, 0:1] - 1,
                          h[:, None] * points[:, 5:10] + boxes[:, 1:2] - 1], axis=2)
    return _regress(boxes, reg), score, landmarks, valid


def onet_stage(image: np.ndarray, boxes: np.ndarray, onet: nn.Module,
               threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MTCNN's last stage on square candidate boxes: refined boxes (N, 4), scores (N,)
    and landmarks (N, 5, 2) above ``threshold``, after its final NMS."""
    boxes, score, landmarks, _ = _onet(image, boxes, onet)
    keep = score > threshold
    boxes, score, landmarks = boxes[keep], score[keep], landmarks[keep]
    pick = _nms(boxes, score, 0.7, mode="min")
    return boxes[pick], score[pick], landmarks[pick]


class FaceDetector:
    """Find every face in an RGB image.

    ``min_face_size`` is in pixels of the image passed to :meth:`detect`: it sets MTCNN's
    image pyramid (smaller means slower), and faces whose box is smaller on both sides are
    dropped, since MTCNN alone also returns some faces below it. ``downscale``
    (0 < d <= 1) runs MTCNN on a copy resized by that factor, which cuts the time about
    with its square; boxes and landmarks are mapped back to the original pixels. Faces
    smaller than ``12 / downscale`` original pixels cannot be found then. ``thresholds``
    are MTCNN's three stage thresholds; ``min_score`` drops final faces below it.
    """

    def __init__(self, min_face_size: int = 40,
                 thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
                 downscale: float = 1.0, device: str = "cpu", min_score: float = 0.9) -> None:
        if not 0.0 < downscale <= 1.0:
            raise ValueError(f"downscale must be in (0, 1], got {downscale}")
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
        self.min_score = float(min_score)
        self.device = torch.device(device)
        scaled_min = max(_PNET_MIN_FACE, round(self.min_face_size * self.downscale))
        self._mtcnn = facenet_pytorch.MTCNN(
            min_face_size=scaled_min, thresholds=list(self.thresholds), keep_all=True,
            select_largest=False, post_process=False, device=self.device)
        self._mtcnn.eval()
        self.fast_pools = _speed_up_pools(self._mtcnn)

    def detect(self, image_rgb: np.ndarray, known: np.ndarray | None = None) -> list[Detection]:
        """Every face in ``image_rgb`` (H, W, 3 uint8 RGB), by falling score; [] if none.

        ``known`` (M, 4 pixels): faces already tracked, not searched for again (only new
        faces are returned then; faster, see :func:`detect_faces_fast`).
        """
        check_image(image_rgb)
        height, width = image_rgb.shape[:2]
        small = image_rgb
        if self.downscale != 1.0:
            size = (max(1, round(width * self.downscale)), max(1, round(height * self.downscale)))
            small = cv2.resize(image_rgb, size, interpolation=cv2.INTER_AREA)
        # Exact factors per axis: rounding the resized size makes them differ slightly.
        sx = width / small.shape[1]
        sy = height / small.shape[0]
        mtcnn = self._mtcnn
        if known is not None:
            known = np.asarray(known, np.float64).reshape(-1, 4) / np.array([sx, sy, sx, sy])
        with torch.inference_mode():
            boxes, probs, points = detect_faces_fast(
                np.ascontiguousarray(small), mtcnn.min_face_size, mtcnn.pnet, mtcnn.rnet,
                mtcnn.onet, self.thresholds, mtcnn.factor, known)
        return self._detections(boxes * np.array([sx, sy, sx, sy]), probs,
                                points * np.array([sx, sy]), width, height)

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
            found, probs, points, valid = _onet(image, _square(boxes), mtcnn.onet)
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
        pick = _nms(found, probs, 0.7, mode="min")  # two tracks on one face become one
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
