"""The installed camera_node executable: folder and video sources, a missing camera,
a source that disappears and comes back, bad parameters, and Ctrl-C."""

from __future__ import annotations

import math
import re
import shutil
import statistics
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import wait_for
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image

from fer_ros.paths import node_executable
from fer_ros.ros.image_codec import msg_to_image
from fer_ros.ros.qos import qos_profile

CAMERA_NODE = str(node_executable("camera_node"))
# Six colours far apart in BGR, one per frame, so the order can be read back.
COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255)]


def stamp_s(msg: Image | CameraInfo) -> float:
    return msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9


class Listener:
    """Collects image_raw and camera_info in this process."""

    def __init__(self, context, qos: str = "reliable") -> None:
        self.node = Node("camera_test_listener", context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.images: list[Image] = []
        self.infos: list[CameraInfo] = []
        self._qos = qos_profile(qos)
        self.info_sub = self.node.create_subscription(CameraInfo, "camera_info",
                                                      self.infos.append, self._qos)
        self.image_sub = None

    def subscribe_images(self) -> None:
        self.image_sub = self.node.create_subscription(Image, "image_raw", self.images.append,
                                                       self._qos)

    def spin_until(self, predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            self.executor.spin_once(timeout_sec=0.05)
        return predicate()

    def start(self, proc, timeout: float = 20.0) -> None:
        """Subscribe to images only once camera_info is matched: the node (started with
        wait_for_subscribers:=1) then publishes its first frame to both topics."""
        assert self.spin_until(lambda: self.info_sub.get_publisher_count() >= 1
                               or proc.popen.poll() is not None, timeout), proc.output()
        assert proc.popen.poll() is None, proc.output()
        self.subscribe_images()

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()


@pytest.fixture
def listener(rclpy_context):
    created: list[Listener] = []

    def make(qos: str = "reliable") -> Listener:
        created.append(Listener(rclpy_context, qos))
        return created[-1]

    yield make
    for item in created:
        item.close()


def write_folder(folder: Path, size: tuple[int, int] = (80, 60)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, colour in enumerate(COLOURS):
        path = folder / f"frame_{index:02d}.png"
        cv2.imwrite(str(path), np.full((size[1], size[0], 3), colour, np.uint8))
        paths.append(path)
    return paths


def colour_index(msg: Image) -> int:
    mean = msg_to_image(msg, "bgr8").reshape(-1, 3).mean(axis=0)
    distances = [np.abs(mean - np.array(c)).sum() for c in COLOURS]
    assert min(distances) < 30, f"frame colour {mean} matches none of the written frames"
    return int(np.argmin(distances))


def camera_args(source: Path | str, *params: str) -> list[str]:
    args = [CAMERA_NODE, "--ros-args", "-p", f"source:={source}"]
    for param in params:
        args += ["-p", param]
    return args


def assert_paced(stamps: list[float], fps: float) -> None:
    """Published on a timer of period 1/fps: no bound that a busy machine can break.

    The timer never fires early, so a slow machine cannot shorten the typical gap; and it
    keeps to its grid, so a late frame makes one long gap (or skips a period) but the
    frames around it are on time: some gap is one period. Too fast (the typical gap
    short) or too slow (no gap of one period) fails either way.
    """
    gaps = np.diff(stamps)
    assert (gaps > 0).all(), f"stamps not strictly increasing: {gaps}"
    assert statistics.median(gaps) >= 0.8 / fps, gaps
    periods = [round(gap * fps) for gap in gaps]  # each gap in whole periods
    assert min(periods) == 1, (periods, gaps)


def test_folder_source_publishes_every_image_in_order_then_exits(spawn, tmp_path: Path,
                                                                  listener) -> None:
    folder = tmp_path / "frames"
    write_folder(folder)
    (folder / "frame_02b.png").write_bytes(b"not an image")  # skipped with one warning
    (folder / "notes.txt").write_text("ignored: not an image suffix")
    sub = listener()
    proc = spawn(camera_args(folder, "fps:=20", "loop:=false", "qos:=reliable",
                             "frame_id:=cam_test", "wait_for_subscribers:=1"), "camera")
    sub.start(proc)
    assert sub.spin_until(lambda: len(sub.images) >= 6 and len(sub.infos) >= 6
                          and proc.popen.poll() is not None, 30), proc.output()
    assert proc.popen.wait(10) == 0, proc.output()
    sub.spin_until(lambda: False, 0.3)  # anything late would be an extra frame

    assert [colour_index(m) for m in sub.images] == list(range(6))
    assert all(m.header.frame_id == "cam_test" for m in sub.images)
    assert all((m.width, m.height, m.encoding) == (80, 60, "bgr8") for m in sub.images)
    stamps = [stamp_s(m) for m in sub.images]
    assert_paced(stamps, 20.0)

    assert [stamp_s(m) for m in sub.infos] == stamps
    info = sub.infos[0]
    assert (info.width, info.height, info.header.frame_id) == (80, 60, "cam_test")
    fx = 40.0 / math.tan(math.radians(30.0))  # default fov_deg 60
    assert info.k[0] == pytest.approx(fx) and info.k[4] == pytest.approx(fx)
    assert info.k[2] == pytest.approx(39.5) and info.k[5] == pytest.approx(29.5)
    assert info.p[0] == pytest.approx(fx) and list(info.d) == [0.0] * 5

    out = proc.output()
    assert out.count("skipping unreadable image") == 1 and "frame_02b.png" in out
    assert f"end of {folder}" in out and "published 6 frames" in out
    assert "Traceback" not in out


def test_video_file_at_its_own_rate_resized_to_rgb(spawn, tmp_path: Path, listener) -> None:
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (320, 240))
    assert writer.isOpened()
    levels = [10 + 12 * i for i in range(20)]
    for level in levels:  # blue rises with the frame number; red stays 0
        frame = np.zeros((240, 320, 3), np.uint8)
        frame[:, :, 0] = level
        writer.write(frame)
    writer.release()

    sub = listener()
    # fps:=0 arrives as an integer: the node must accept it for its double parameter.
    proc = spawn(camera_args(video, "fps:=0", "loop:=false", "qos:=reliable",
                             "encoding:=rgb8", "width:=160", "wait_for_subscribers:=1"),
                 "camera")
    sub.start(proc)
    assert sub.spin_until(lambda: proc.popen.poll() is not None and len(sub.images) >= 20,
                          30), proc.output()
    assert proc.popen.wait(10) == 0, proc.output()
    sub.spin_until(lambda: False, 0.3)

    assert len(sub.images) == 20 and len(sub.infos) == 20
    assert all((m.width, m.height, m.encoding) == (160, 120, "rgb8") for m in sub.images)
    assert all(m.header.frame_id == "camera_optical_frame" for m in sub.images)
    rgb = [msg_to_image(m, "rgb8") for m in sub.images]
    blue = [float(img[:, :, 2].mean()) for img in rgb]
    assert max(float(img[:, :, 0].mean()) for img in rgb) < 8  # channel order kept
    assert blue == pytest.approx(levels, abs=5)
    assert_paced([stamp_s(m) for m in sub.images], 25.0)
    assert (sub.infos[0].width, sub.infos[0].height) == (160, 120)


@pytest.mark.parametrize("source", ["/dev/video99", "missing.mp4"])
def test_missing_source_is_retried_quietly_and_ctrl_c_is_clean(spawn, tmp_path: Path,
                                                               source: str) -> None:
    if source == "missing.mp4":
        source = str(tmp_path / source)
    proc = spawn(camera_args(source, "retry_interval:=0.5"), "camera")
    assert wait_for(lambda: "could not be opened" in proc.output(), 20), proc.output()
    time.sleep(3.0)  # about six retries
    assert proc.popen.poll() is None, proc.output()
    assert proc.interrupt() == 0
    out = proc.output()
    errors = [line for line in out.splitlines() if "ERROR" in line]
    assert len(errors) == 1, out
    assert f"camera source '{source}' could not be opened" in errors[0]
    assert "retrying every 0.5 s" in errors[0]
    assert out.count("retrying") == 1
    assert "published 0 frames" in out and "Traceback" not in out


def write_video(path: Path, frames: int = 6, size: tuple[int, int] = (80, 60)) -> None:
    """A short MJPG clip, one COLOURS entry per frame."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 20.0, size)
    assert writer.isOpened()
    for colour in COLOURS[:frames]:
        writer.write(np.full((size[1], size[0], 3), colour, np.uint8))
    writer.release()


@pytest.mark.parametrize("kind", ["folder", "video"])
def test_source_that_appears_after_start_is_opened_after_quiet_retries(
        spawn, tmp_path: Path, listener, kind: str) -> None:
    source = tmp_path / ("frames" if kind == "folder" else "clip.avi")
    sub = listener()
    proc = spawn(camera_args(source, "fps:=20", "loop:=false", "qos:=reliable",
                             "retry_interval:=0.3", "wait_for_subscribers:=1"), "camera")
    sub.start(proc)  # with a subscriber the node starts trying the source
    assert sub.spin_until(lambda: "could not be opened" in proc.output(), 20), proc.output()
    # The retries under test happen over time: about five of them, none of them logged.
    sub.spin_until(lambda: proc.popen.poll() is not None, 1.5)
    assert proc.popen.poll() is None, proc.output()
    assert sub.images == []

    # Made beside it and renamed into place, so the node never sees half a source.
    staged = tmp_path / f"staged_{source.name}"
    if kind == "folder":
        write_folder(staged)
    else:
        write_video(staged)
    staged.rename(source)
    assert sub.spin_until(lambda: proc.popen.poll() is not None and len(sub.images) >= 6,
                          30), proc.output()
    assert proc.popen.wait(10) == 0, proc.output()
    assert [colour_index(m) for m in sub.images] == list(range(6))

    out = proc.output()
    errors = [line for line in out.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and f"camera source '{source}' could not be opened" in errors[0], out
    assert out.count("retrying") == 1 and "still unavailable" not in out  # no reminder yet
    # The first failure and every retry until the source appeared are counted: several.
    back = re.search(r"camera source '.*' is back after (\d+) attempts", out)
    assert back is not None, out
    assert int(back.group(1)) >= 2, back.group(0)
    assert "published 6 frames" in out and "1 source outages" in out
    assert "Traceback" not in out


def test_folder_that_disappears_and_comes_back(spawn, tmp_path: Path, listener) -> None:
    folder = tmp_path / "frames"
    paths = write_folder(folder)
    sub = listener()
    proc = spawn(camera_args(folder, "fps:=20", "loop:=true", "qos:=reliable",
                             "retry_interval:=0.3", "wait_for_subscribers:=1"), "camera")
    sub.start(proc)
    assert sub.spin_until(lambda: len(sub.images) >= 8, 20), proc.output()  # looped once

    hidden = tmp_path / "hidden"
    hidden.mkdir()
    for path in paths:
        shutil.move(path, hidden / path.name)
    assert sub.spin_until(lambda: "was lost" in proc.output(), 10), proc.output()
    sub.spin_until(lambda: False, 0.3)
    during = len(sub.images)
    sub.spin_until(lambda: False, 1.5)  # about five retries against an empty folder
    assert len(sub.images) == during
    assert proc.popen.poll() is None

    for path in paths:
        shutil.move(hidden / path.name, path)
    assert sub.spin_until(lambda: len(sub.images) >= during + 8, 20), proc.output()
    assert proc.interrupt() == 0
    out = proc.output()
    assert "is back after" in out
    assert out.count("retrying every 0.3 s") == 1 and "Traceback" not in out
    # Back from the start of the folder, in order.
    resumed = [colour_index(m) for m in sub.images[during:during + 8]]
    assert resumed == [0, 1, 2, 3, 4, 5, 0, 1]
    stamps = [stamp_s(m) for m in sub.images]
    assert (np.diff(stamps) > 0).all()


@pytest.mark.parametrize(("param", "message"), [
    ("encoding:=rgb9", "encoding='rgb9' is not one of bgr8, rgb8"),
    ("fps:=500.0", "fps"),
    ("qos:=fast", "qos='fast' is not one of sensor_data, reliable, system_default"),
])
def test_bad_parameters_exit_2_with_one_clear_line(spawn, tmp_path: Path, param: str,
                                                   message: str) -> None:
    proc = spawn(camera_args(tmp_path, param), "camera")
    assert proc.popen.wait(20) == 2, proc.output()
    out = proc.output()
    assert "invalid parameters" in out and message in out and "Traceback" not in out


def test_default_qos_reaches_reliable_and_best_effort_subscribers_and_jpeg_too(
        spawn, tmp_path: Path, listener) -> None:
    """REP-2003: a driver publishes reliable, so a reliable subscriber (ROS4HRI's, a
    recorder) and a best-effort one (perception's sensor_data) both receive; with
    publish_compressed the same frames go out as JPEG on image_raw/compressed."""
    from sensor_msgs.msg import CompressedImage

    from fer_ros.ros.image_codec import compressed_to_image

    folder = tmp_path / "frames"
    write_folder(folder)
    reliable, best_effort = listener("reliable"), listener("sensor_data")
    jpegs: list[CompressedImage] = []
    reliable.node.create_subscription(CompressedImage, "image_raw/compressed", jpegs.append,
                                      qos_profile("reliable"))
    for sub in (reliable, best_effort):
        sub.subscribe_images()
    proc = spawn(camera_args(folder, "fps:=20", "loop:=true", "publish_compressed:=true",
                             "jpeg_quality:=90"), "camera")
    for sub in (reliable, best_effort):
        assert sub.spin_until(lambda s=sub: len(s.images) >= 6 and len(jpegs) >= 6, 30), (
            proc.output())
    assert proc.interrupt() == 0, proc.output()

    by_stamp = {stamp_s(m): colour_index(m) for m in reliable.images}
    matched = 0
    for jpeg in jpegs:
        assert jpeg.format == "bgr8; jpeg compressed bgr8"
        assert jpeg.header.frame_id == "camera_optical_frame"
        pixels = compressed_to_image(jpeg, "bgr8")
        assert pixels.shape == (60, 80, 3)
        if stamp_s(jpeg) in by_stamp:  # the same frame as a raw image: the same colour
            mean = pixels.reshape(-1, 3).mean(axis=0)
            assert np.abs(mean - COLOURS[by_stamp[stamp_s(jpeg)]]).max() < 30
            matched += 1
    assert matched >= 5, (matched, len(jpegs))
    assert all(0 <= colour_index(m) < 6 and (m.width, m.height) == (80, 60)
               for m in best_effort.images)
