"""The perception node's image streams: one per camera it serves.

A stream named ``cam1`` subscribes to ``cam1/image`` and ``cam1/camera_info`` and
publishes ``cam1/faces/emotions`` (all relative to the node's namespace, so they can be
remapped); the stream named "" uses ``image``, ``camera_info`` and ``faces/emotions``.
With ``image_transport`` "compressed" the images come as JPEG or PNG from the image
topic's ``/compressed`` sibling (fer_ros/ros/transport.py).
Each stream keeps the images that wait for inference in a queue of ``queue_size``
(1: only the newest; when it is full the oldest is dropped and counted), its own
counters for /diagnostics and its own record of bad images, so one camera's faults never
hide or silence another's.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from fer_ros.msg import FaceEmotionArray
from fer_ros.nodes.perception.diagnostics import PerceptionStats
from fer_ros.pipeline.types import FaceResult
from fer_ros.ros.face_msgs import camera_for, face_to_msg
from fer_ros.ros.image_codec import ImageDecodeError
from fer_ros.ros.transport import decode, image_subscription

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*(/[A-Za-z][A-Za-z0-9_]*)*")
MAX_STREAMS = 64
_DIGITS = re.compile(r"\d+")
_MAX_BAD_KINDS = 32
# Images answered with assumed intrinsics for this long before one WARN says so: a
# camera_info published beside the first images has time to arrive.
INTRINSICS_GRACE_S = 5.0


def check_stream_names(names: list[str]) -> str | None:
    """Why ``names`` is not a valid ``streams`` parameter, or None."""
    if not names:
        return "streams must name at least one stream ('' = image -> faces/emotions)"
    if len(names) > MAX_STREAMS:
        return f"streams: {len(names)} streams, at most {MAX_STREAMS}"
    if len(set(names)) != len(names):
        return f"streams: names repeat in {names}"
    bad = [n for n in names if n and not _NAME.fullmatch(n)]
    if bad:
        return (f"streams: {bad[0]!r} is not a topic prefix (letters, digits, '_', "
                f"parts separated by '/', each starting with a letter)")
    return None


def topic(stream: str, base: str) -> str:
    return f"{stream}/{base}" if stream else base


@dataclass
class Frame:
    msg: Image | CompressedImage
    received: float  # monotonic seconds
    size: tuple[int, int] = (0, 0)  # (width, height), known once decoded


class ImageStream:
    """One camera's topics, waiting images, counters and bad-image log."""

    def __init__(self, node: Node, name: str, wake: threading.Condition,
                 queue_size: int = 1) -> None:
        self.node = node
        self.name = name
        self.stats = PerceptionStats()
        self.waiting: deque[Frame] = deque()  # oldest first; guarded by ``wake``
        self.queue_size = queue_size  # set by the node (parameter queue_size)
        self._wake = wake
        self.camera_info: CameraInfo | None = None
        self._bad_kinds: set[str] = set()
        self._last_failure_log = -1e9
        self.publisher = None
        self._subscriptions: list = []
        # Resolved (remapped): what the logs and diagnostics name; subscribe() adds
        # "/compressed" for that transport.
        self.image_topic = node.resolve_topic_name(topic(name, "image"))
        # Where the last answer's head poses came from ("camera_info" or "assumed fov N"),
        # shown in diagnostics; since when the current run of assumed ones lasts.
        self.intrinsics = ""
        self._assumed_since: float | None = None
        self._warned_intrinsics = False

    def open_publisher(self) -> None:
        self.publisher = self.node.create_lifecycle_publisher(
            FaceEmotionArray, topic(self.name, "faces/emotions"), 10)

    def close_publisher(self) -> None:
        if self.publisher is not None:
            self.node.destroy_lifecycle_publisher(self.publisher)
            self.publisher = None

    def subscribe(self, qos, transport: str) -> None:
        self.image_topic, kind = image_subscription(self.node, topic(self.name, "image"),
                                                    transport)
        self._subscriptions = [
            self.node.create_subscription(kind, self.image_topic, self._on_image, qos),
            self.node.create_subscription(CameraInfo, topic(self.name, "camera_info"),
                                          self._on_camera_info, qos)]

    def unsubscribe(self) -> None:
        for subscription in self._subscriptions:
            self.node.destroy_subscription(subscription)
        self._subscriptions = []
        with self._wake:
            self.waiting.clear()  # waiting images are not processed any more

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self.camera_info = msg

    def _on_image(self, msg: Image | CompressedImage) -> None:
        self.stats.last_received = time.monotonic()
        with self._wake:
            self.stats.count("received")
            while len(self.waiting) >= max(1, self.queue_size):
                self.waiting.popleft()
                self.stats.count("dropped")  # superseded before inference got to it
            self.waiting.append(Frame(msg, time.monotonic()))
            self._wake.notify()

    def take(self) -> Frame | None:
        """The oldest waiting image, if any (call with ``wake`` held)."""
        return self.waiting.popleft() if self.waiting else None

    def decode(self, frame: Frame) -> np.ndarray | None:
        """The image as RGB, or None (counted and logged) when it is malformed."""
        try:
            rgb = decode(frame.msg, "rgb8")
            frame.size = (rgb.shape[1], rgb.shape[0])
            return rgb
        except ImageDecodeError as exc:
            self.stats.count("bad")
            # One log line per kind of problem: the same fault with other sizes (a
            # truncation by 5 or by 7 bytes) is the same kind. The set is capped so that
            # a publisher sending ever new garbage cannot grow it without end.
            kind = _DIGITS.sub("#", str(exc))
            if kind not in self._bad_kinds and len(self._bad_kinds) < _MAX_BAD_KINDS:
                self._bad_kinds.add(kind)
                more = (" (further kinds of bad images are not logged; see diagnostics "
                        "'images rejected')" if len(self._bad_kinds) == _MAX_BAD_KINDS
                        else "")
                self.node.get_logger().error(f"dropping image on {self.image_topic}: {exc}"
                                             f"{more}")
            return None

    def failed(self, exc: Exception) -> None:
        """An image of this stream could not be processed: counted, logged at most every
        5 s per stream (so one camera's failures never hide another's)."""
        self.stats.count("bad")
        now = time.monotonic()
        if now - self._last_failure_log >= 5.0:
            self._last_failure_log = now
            self.node.get_logger().error(f"processing an image from {self.image_topic} "
                                         f"failed: {exc!r}")

    @staticmethod
    def stamp_of(frame: Frame) -> float:
        """The image's stamp in seconds; unstamped images (0) get their arrival time, or
        tracks would never age."""
        stamp = frame.msg.header.stamp
        seconds = stamp.sec + stamp.nanosec * 1e-9
        return seconds if seconds > 0 else frame.received

    def publish(self, frame: Frame, faces: list[FaceResult],
                fov_deg: float) -> FaceEmotionArray:
        msg = frame.msg
        out = FaceEmotionArray()
        out.header = msg.header
        out.image_width, out.image_height = frame.size
        camera, calibrated = camera_for(self.camera_info, *frame.size, fov_deg)
        if calibrated:
            self.intrinsics, self._assumed_since = "camera_info", None
        else:
            self._assumed(frame.size, fov_deg)
        out.faces = [face_to_msg(face, camera) for face in faces]
        self.publisher.publish(out)
        return out

    def _assumed(self, size: tuple[int, int], fov_deg: float) -> None:
        """Head poses from fov_deg: said once per stream, when no camera_info of the
        image's size has come for INTRINSICS_GRACE_S of images."""
        self.intrinsics = f"assumed fov {fov_deg:g}"
        now = time.monotonic()
        if self._assumed_since is None:
            self._assumed_since = now
        if not self._warned_intrinsics and now - self._assumed_since >= INTRINSICS_GRACE_S:
            self._warned_intrinsics = True
            info = self.node.resolve_topic_name(topic(self.name, "camera_info"))
            self.node.get_logger().warning(
                f"no camera_info for the {size[0]}x{size[1]} images of {self.image_topic} on "
                f"{info} after {INTRINSICS_GRACE_S:g} s: head poses (distance, direction) use "
                f"the assumed fov_deg {fov_deg:g}; publish camera_info or set fov_deg")

    def published(self, frame: Frame, times) -> None:
        stamp = frame.msg.header.stamp.sec + frame.msg.header.stamp.nanosec * 1e-9
        ros_now = self.node.get_clock().now().nanoseconds * 1e-9
        latency = ros_now - stamp if stamp > 0 else time.monotonic() - frame.received
        self.stats.published(latency, times)
