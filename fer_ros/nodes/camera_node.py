"""Camera node: publishes frames from a V4L2 camera, a video file or a folder of images.

Topics (relative, remap as usual):
  image_raw    sensor_msgs/Image (bgr8 or rgb8)
  camera_info  sensor_msgs/CameraInfo with the same header; K is an ideal pinhole
               computed from `fov_deg`, an approximation good enough for drawing and
               rough geometry, not a calibration.
  image_raw/compressed  sensor_msgs/CompressedImage (JPEG), with `publish_compressed`:
               the name compressed_image_transport gives it (image_raw resolved first).
QoS: reliable by default, as REP-2003 asks of drivers, so reliable and best-effort
subscribers both receive (a best-effort publisher reaches only best-effort ones).
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
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.task import Future
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header

from fer_ros.camera.sources import Device, Folder, SourceError, VideoFile, device_path, resize
from fer_ros.ros.image_codec import image_to_compressed, image_to_msg
from fer_ros.ros.params import ParamSpec, declare_parameters
from fer_ros.ros.qos import QOS_CHOICES, qos_profile
from fer_ros.ros.run import log_final, run_node
from fer_ros.ros.transport import compressed_topic

ENCODINGS = ("bgr8", "rgb8")
# Publishing rate when fps is 0 and the source does not say (folders, some cameras).
FALLBACK_FPS = 30.0
# How often a source that stays unavailable is mentioned again after the first ERROR.
REMINDER_PERIOD_S = 30.0


def _not_empty(source: str) -> str | None:
    if not source.strip():
        return "source is empty: give a camera index, a device path, a file or a folder"
    return None


def _zero_or_at_least_tenth(fps: float) -> str | None:
    if 0.0 < fps < 0.1:
        return f"fps {fps:g} is below 0.1 (0 means the source's own rate)"
    return None


PARAMS = (
    ParamSpec("source", "0", "V4L2 camera: an index (\"0\" = /dev/video0; quote it in YAML, a "
              "bare 0 is an integer) or a device path. Otherwise a video file (anything "
              "OpenCV/FFmpeg decodes) or a folder of .jpg/.jpeg/.png/.bmp images, read in name "
              "order.", read_only=True, rule=_not_empty),
    ParamSpec("loop", False, "Restart a file or folder source at its end. When false the node "
              "logs \"end of <source>\" and exits with code 0 (a launch file can mark it "
              "required to stop the rest)."),
    ParamSpec("width", 0, "Output width in pixels; 0 = the source's own. Set alone, the "
              "height follows in proportion. A camera is asked for this size, then frames "
              "are resized to it.", (0, 8192)),
    ParamSpec("height", 0, "Output height in pixels; 0 = the source's own. Set alone, the "
              "width follows in proportion.", (0, 8192)),
    ParamSpec("fps", 0.0, "Publishing rate in Hz (0.1 to 240); 0 = the source's own: a video "
              f"file's rate, the camera's, or {FALLBACK_FPS:g} for a folder. A camera "
              "publishes its newest frame each tick.", (0.0, 240.0),
              rule=_zero_or_at_least_tenth),
    ParamSpec("frame_id", "camera_optical_frame", "frame_id of every published header "
              "(images and camera_info)."),
    ParamSpec("encoding", "bgr8", "Pixel encoding of image_raw: bgr8 or rgb8.",
              choices=ENCODINGS),
    ParamSpec("qos", "reliable", "QoS of image_raw, its compressed sibling and camera_info: "
              "reliable (keep last 10; REP-2003's choice for drivers: reliable and "
              "best-effort subscribers both receive), sensor_data (best effort, keep last 5: "
              "only best-effort subscribers receive) or system_default (the middleware's "
              "defaults).", read_only=True, choices=QOS_CHOICES),
    ParamSpec("publish_compressed", False, "Also publish image_raw/compressed "
              "(sensor_msgs/CompressedImage, JPEG at jpeg_quality), as "
              "compressed_image_transport does: a twentieth of the bytes, for a perception "
              "node on another machine (image_transport:=compressed).", read_only=True),
    ParamSpec("jpeg_quality", 95, "JPEG quality of image_raw/compressed (95, "
              "compressed_image_transport's default).", (1, 100)),
    ParamSpec("retry_interval", 2.0, "Seconds between attempts to open a missing camera or "
              "one that disappeared. It is logged once as an error, then at most every 30 s.",
              (0.1, 60.0)),
    ParamSpec("fov_deg", 60.0, "Assumed horizontal field of view in degrees, used for "
              "camera_info's K (an ideal pinhole with no distortion: approximate, not a "
              "calibration).", (1.0, 179.0)),
    ParamSpec("wait_for_subscribers", 0, "Publish nothing until image_raw has this many "
              "subscribers: a recording or a test of a file source then receives every "
              "frame. 0 = start at once.", (0, 100), read_only=True),
)


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


class CameraNode(Node):
    """Publishes image_raw and camera_info from the `source` parameter's frames."""

    def __init__(self, **kwargs) -> None:
        super().__init__("camera", **kwargs)
        self.p = declare_parameters(self, PARAMS, on_change=self._on_parameters_changed)
        self.source = self.p["source"]
        qos_name = self.p["qos"]
        qos = qos_profile(qos_name)
        self._image_pub = self.create_publisher(Image, "image_raw", qos)
        self._info_pub = self.create_publisher(CameraInfo, "camera_info", qos)
        self._compressed_pub = None
        if self.p["publish_compressed"]:
            self._compressed_pub = self.create_publisher(
                CompressedImage, compressed_topic(self, "image_raw"), qos)
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
        self._source: Folder | VideoFile | None = None
        self._source_fps = 0.0
        self._timer = self.create_timer(1.0 / self._rate(), self._tick)
        self._stop = threading.Event()
        self._latest: tuple[np.ndarray, Time, int] | None = None
        self._latest_sent = 0
        rate = f"{self.p['fps']:g} fps" if self.p['fps'] else "source rate"
        self.get_logger().info(
            f"camera source {self.source!r} -> {self._image_pub.topic_name} and"
            f" {self._info_pub.topic_name} ({self.p['encoding']}, qos {qos_name}, {rate})")

        self._thread: threading.Thread | None = None
        if self._device is not None:
            self._thread = threading.Thread(target=self._capture_loop, name="camera-capture",
                                            daemon=True)
            self._thread.start()

    # --- parameters -----------------------------------------------------------------

    def _on_parameters_changed(self, _changed: dict) -> None:
        self._retime()  # the other parameters are read from self.p where they are used

    def _rate(self) -> float:
        return self.p["fps"] or self._source_fps or FALLBACK_FPS

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
                    f" retrying every {self.p['retry_interval']:g} s")
            elif now - self._last_reminder >= REMINDER_PERIOD_S:
                self._last_reminder = now
                self.get_logger().warning(
                    f"camera source {self.source!r} still unavailable after"
                    f" {self._attempts} attempts in {now - self._failing_since:.0f} s: {reason}")
            self._next_retry = now + self.p["retry_interval"]

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
                device = Device(self._device, self.p["width"], self.p["height"], self.p["fps"])
                try:
                    device.open()
                except SourceError as error:
                    device = None
                    self._failed(str(error), lost=False)
                    self._stop.wait(self.p["retry_interval"])
                    continue
                self._opened(device)
            try:
                frame = device.read()
            except SourceError as error:
                device.close()
                device = None
                self._failed(str(error), lost=True)
                self._stop.wait(self.p["retry_interval"])
                continue
            count += 1
            with self._lock:
                self._latest = (frame, self.get_clock().now(), count)
        if device is not None:
            device.close()

    def _tick(self) -> None:
        if self.done.done():
            return
        if self.p["wait_for_subscribers"] and self.published == 0:
            have = self._image_pub.get_subscription_count()
            if have < self.p["wait_for_subscribers"]:
                if not self._waiting_logged:
                    self._waiting_logged = True
                    self.get_logger().info(
                        f"waiting for {self.p['wait_for_subscribers']} subscriber(s) on"
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
            source = Folder(path, self._warn_skip) if path.is_dir() else VideoFile(path)
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
            if frame is None and self.p["loop"]:
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
        frame = resize(frame, self.p["width"], self.p["height"])
        if self.p["encoding"] == "rgb8":
            frame = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        header = Header(stamp=stamp.to_msg(), frame_id=self.p["frame_id"])
        height, width = frame.shape[:2]
        self._image_pub.publish(image_to_msg(frame, self.p["encoding"], header))
        if self._compressed_pub is not None:
            self._compressed_pub.publish(image_to_compressed(
                frame, self.p["encoding"], "jpeg", self.p["jpeg_quality"], header))
        self._info_pub.publish(camera_info(width, height, self.p["fov_deg"], header))
        self.published += 1

    def _finish(self) -> None:
        # A reliable reader may still be acknowledging the last frames: give it a moment
        # so that exiting does not drop them.
        for pub in (self._image_pub, self._info_pub, self._compressed_pub):
            if pub is not None:
                pub.wait_for_all_acked(Duration(seconds=2))
        self.done.set_result(0)

    def destroy_node(self) -> None:
        if hasattr(self, "_thread"):  # absent when start-up failed: nothing to close
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
