"""Test-side ROS helpers: a node in the test process, and images of packaged faces."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np

from fer_ros.paths import fer_ros_command
from fer_ros.pipeline.images import FRAME_SIZE, letterbox
from fer_ros.ros.background import BackgroundNode


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


def handshake(send: Callable[[int], None], answered: Callable[[], bool],
              timeout: float = 30.0, wait: float = 0.5) -> int:
    """Send probes ``send(1)``, ``send(2)``... until ``answered()``; returns how many were
    sent (asserts one was answered within ``timeout``).

    Why: seeing the node's endpoints (get_subscription_count, get_publisher_count) means
    OUR side has matched. Fast DDS matches the two sides independently, and what is sent
    before the other side has matched is lost (FIELD_NOTES; fer_ros/rosless/bag_play.py).
    Only an answer that came back proves both directions deliver. A probe must be told
    apart from the test's own messages (its own stamps or names), since more than one may
    arrive.
    """
    deadline = time.monotonic() + timeout
    sent = 0
    while time.monotonic() < deadline:
        sent += 1
        send(sent)
        end = min(deadline, time.monotonic() + wait)
        while time.monotonic() < end:
            if answered():
                return sent
            time.sleep(0.02)
    assert answered(), f"no answer to {sent} probes within {timeout} s"
    return sent


def enroll(gallery: Path, name: str, images: list[Path]) -> None:
    """Enrol with the real `fer-ros enroll` command."""
    cmd = [*fer_ros_command(), "enroll", "--gallery", str(gallery),
           "--name", name, "--device", "cpu", "--skip-bad", *map(str, images)]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
