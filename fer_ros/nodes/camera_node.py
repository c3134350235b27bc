"""Camera node: publishes frames from a V4L2 camera, a video file or a folder of images.

Topics (relative, remap as usual):
  image_raw    sensor_msgs/Image (bgr8 or rgb8)
  camera_info  sensor_msgs/CameraInfo with the same header; K is an ideal pinhole
               computed from `fov_deg`, an approximation good enough for drawing and
               rough geometry, not a calibration.
Each header's stamp is the time the frame was read (the capture time as far as this
node can know it) and its frame_id the `frame_id` parameter.

A camera that is missing, or disappears, is retried every `retry_interval` seconds:
one ERROR line when it fails, a reminder at most every 30 s, and INFO when it is back.
A file or folder source that is not looped ends the node with exit code 0 after its
last frame, so a launch file can mark the node required.

Run: camera_node --ros-args --params-file config/camera.yaml -p source:=/dev/video0
"""

from __future__ import annotations

import math
import os
import threading
import time
from pathlib import Path

import cv2
import numpy as np
from rcl_interfaces.msg import SetParametersResult
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.task import Future
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from fer_ros.ros.image_codec import image_to_msg
from fer_ros.ros.params import ParameterError, coerce_numbers, declare, descriptor
from fer_ros.ros.qos import QOS_CHOICES, qos_profile
from fer_ros.ros.run import log_final, run_node

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
ENCODINGS = ("bgr8", "rgb8")
# Publishing rate when fps is 0 and the source does not say (folders, some cameras).
FALLBACK_FPS = 30.0
# How often a source that stays unavailable is mentioned again after the first ERROR.
REMINDER_PERIOD_S = 30.0


def _capture_fps(cap: cv2.VideoCapture | None) -> float:
    """The rate OpenCV reports for a capture; 0 when it does not know (or reports nonsense)."""
    fps = cap.get(cv2.CAP_PROP_FPS) if cap is not None else 0.0
    return fps if math.isfinite(fps) and 0.0 < fps <= 1000.0 else 0.0


class ConfigError(ParameterError):
    """A parameter value the node cannot work with."""


class SourceError(RuntimeError):
    """The source cannot be opened or read right now (it may come back)."""


class _Folder:
    """Images of a folder in name order, read one per call."""

    kind = "folder"

    def __init__(self, path: Path, warn) -> None:
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


class _VideoFile:
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
        return _capture_fps(self._cap)

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


class _Device:
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
        return _capture_fps(self._cap)

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


