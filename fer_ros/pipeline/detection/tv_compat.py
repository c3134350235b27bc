"""Import facenet-pytorch without a working torchvision.

facenet-pytorch 2.6.0 needs exactly two things from torchvision, both bound at import
time in ``facenet_pytorch/models/utils/detect_face.py``::

    from torchvision.transforms import functional as F   # F.to_tensor in extract_face
    from torchvision.ops.boxes import batched_nms         # MTCNN's NMS stages

PyPI's torchvision wheels that match our CPU torch are not installable here (a CPU
torchvision built for another torch fails with "operator torchvision::nms does not
exist"). So when the real torchvision does not import, :func:`import_facenet_pytorch`
puts small stand-ins into ``sys.modules`` for the duration of the import only and removes
them afterwards: facenet-pytorch keeps its references, while any later ``import
torchvision`` elsewhere still fails as it should instead of finding a fake package.
"""

from __future__ import annotations

import importlib
import sys
import threading
import types
from typing import Any

import numpy as np
import torch

_LOCK = threading.Lock()
_SHIM_NAMES = ("torchvision", "torchvision.transforms", "torchvision.transforms.functional",
               "torchvision.ops", "torchvision.ops.boxes")


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression with torchvision's semantics.

    ``boxes`` (N, 4) as x1, y1, x2, y2; a box is dropped when its IoU with a kept,
    higher-scoring box is > ``iou_threshold``. Returns kept indices by falling score.
    """
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    # NumPy, one pass per *kept* box: MTCNN hands in up to thousands of candidates of
    # which few survive, and small NumPy ops cost a fraction of small torch ops.
    order = np.argsort(-scores.detach().cpu().double().numpy(), kind="stable")
    b = boxes.detach().cpu().double().numpy()[order]
    x1, y1, x2, y2 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    areas = (x2 - x1) * (y2 - y1)
    remaining = np.arange(len(order))
    keep: list[int] = []
    while remaining.size:
        i = remaining[0]
        keep.append(i)
        rest = remaining[1:]
        w = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
        h = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
        inter = w * h
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = inter / (areas[i] + areas[rest] - inter)
        remaining = rest[~(iou > iou_threshold)]
    return torch.from_numpy(order[keep]).to(boxes.device)


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor,
                iou_threshold: float) -> torch.Tensor:
    """NMS done independently per category ``idxs``, as ``torchvision.ops.batched_nms``."""
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    # Shift each category's boxes so far apart that boxes of different categories
    # never overlap; one NMS then equals one NMS per category (torchvision's trick).
    max_coordinate = boxes.max()
    offsets = idxs.to(boxes) * (max_coordinate + 1)
    return nms(boxes + offsets[:, None], scores, iou_threshold)


def to_tensor(pic: Any) -> torch.Tensor:
    """HWC image (numpy or PIL) -> CHW float tensor; uint8 is scaled to [0, 1]."""
    array = np.asarray(pic)
    if array.ndim == 2:
        array = array[:, :, None]
    tensor = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))
    if tensor.dtype == torch.uint8:
        return tensor.float().div(255)
    return tensor


def _real_torchvision_works() -> bool:
    before = set(sys.modules)
    try:
        importlib.import_module("torchvision.ops.boxes")
        importlib.import_module("torchvision.transforms.functional")
        return True
    except Exception:
        # A half-imported torchvision must not linger and shadow the stand-ins.
        for name in set(sys.modules) - before:
            if name == "torchvision" or name.startswith("torchvision."):
                del sys.modules[name]
        return False


def _shim_modules() -> dict[str, types.ModuleType]:
    mods = {name: types.ModuleType(name) for name in _SHIM_NAMES}
    mods["torchvision.transforms.functional"].to_tensor = to_tensor
    mods["torchvision.ops.boxes"].batched_nms = batched_nms
    mods["torchvision.ops.boxes"].nms = nms
    mods["torchvision.ops"].batched_nms = batched_nms
    mods["torchvision.ops"].nms = nms
    mods["torchvision.ops"].boxes = mods["torchvision.ops.boxes"]
    mods["torchvision.transforms"].functional = mods["torchvision.transforms.functional"]
    mods["torchvision"].ops = mods["torchvision.ops"]
    mods["torchvision"].transforms = mods["torchvision.transforms"]
    for mod in mods.values():
        mod.__fer_ros_shim__ = True
    return mods


def import_facenet_pytorch() -> types.ModuleType:
    """Import and return ``facenet_pytorch``, with torchvision stand-ins only if needed."""
    with _LOCK:
        if "facenet_pytorch" in sys.modules:
            return sys.modules["facenet_pytorch"]
        if _real_torchvision_works():
            return importlib.import_module("facenet_pytorch")
        shims = _shim_modules()
        added = [name for name in _SHIM_NAMES if name not in sys.modules]
        for name in added:
            sys.modules[name] = shims[name]
        try:
            return importlib.import_module("facenet_pytorch")
        finally:
            for name in added:
                if sys.modules.get(name) is shims[name]:
                    del sys.modules[name]
