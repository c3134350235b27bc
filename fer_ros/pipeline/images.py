"""Images in the pipeline: the one validator, the thumbnails the stages compare, and
reading and framing images for the tools, the benchmark and the tests (no ROS)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

# Cells across a scene thumbnail (rows follow the image's aspect).
THUMB_WIDTH = 32


def check_image(image: np.ndarray) -> None:
    """Raise ValueError unless ``image`` is a non-empty (H, W, 3) uint8 array."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"image must be a numpy array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must have shape (H, W, 3), got {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got {image.dtype}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image is empty: shape {image.shape}")


def to_rgb(image: np.ndarray, color: str) -> np.ndarray:
    """An (H, W, 3) uint8 RGB view or copy of a ``color`` ("rgb" or "bgr") or grey image."""
    if isinstance(image, np.ndarray) and image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    check_image(image)
    if color == "rgb":
        return image
    if color == "bgr":
        return np.ascontiguousarray(image[:, :, ::-1])
    raise ValueError(f"color must be 'rgb' or 'bgr', not {color!r}")


def crop_batch(crops: np.ndarray, size: int) -> np.ndarray:
    """``crops`` as an (N, size, size, 3) batch of a face model's input (one crop gets a
    batch axis); ValueError naming the shape when a non-empty batch has another."""
    batch = np.asarray(crops)
    if batch.ndim == 3:
        batch = batch[None]
    if len(batch) and batch.shape[1:] != (size, size, 3):
        raise ValueError(f"expected crops of shape (N, {size}, {size}, 3), got {batch.shape}")
    return batch


def face_patch(image_rgb: np.ndarray, box: np.ndarray, size: int = 16) -> np.ndarray:
    """A tiny zero-mean, unit-norm grey patch of the face: a cheap appearance signature
    (the dot product of two is their correlation)."""
    h, w = image_rgb.shape[:2]
    x1, y1, x2, y2 = (round(float(v)) for v in box)
    x1, y1 = min(max(x1, 0), w - 1), min(max(y1, 0), h - 1)
    x2, y2 = max(min(x2, w), x1 + 1), max(min(y2, h), y1 + 1)
    patch = cv2.resize(image_rgb[y1:y2, x1:x2].mean(axis=2).astype(np.float32), (size, size),
                       interpolation=cv2.INTER_AREA).ravel()
    patch -= patch.mean()
    return patch / max(float(np.linalg.norm(patch)), 1e-6)


def scene_thumbnail(image: np.ndarray, width: int = THUMB_WIDTH,
                    sampled: bool = False) -> np.ndarray:
    """A tiny grey float32 image of the scene: the mean of each cell, ``width`` cells
    across; channel order does not matter.

    ``sampled`` first samples 5x5 points per cell (bilinear: 0.13 instead of 0.57 ms at
    640x480; noise of sigma 15 still moves a cell by at most about 5 grey levels): good
    enough to tell an empty scene from a changed one (the idle gate). Without it the
    cells are true area means (0.3 ms), which a drift of a textured scene does not alias:
    sampled, a 2-pixel drift moved a cell by 18 grey levels (the background search)."""
    h, w = image.shape[:2]
    size = (width, max(1, round(width * h / w)))
    if sampled:
        image = cv2.resize(image, (5 * size[0], 5 * size[1]), interpolation=cv2.INTER_LINEAR)
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA).astype(np.float32)
    return small.mean(axis=2) if small.ndim == 3 else small


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


def expand_images(paths: list[str]) -> Iterator[Path]:
    """Files as given; folders searched recursively for images, in sorted order."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*")
                              if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            yield path


def read_image_rgb(path: Path) -> np.ndarray:
    """Read an image file as RGB; ValueError saying why when it cannot be."""
    if not path.exists():
        raise ValueError(f"{path}: no such file")
    if not path.is_file():
        raise ValueError(f"{path}: not a file")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"{path}: not a readable image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


FRAME_SIZE = (640, 480)


def letterbox(image: np.ndarray, size: tuple[int, int] = FRAME_SIZE,
              shift: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Fit a BGR image into ``size`` (aspect kept, dark border), moved by ``shift`` px."""
    w, h = size
    scale = min(w / image.shape[1], h / image.shape[0])
    resized = cv2.resize(image, (max(1, int(image.shape[1] * scale)),
                                 max(1, int(image.shape[0] * scale))),
                         interpolation=cv2.INTER_AREA)
    canvas = np.full((h, w, 3), 30, np.uint8)
    y0 = (h - resized.shape[0]) // 2 + shift[1]
    x0 = (w - resized.shape[1]) // 2 + shift[0]
    # Clip the pasted image to the canvas (a shift can push it partly outside).
    sx0, sy0 = max(0, -x0), max(0, -y0)
    dx0, dy0 = max(0, x0), max(0, y0)
    cw = min(w - dx0, resized.shape[1] - sx0)
    ch = min(h - dy0, resized.shape[0] - sy0)
    if cw > 0 and ch > 0:
        canvas[dy0:dy0 + ch, dx0:dx0 + cw] = resized[sy0:sy0 + ch, sx0:sx0 + cw]
    return canvas
