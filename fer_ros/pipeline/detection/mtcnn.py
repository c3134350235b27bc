"""MTCNN, the algorithm: the image pyramid, the three networks' stages, NMS, box
regression, and the faster variants the detector uses (search only outside known faces;
O-Net alone to refine tracked boxes). Stateless functions over facenet-pytorch's P/R/O-Net
modules, apart from the FaceDetector that owns them (detector.py), as facenet-pytorch keeps
``detect_face`` apart from its ``MTCNN`` module."""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import nn

from fer_ros.pipeline.types import iou_matrix

# PNet's receptive field: MTCNN cannot see faces smaller than this in the image it is given.
PNET_MIN_FACE = 12


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


def speed_up_pools(net: nn.Module) -> int:
    count = 0
    for name, child in list(net.named_children()):
        if isinstance(child, nn.MaxPool2d):
            setattr(net, name, ChannelsLastMaxPool2d(child))
            count += 1
        else:
            count += speed_up_pools(child)
    return count


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float,
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


def square(boxes: np.ndarray) -> np.ndarray:
    """MTCNN's rerec: each box made square (its longer side) about its centre."""
    out = boxes.copy()
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    out[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
    out[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def regress(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    out = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    out[:, :4] = boxes[:, :4] + reg[:, :4] * np.stack([w, h, w, h], axis=1)
    return out


def crops(image: np.ndarray, boxes: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
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


def outside(boxes: np.ndarray, known: np.ndarray | None) -> np.ndarray:
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
        candidates.append(boxes[nms(boxes[:, :4], boxes[:, 4], 0.5)])
    if not candidates:
        return empty
    boxes = np.concatenate(candidates)
    boxes = boxes[nms(boxes[:, :4], boxes[:, 4], 0.7)]
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    boxes = np.stack([boxes[:, 0] + boxes[:, 5] * w, boxes[:, 1] + boxes[:, 6] * h,
                      boxes[:, 2] + boxes[:, 7] * w, boxes[:, 3] + boxes[:, 8] * h,
                      boxes[:, 4]], axis=1)
    boxes = outside(square(boxes), known)

    data, valid = crops(image, boxes, 24)
    boxes = boxes[valid]
    if len(boxes) == 0:
        return empty
    reg, probs = rnet(torch.from_numpy(data).to(device))
    reg, probs = reg.cpu(), probs.cpu()
    score = probs[:, 1].numpy()
    keep = score > thresholds[1]
    boxes = np.concatenate([boxes[keep, :4], score[keep, None]], axis=1)
    reg = reg.numpy()[keep]
    pick = nms(boxes[:, :4], boxes[:, 4], 0.7)
    boxes = outside(square(regress(boxes[pick], reg[pick])), known)

    return onet_stage(image, boxes, onet, thresholds[2])


def onet_boxes(image: np.ndarray, boxes: np.ndarray,
               onet: nn.Module) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """O-Net on square candidate boxes (N, >=4): for the boxes with pixels (the mask),
    regressed boxes (M, 4), scores (M,) and landmarks (M, 5, 2)."""
    data, valid = crops(image, boxes, 48)
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
    return regress(boxes, reg), score, landmarks, valid


def onet_stage(image: np.ndarray, boxes: np.ndarray, onet: nn.Module,
               threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MTCNN's last stage on square candidate boxes: refined boxes (N, 4), scores (N,)
    and landmarks (N, 5, 2) above ``threshold``, after its final NMS."""
    boxes, score, landmarks, _ = onet_boxes(image, boxes, onet)
    keep = score > threshold
    boxes, score, landmarks = boxes[keep], score[keep], landmarks[keep]
    pick = nms(boxes, score, 0.7, mode="min")
    return boxes[pick], score[pick], landmarks[pick]
