"""Test-side ROS helpers: a node in the test process, and images of packaged faces."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np

from fer_ros.paths import fer_ros_command
from fer_ros.pipeline.images import FRAME_SIZE, letterbox
from fer_ros.ros.background import BackgroundNode, handshake  # noqa: F401 (tests import it from here)


def frame_bgr(path: Path, size: tuple[int, int] = FRAME_SIZE) -> np.ndarray:
    image = cv2.imread(str(path))
    assert image is not None, f"cannot read {path}"
    return letterbox(image, size)


class TestNode(BackgroundNode):
    """An rclpy node spun on a background thread, with its own context."""

    __test__ = False  # not a pytest class
    live: ClassVar[list[TestNode]] = []  # closed at the session's end if a test did not

    def __init__(self, name: str = "test_client") -> None:
        super().__init__(name)
        TestNode.live.append(self)

    def close(self) -> None:
        if self in TestNode.live:
            TestNode.live.remove(self)
            super().close()


def enroll(gallery: Path, name: str, images: list[Path]) -> None:
    """Enrol with the real `fer-ros enroll` command."""
    cmd = [*fer_ros_command(), "enroll", "--gallery", str(gallery),
           "--name", name, "--device", "cpu", "--skip-bad", *map(str, images)]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
