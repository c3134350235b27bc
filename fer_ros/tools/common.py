"""Options and helpers shared by the face commands (identify, enroll)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


def add_pipeline_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("models")
    group.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] (default auto)")
    group.add_argument("--min-face-size", type=int, default=40,
                       help="smallest face searched for, in pixels (default 40)")
    group.add_argument("--downscale", type=float, default=1.0,
                       help="run detection on the image scaled by this factor (default 1.0)")
    group.add_argument("--threshold", type=float, default=None,
                       help="cosine similarity below which a face is 'unknown'")
    group.add_argument("--facenet-weights", default="",
                       help="FaceNet weights (.pt); default: the converted CASIA-WebFace model")
    group.add_argument("--emotion-weights", default="",
                       help="emotion model (.pt from train-emotion); default: FER2013 model")


def pipeline_from_args(args: argparse.Namespace, emotion: bool = True, tracking: bool = False):
    from fer_ros.pipeline import FacePipeline, PipelineConfig

    config = PipelineConfig(device=args.device, min_face_size=args.min_face_size,
                            downscale=args.downscale, emotion=emotion, tracking=tracking,
                            facenet_weights=args.facenet_weights,
                            emotion_weights=args.emotion_weights)
    if getattr(args, "threshold", None) is not None:
        config.recognition_threshold = args.threshold
    return FacePipeline(config)


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
