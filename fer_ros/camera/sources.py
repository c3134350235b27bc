"""Frame sources for the camera node: a V4L2 device, a video file, a folder of images.

No ROS here: each source has open(), read() (a BGR numpy image, None at the end of a
file or folder), close(), `fps` and describe(); a source that cannot be opened or
read right now raises SourceError, and the caller decides when to try again.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def capture_fps(cap: cv2.VideoCapture | None) -> float:
    """The rate OpenCV reports for a capture; 0 when it does not know (or reports nonsense)."""
    fps = cap.get(cv2.CAP_PROP_FPS) if cap is not None else 0.0
    return fps if math.isfinite(fps) and 0.0 < fps <= 1000.0 else 0.0


class SourceError(RuntimeError):
    """The source cannot be opened or read right now (it may come back)."""


class Folder:
    """Images of a folder in name order, read one per call."""

    kind = "folder"

    def __init__(self, path: Path, warn: Callable[[str], None]) -> None:
        self.path = path
        self._warn = warn
        self._warned: set[str] = set()
        self.files: list[Path] = []
        self._next = 0

    def open(self) -> None:
        if not self.path.is_dir():
            raise SourceError("no such folder")
        try:
            self.files = sorted(p for p in self.path.iterdir()
                                if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        except OSError as error:  # removed or made unreadable since is_dir()
            raise SourceError(f"cannot list it: {error.strerror}") from error
        if not self.files:
            raise SourceError(f"no {'/'.join(s[1:] for s in IMAGE_SUFFIXES)} images in it")
        self._next = 0

    @property
    def fps(self) -> float:
        return 0.0

    def describe(self) -> str:
        return f"folder of {len(self.files)} images"

    def read(self) -> np.ndarray | None:
        """The next readable image; None after the last; SourceError if files vanished."""
        while self._next < len(self.files):
            path = self.files[self._next]
            self._next += 1
            frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if frame is not None:
                return frame
            if not path.exists():
                raise SourceError(f"image {path.name!r} disappeared")
            if path.name not in self._warned:  # one warning per file, not one per loop
                self._warned.add(path.name)
                self._warn(f"skipping unreadable image {str(path)!r}")
        return None

    def rewind(self) -> None:
        self.open()  # lists the folder again: files may have been added or removed

    def close(self) -> None:
        self.files = []


class VideoFile:
    """A video file decoded by OpenCV (FFmpeg), read one frame per call."""

    kind = "video file"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._cap: cv2.VideoCapture | None = None

    def open(self) -> None:
        if not self.path.exists():
            raise SourceError("no such file or folder")
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            cap.release()
            raise SourceError("OpenCV cannot decode it as a video")
        self._cap = cap

    @property
    def fps(self) -> float:
        return capture_fps(self._cap)

    def describe(self) -> str:
        frames = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT)) if self._cap else 0
        return f"video file of {frames} frames at {self.fps:g} fps"

    def read(self) -> np.ndarray | None:
        ok, frame = self._cap.read()
        return frame if ok else None

    def rewind(self) -> None:
        # Reopening is reliable for every container; seeking to 0 is not.
        self.close()
        self.open()

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class Device:
    """A V4L2 camera; read() blocks until the next frame (so it runs in its own thread)."""

    kind = "camera"

    def __init__(self, path: str, width: int, height: int, fps: float) -> None:
        self.path = path
        self._request = (width, height, fps)
        self._cap: cv2.VideoCapture | None = None

    def open(self) -> None:
        if not os.path.exists(self.path):
            raise SourceError("no such device")
        cap = cv2.VideoCapture(self.path, cv2.CAP_V4L2)
        if not cap.isOpened():
            cap.release()
            raise SourceError("V4L2 could not open it (busy, no permission, or not a camera)")
        width, height, fps = self._request
        # Asking the driver for the size and rate saves resizing and USB bandwidth; the
        # node still resizes if the driver picks something else.
        if width > 0 and height > 0:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        if fps > 0:
            cap.set(cv2.CAP_PROP_FPS, fps)
        self._cap = cap

    @property
    def fps(self) -> float:
        return capture_fps(self._cap)

    def describe(self) -> str:
        w = int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        h = int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        return f"V4L2 camera, {w}x{h} at {self.fps:g} fps"

    def read(self) -> np.ndarray:
        ok, frame = self._cap.read()
        if not ok or frame is None:
            raise SourceError("reading a frame failed (unplugged?)")
        return frame

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


def device_path(source: str) -> str | None:
    """The V4L2 device path `source` names ("0" or "/dev/video0"), or None."""
    if source.isdigit():
        return f"/dev/video{int(source)}"
    if source.startswith("/dev/"):
        return source
    return None


def resize(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    """`frame` at width x height; one of them 0 keeps the aspect ratio, both 0 no change."""
    h, w = frame.shape[:2]
    if width <= 0 and height <= 0:
        return frame
    if width <= 0:
        width = max(1, round(w * height / h))
    elif height <= 0:
        height = max(1, round(h * width / w))
    if (width, height) == (w, h):
        return frame
    shrink = width * height < w * h
    return cv2.resize(frame, (width, height),
                      interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