def camera_info(width: int, height: int, fov_deg: float, header: Header) -> CameraInfo:
    """An ideal pinhole (no distortion) with horizontal field of view `fov_deg`."""
    fx = (width / 2.0) / math.tan(math.radians(fov_deg) / 2.0)
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    info = CameraInfo(header=header, width=width, height=height)
    info.distortion_model = "plumb_bob"
    info.d = [0.0] * 5
    info.k = [fx, 0.0, cx, 0.0, fx, cy, 0.0, 0.0, 1.0]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.p = [fx, 0.0, cx, 0.0, 0.0, fx, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    return info


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


class CameraNode(Node):
    """Publishes image_raw and camera_info from the `source` parameter's frames."""

    def __init__(self, **kwargs) -> None:
        super().__init__("camera", **kwargs)
        self.source = str(declare(self, "source", "0", descriptor(
            "V4L2 camera (index like 0, or a path like /dev/video0), a video file, or a"
            " folder of jpg/png/bmp images read in name order", read_only=True)))
        self.loop = declare(self, "loop", False, descriptor(
            "restart a file or folder source at its end; when false the node exits with"
            " code 0 after the last frame"))
        self.width = declare(self, "width", 0, descriptor(
            "output width in pixels; 0 = the source's own (or kept in proportion to height)",
            int_range=(0, 8192)))
        self.height = declare(self, "height", 0, descriptor(
            "output height in pixels; 0 = the source's own (or kept in proportion to width)",
            int_range=(0, 8192)))
        self.fps = declare(self, "fps", 0.0, descriptor(
            "publishing rate in Hz, 0.1 to 240; 0 = the source's own rate (a video file's"
            f" or camera's; {FALLBACK_FPS:g} for a folder)", float_range=(0.0, 240.0)))
        self.frame_id = declare(self, "frame_id", "camera_optical_frame", descriptor(
            "frame_id of the published headers"))
        self.encoding = declare(self, "encoding", "bgr8", descriptor(
            "pixel encoding of image_raw", choices=ENCODINGS))
        qos_name = declare(self, "qos", "sensor_data", descriptor(
            "QoS of both topics: sensor_data (best effort, last 5), reliable (last 10) or"
            " system_default", read_only=True, choices=QOS_CHOICES))
        self.retry_interval = declare(self, "retry_interval", 2.0, descriptor(
            "seconds between attempts to open a missing or lost source",
            float_range=(0.1, 60.0)))
        self.fov_deg = declare(self, "fov_deg", 60.0, descriptor(
            "assumed horizontal field of view in degrees, for camera_info's K"
            " (approximate: no calibration)", float_range=(1.0, 179.0)))
        self.wait_for_subscribers = declare(self, "wait_for_subscribers", 0, descriptor(
            "publish nothing until image_raw has this many subscribers (so a recording"
            " or test of a file source misses no frame); 0 = start at once",
            read_only=True, int_range=(0, 100)))
        problem = self._check(self.source, self.encoding, self.fps) or (
            None if qos_name in QOS_CHOICES else
            f"qos {qos_name!r} is not one of {', '.join(QOS_CHOICES)}")
        if problem:
            raise ConfigError(problem)
        self.qos_name = qos_name

        qos = qos_profile(qos_name)
        self._image_pub = self.create_publisher(Image, "image_raw", qos)
        self._info_pub = self.create_publisher(CameraInfo, "camera_info", qos)
        # Set with the exit code when a non-looping source ends.
        self.done = Future()

        self.published = 0
        self.skipped = 0
        self._started = time.monotonic()
        self._waiting_logged = False
        # Failure bookkeeping, shared with the capture thread of a camera.
        self._lock = threading.Lock()
        self._failing_since: float | None = None
        self._attempts = 0
        self._last_reminder = 0.0
        self._next_retry = 0.0
        self._outages = 0

        self._device = device_path(self.source)
        self._source: _Folder | _VideoFile | _Device | None = None
        self._source_fps = 0.0
        self._timer = self.create_timer(1.0 / self._rate(), self._tick)
        self._stop = threading.Event()
        self._latest: tuple[np.ndarray, Time, int] | None = None
        self._latest_sent = 0
        self.add_pre_set_parameters_callback(lambda params: coerce_numbers(self, params))
        self.add_on_set_parameters_callback(self._validate)
        self.add_post_set_parameters_callback(self._apply)
        rate = f"{self.fps:g} fps" if self.fps else "source rate"
        self.get_logger().info(
            f"camera source {self.source!r} -> {self._image_pub.topic_name} and"
            f" {self._info_pub.topic_name} ({self.encoding}, qos {qos_name}, {rate})")

        self._thread: threading.Thread | None = None
        if self._device is not None:
            self._thread = threading.Thread(target=self._capture_loop, name="camera-capture",
                                            daemon=True)
            self._thread.start()

    # --- parameters -----------------------------------------------------------------

    @staticmethod
    def _check(source: str, encoding: str, fps: float) -> str | None:
        if not source.strip():
            return "source is empty: give a camera index, a device path, a file or a folder"
        if encoding not in ENCODINGS:
            return f"encoding {encoding!r} is not one of {', '.join(ENCODINGS)}"
        if 0.0 < fps < 0.1:
            return f"fps {fps:g} is below 0.1 (0 means the source's own rate)"
        return None

    def _validate(self, params: list[Parameter]) -> SetParametersResult:
        values = {p.name: p.value for p in params}
        problem = self._check(self.source, values.get("encoding", self.encoding),
                              values.get("fps", self.fps))
        return SetParametersResult(successful=problem is None, reason=problem or "")

    def _apply(self, params: list[Parameter]) -> None:
        for param in params:
            if param.name in ("loop", "width", "height", "fps", "frame_id", "encoding",
                              "retry_interval", "fov_deg"):
                setattr(self, param.name, param.value)
        self._retime()

    def _rate(self) -> float:
        return self.fps or self._source_fps or FALLBACK_FPS

    def _retime(self) -> None:
        period_ns = round(1e9 / self._rate())
        if self._timer.timer_period_ns != period_ns:
            self._timer.timer_period_ns = period_ns
            self._timer.reset()

    # --- source failures ------------------------------------------------------------

    def _failed(self, reason: str, lost: bool) -> None:
        now = time.monotonic()
        with self._lock:
            self._attempts += 1
            if self._failing_since is None:
                self._failing_since = self._last_reminder = now
                self._attempts = 1
                self._outages += 1
                what = "was lost" if lost else "could not be opened"
                self.get_logger().error(
                    f"camera source {self.source!r} {what}: {reason};"
                    f" retrying every {self.retry_interval:g} s")
            elif now - self._last_reminder >= REMINDER_PERIOD_S:
                self._last_reminder = now
                self.get_logger().warning(
                    f"camera source {self.source!r} still unavailable after"
                    f" {self._attempts} attempts in {now - self._failing_since:.0f} s: {reason}")
            self._next_retry = now + self.retry_interval

    def _opened(self, source) -> None:
        with self._lock:
            if self._failing_since is not None:
                self.get_logger().info(
                    f"camera source {self.source!r} is back after {self._attempts} attempts"
                    f" ({time.monotonic() - self._failing_since:.1f} s): {source.describe()}")
            else:
                self.get_logger().info(f"opened {self.source!r}: {source.describe()}")
            self._failing_since = None
        self._source_fps = source.fps

    def _warn_skip(self, message: str) -> None:
        self.skipped += 1
        self.get_logger().warning(message)

    # --- capture ----------------------------------------------------------------------

    def _capture_loop(self) -> None:
        """Camera thread: keeps the newest frame, so a slow read never blocks callbacks."""
        device = None
        count = 0
        while not self._stop.is_set():
            if device is None:
                device = _Device(self._device, self.width, self.height, self.fps)
                try:
                    device.open()
                except SourceError as error:
                    device = None
                    self._failed(str(error), lost=False)
                    self._stop.wait(self.retry_interval)
                    continue
                self._opened(device)
            try:
                frame = device.read()
            except SourceError as error:
                device.close()
                device = None
                self._failed(str(error), lost=True)
                self._stop.wait(self.retry_interval)
                continue
            count += 1
            with self._lock:
                self._latest = (frame, self.get_clock().now(), count)
        if device is not None:
            device.close()

    def _tick(self) -> None:
        if self.done.done():
            return
        if self.wait_for_subscribers and self.published == 0:
            have = self._image_pub.get_subscription_count()
            if have < self.wait_for_subscribers:
                if not self._waiting_logged:
                    self._waiting_logged = True
                    self.get_logger().info(
                        f"waiting for {self.wait_for_subscribers} subscriber(s) on"
                        f" {self._image_pub.topic_name} (have {have})")
                return
        if self._device is not None:
            with self._lock:
                latest = self._latest
            if latest is not None and latest[2] != self._latest_sent:
                self._latest_sent = latest[2]
                self._publish(latest[0], latest[1])
            return
        self._tick_file()

    def _tick_file(self) -> None:
        if self._source is None:
            if time.monotonic() < self._next_retry:
                return
            path = Path(os.path.expanduser(self.source))
            source = _Folder(path, self._warn_skip) if path.is_dir() else _VideoFile(path)
            try:
                source.open()
            except SourceError as error:
                self._failed(str(error), lost=False)
                return
            self._source = source
            self._opened(source)
            self._retime()
        stamp = self.get_clock().now()
        try:
            frame = self._source.read()
            if frame is None and self.loop:
                self._source.rewind()
                frame = self._source.read()
                if frame is None:
                    raise SourceError("it holds no readable frame")
        except SourceError as error:
            self._source.close()
            self._source = None
            self._failed(str(error), lost=True)
            return
        if frame is None:
            self.get_logger().info(f"end of {self.source}")
            self._finish()
            return
        self._publish(frame, stamp)

    def _publish(self, frame: np.ndarray, stamp: Time) -> None:
        frame = resize(frame, self.width, self.height)
        if self.encoding == "rgb8":
            frame = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        header = Header(stamp=stamp.to_msg(), frame_id=self.frame_id)
        height, width = frame.shape[:2]
        self._image_pub.publish(image_to_msg(frame, self.encoding, header))
        self._info_pub.publish(camera_info(width, height, self.fov_deg, header))
        self.published += 1

    def _finish(self) -> None:
        # A reliable reader may still be acknowledging the last frames: give it a moment
        # so that exiting does not drop them.
        for pub in (self._image_pub, self._info_pub):
            pub.wait_for_all_acked(Duration(seconds=2))
        self.done.set_result(0)

    def destroy_node(self) -> None:
        self.close()
        super().destroy_node()

    def close(self) -> None:
        """Stop the capture thread and the source; log what was published."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=3.0)  # a V4L2 read can block ~1 s; daemon otherwise
        if self._source is not None:
            self._source.close()
            self._source = None
        elapsed = time.monotonic() - self._started
        log_final(
            self, f"published {self.published} frames in {elapsed:.1f} s"
            f" ({self.published / elapsed if elapsed > 0 else 0.0:.1f} fps average),"
            f" {self.skipped} unreadable images skipped, {self._outages} source outages")


def main(args: list[str] | None = None) -> int:
    # OpenCV's own warnings (a missing device at every retry) would bypass our throttling.
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    return run_node(CameraNode, args, "camera")


if __name__ == "__main__":
    raise SystemExit(main())
