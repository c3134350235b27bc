"""Reading and framing images for the tools, the benchmark and the tests (no ROS)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

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
