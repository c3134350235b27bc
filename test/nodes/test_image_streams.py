"""The perception node's image streams in-process (fer_ros/nodes/perception/image_streams.py):
the waiting queue (queue_size), what it counts as dropped, bad images, stream names.

The node tests show the same over DDS; these call the stream directly, in this process,
so the order and the counts are exact and `make mutate` sees what they cover.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace

import numpy as np
import pytest
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image

from fer_ros.nodes.perception.image_streams import (
    _MAX_BAD_KINDS,
    MAX_STREAMS,
    ImageStream,
    check_stream_names,
    topic,
)
from fer_ros.ros.image_codec import image_to_msg

pytestmark = pytest.mark.nodes


@pytest.fixture
def node(rclpy_context) -> Iterator[Node]:
    node = Node("image_streams_test", context=rclpy_context)
    yield node
    node.destroy_node()


def image(sec: int) -> Image:
    msg = image_to_msg(np.zeros((4, 6, 3), np.uint8), "bgr8")
    msg.header.stamp.sec = sec
    return msg


def arrive(stream: ImageStream, *secs: int) -> None:
    for sec in secs:
        stream._on_image(image(sec))


def drain(stream: ImageStream) -> list[int]:
    with stream._wake:
        taken = []
        while (frame := stream.take()) is not None:
            taken.append(frame.msg.header.stamp.sec)
        return taken


def counts(stream: ImageStream) -> tuple[int, int, int]:
    c = stream.stats.counts
    return c["received"], c["dropped"], c["bad"]


def test_queue_size_1_keeps_only_the_newest(node: Node) -> None:
    stream = ImageStream(node, "", threading.Condition())
    arrive(stream, 1, 2, 3)
    assert drain(stream) == [3]
    assert counts(stream) == (3, 2, 0)
    assert drain(stream) == []


def test_a_longer_queue_keeps_the_newest_n_oldest_first(node: Node) -> None:
    stream = ImageStream(node, "", threading.Condition(), queue_size=3)
    arrive(stream, 1, 2)
    assert drain(stream) == [1, 2] and counts(stream) == (2, 0, 0)
    arrive(stream, 3, 4, 5, 6, 7)
    assert drain(stream) == [5, 6, 7] and counts(stream) == (7, 2, 0)


def test_a_smaller_queue_size_applies_to_the_next_image(node: Node) -> None:
    stream = ImageStream(node, "", threading.Condition(), queue_size=4)
    arrive(stream, 1, 2, 3, 4)
    stream.queue_size = 2
    arrive(stream, 5)  # the queue shrinks to 2: 1, 2 and 3 go
    assert drain(stream) == [4, 5] and counts(stream) == (5, 3, 0)


def test_an_image_wakes_the_inference_thread(node: Node) -> None:
    wake = threading.Condition()
    stream = ImageStream(node, "", wake, queue_size=2)
    woken = threading.Event()

    def wait() -> None:
        with wake:
            if wake.wait_for(lambda: bool(stream.waiting), timeout=10):
                woken.set()

    waiter = threading.Thread(target=wait)
    waiter.start()
    arrive(stream, 1)
    waiter.join(10)
    assert woken.is_set()


def test_unsubscribe_forgets_the_waiting_images(node: Node) -> None:
    stream = ImageStream(node, "cam", threading.Condition(), queue_size=5)
    arrive(stream, 1, 2)
    stream.unsubscribe()
    assert drain(stream) == []


def test_a_bad_image_is_counted_and_logged_once_per_kind(node: Node, capfd) -> None:
    stream = ImageStream(node, "cam", threading.Condition())
    good = image(1)
    assert stream.decode(_frame(stream, good)).shape == (4, 6, 3)
    for size in (5, 7, 9):  # one kind of fault, three sizes
        bad = image(2)
        bad.data = bytes(bad.data)[:-size]
        assert stream.decode(_frame(stream, bad)) is None
    wrong = image(3)
    wrong.encoding = "yuv422"
    assert stream.decode(_frame(stream, wrong)) is None
    assert counts(stream)[2] == 4
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if "dropping image on /cam/image: " in line]
    assert len(lines) == 2, err
    assert "yuv422" in lines[1]


def _frame(stream: ImageStream, msg: Image):
    stream._on_image(msg)
    with stream._wake:
        return stream.take()


def test_stamp_of_falls_back_to_the_arrival_time(node: Node) -> None:
    stream = ImageStream(node, "", threading.Condition())
    before = time.monotonic()
    stamped = _frame(stream, image(7))
    stamped.msg.header.stamp.nanosec = 500_000_000
    assert ImageStream.stamp_of(stamped) == 7.5
    half = _frame(stream, image(0))
    half.msg.header.stamp.nanosec = 500_000_000  # 0.5 s after the epoch is a stamp too
    assert ImageStream.stamp_of(half) == 0.5
    unstamped = _frame(stream, image(0))
    assert before <= ImageStream.stamp_of(unstamped) == unstamped.received <= time.monotonic()
    assert before <= stream.stats.last_received <= time.monotonic()


def test_failures_are_counted_and_logged_at_most_every_5_s(node: Node, capfd) -> None:
    named, unnamed = (ImageStream(node, name, threading.Condition()) for name in ("cam", ""))
    for _ in range(3):
        named.failed(RuntimeError("model broke"))
    unnamed.failed(RuntimeError("other"))  # another stream: its own 5 s
    assert counts(named)[2] == 3 and counts(unnamed)[2] == 1
    lines = [line for line in capfd.readouterr().err.splitlines() if "failed" in line]
    assert len(lines) == 2, lines
    assert lines[0].endswith("processing an image from /cam/image failed: "
                             "RuntimeError('model broke')")
    assert lines[1].endswith("processing an image from /image failed: RuntimeError('other')")


def test_failure_lines_are_5_s_apart(node: Node, capfd, monkeypatch) -> None:
    from fer_ros.nodes.perception import image_streams

    now = [100.0]
    # The module's clock only: rclpy and other threads keep the real one.
    monkeypatch.setattr(image_streams, "time", SimpleNamespace(monotonic=lambda: now[0]))
    stream = ImageStream(node, "", threading.Condition())
    for now[0] in (100.0, 104.9, 105.0, 109.9, 110.0):
        stream.failed(RuntimeError(f"at {now[0]}"))
    lines = [line for line in capfd.readouterr().err.splitlines() if "failed" in line]
    assert [line.rsplit("(", 1)[1] for line in lines] == [
        "'at 100.0')", "'at 105.0')", "'at 110.0')"]


def test_the_publisher_opens_and_closes(rclpy_context) -> None:
    from rclpy.lifecycle import LifecycleNode

    node = LifecycleNode("image_streams_lifecycle_test", context=rclpy_context)
    try:
        stream = ImageStream(node, "cam", threading.Condition())
        stream.open_publisher()
        assert stream.publisher.topic_name == "/cam/faces/emotions"
        assert stream.publisher.qos_profile.depth == 10
        assert [p.topic_name for p in node.publishers].count("/cam/faces/emotions") == 1
        stream.close_publisher()
        assert stream.publisher is None
        assert "/cam/faces/emotions" not in [p.topic_name for p in node.publishers]
        stream.close_publisher()  # twice is harmless
    finally:
        node.destroy_node()


def test_camera_info_is_kept(node: Node) -> None:
    from sensor_msgs.msg import CameraInfo

    stream = ImageStream(node, "", threading.Condition())
    assert stream.camera_info is None
    info = CameraInfo(width=640)
    stream._on_camera_info(info)
    assert stream.camera_info is info


def test_subscribe_and_unsubscribe(node: Node) -> None:
    from fer_ros.ros.qos import qos_profile

    stream = ImageStream(node, "cam", threading.Condition())
    stream.subscribe(qos_profile("sensor_data"), "raw")
    assert sorted(s.topic_name for s in node.subscriptions) == ["/cam/camera_info",
                                                                  "/cam/image"]
    stream.unsubscribe()
    assert list(node.subscriptions) == []
    stream.unsubscribe()  # twice is harmless
    stream.close_publisher()  # none was opened: nothing to close
    assert stream.publisher is None


def test_after_32_kinds_of_bad_image_no_more_are_logged(node: Node, capfd) -> None:
    stream = ImageStream(node, "", threading.Condition())
    letters = "abcdefghijklmnopqrstuvwxyzABCDEFGH"
    for letter in letters[:_MAX_BAD_KINDS + 2]:
        bad = image(1)
        bad.encoding = f"weird{letter}"
        assert stream.decode(_frame(stream, bad)) is None
    assert counts(stream)[2] == _MAX_BAD_KINDS + 2
    lines = [line for line in capfd.readouterr().err.splitlines() if "dropping image" in line]
    assert len(lines) == _MAX_BAD_KINDS
    assert "dropping image on /image: " in lines[0] and "weirda" in lines[0]
    assert lines[0].endswith("supported are bgr8, rgb8, mono8, bgra8, rgba8")
    assert not any("further kinds" in line for line in lines[:-1])
    assert lines[-1].endswith(" (further kinds of bad images are not logged; see "
                              "diagnostics 'images rejected')")


def test_stream_names() -> None:
    assert check_stream_names([""]) is None
    assert check_stream_names(["cam1", "robot/head_2"]) is None
    assert check_stream_names([]) == ("streams must name at least one stream ('' = image "
                                      "-> faces/emotions)")
    assert "names repeat" in check_stream_names(["a", "a"])
    assert "'1cam' is not a topic prefix" in check_stream_names(["1cam"])
    assert "'cam/' is not a topic prefix" in check_stream_names(["cam/"])
    assert "'a b' is not a topic prefix" in check_stream_names(["a b"])
    assert check_stream_names([f"c{i}" for i in range(MAX_STREAMS)]) is None
    assert f"at most {MAX_STREAMS}" in check_stream_names(
        [f"c{i}" for i in range(MAX_STREAMS + 1)])
    assert topic("", "image") == "image" and topic("cam1", "image") == "cam1/image"


def test_compressed_transport_takes_the_resolved_topic_s_compressed_sibling(
        rclpy_context) -> None:
    from fer_ros.ros.qos import qos_profile

    # Remapped as a user would: the base name is resolved first, then /compressed added.
    node = Node("image_streams_compressed_test", context=rclpy_context,
                cli_args=["--ros-args", "-r", "cam/image:=/robot/head/image_raw"])
    try:
        stream = ImageStream(node, "cam", threading.Condition())
        assert stream.image_topic == "/robot/head/image_raw"
        stream.subscribe(qos_profile("sensor_data"), "compressed")
        assert stream.image_topic == "/robot/head/image_raw/compressed"
        assert sorted((s.topic_name, s.msg_type.__name__) for s in node.subscriptions) == [
            ("/cam/camera_info", "CameraInfo"),
            ("/robot/head/image_raw/compressed", "CompressedImage")]
        stream.unsubscribe()
        stream.subscribe(qos_profile("sensor_data"), "raw")
        assert sorted((s.topic_name, s.msg_type.__name__) for s in node.subscriptions) == [
            ("/cam/camera_info", "CameraInfo"), ("/robot/head/image_raw", "Image")]
    finally:
        node.destroy_node()


def test_compressed_images_are_decoded_and_bad_ones_logged_by_topic(node: Node,
                                                                     capfd) -> None:
    from fer_ros.ros.image_codec import image_to_compressed
    from fer_ros.ros.qos import qos_profile

    stream = ImageStream(node, "cam", threading.Condition())
    stream.subscribe(qos_profile("sensor_data"), "compressed")
    picture = np.zeros((30, 40, 3), np.uint8)
    picture[:, :, 2] = 255  # red in BGR
    frame = _frame(stream, image_to_compressed(picture, "bgr8", "png"))
    assert frame.size == (0, 0)  # known only once decoded
    rgb = stream.decode(frame)
    assert rgb.shape == (30, 40, 3) and (rgb[0, 0] == (255, 0, 0)).all()
    assert frame.size == (40, 30)
    detailed = np.random.default_rng(3).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    cut = image_to_compressed(detailed, "bgr8", "jpeg")  # half the file is pixel data
    cut.data = cut.data[:len(cut.data) // 2]
    assert stream.decode(_frame(stream, cut)) is None
    assert counts(stream) == (2, 0, 1)
    lines = [line for line in capfd.readouterr().err.splitlines() if "dropping" in line]
    assert len(lines) == 1
    assert lines[0].endswith("dropping image on /cam/image/compressed: compressed image "
                             f"(jpeg, {len(cut.data)} bytes) has no end marker: truncated")


class Answering:
    """An ImageStream of a lifecycle node, with its module's clock in the test's hands
    (rclpy and other threads keep the real one), answering 6x4 images."""

    CALIBRATED = CameraInfo(width=6, height=4, k=[5.0, 0, 3, 0, 5, 2, 0, 0, 1])

    def __init__(self, node, name: str, monkeypatch, capfd) -> None:
        from fer_ros.nodes.perception import image_streams

        self.now = 0.0
        monkeypatch.setattr(image_streams, "time", SimpleNamespace(monotonic=lambda: self.now))
        self.capfd = capfd
        self.stream = ImageStream(node, name, threading.Condition())
        self.stream.open_publisher()

    def at(self, t: float, fov_deg: float = 60.0) -> list[str]:
        """Answer an image at monotonic time ``t``: the log lines about camera_info."""
        self.now = t
        frame = _frame(self.stream, image(1))
        assert self.stream.decode(frame) is not None  # (6x4: its size is known)
        self.stream.publish(frame, [], fov_deg)
        return [line for line in self.capfd.readouterr().err.splitlines()
                if "camera_info" in line]


@pytest.fixture
def lifecycle_node(rclpy_context) -> Iterator:
    from rclpy.lifecycle import LifecycleNode

    node = LifecycleNode("image_streams_intrinsics_test", context=rclpy_context)
    yield node
    node.destroy_node()


def test_assumed_intrinsics_are_shown_and_said_once_after_5_s(lifecycle_node, capfd,
                                                              monkeypatch) -> None:
    answering = Answering(lifecycle_node, "cam", monkeypatch, capfd)
    stream = answering.stream
    assert stream.intrinsics == ""  # nothing answered yet
    assert answering.at(100.0) == [] and stream.intrinsics == "assumed fov 60"
    assert answering.at(104.9) == []
    (line,) = answering.at(105.0)
    assert line.endswith("no camera_info for the 6x4 images of /cam/image on "
                         "/cam/camera_info after 5 s: head poses (distance, direction) "
                         "use the assumed fov_deg 60; publish camera_info or set fov_deg")
    assert answering.at(200.0) == []  # said once
    # camera_info of another size does not describe these images; of theirs, it does.
    stream._on_camera_info(CameraInfo(width=640, height=480,
                                      k=[500.0, 0, 320, 0, 500, 240, 0, 0, 1]))
    assert answering.at(201.0) == [] and stream.intrinsics == "assumed fov 60"
    stream._on_camera_info(Answering.CALIBRATED)
    assert answering.at(202.0) == [] and stream.intrinsics == "camera_info"


def test_a_warning_waits_for_5_s_of_assumed_intrinsics_in_a_row(lifecycle_node, capfd,
                                                                monkeypatch) -> None:
    answering = Answering(lifecycle_node, "", monkeypatch, capfd)
    said_at = {}
    for t, info in ((0.0, None), (4.0, Answering.CALIBRATED), (6.0, None), (10.9, None),
                    (11.0, None)):
        answering.stream.camera_info = info
        said_at[t] = answering.at(t, fov_deg=45.0)
    # The run that began at 6 s reached 5 s at 11 s; the one before was cut at 4 s.
    assert [t for t, lines in said_at.items() if lines] == [11.0]
    (line,) = said_at[11.0]
    assert "of /image on /camera_info after 5 s" in line and "fov_deg 45;" in line
    assert answering.stream.intrinsics == "assumed fov 45"


def test_the_answer_carries_the_image_s_header_and_size_and_faces_posed_by_its_camera(
        lifecycle_node, capfd, monkeypatch) -> None:
    from fer_ros.pipeline.head_pose import Intrinsics
    from fer_ros.pipeline.types import Detection, FaceResult
    from fer_ros.ros.face_msgs import face_to_msg

    answering = Answering(lifecycle_node, "cam", monkeypatch, capfd)
    stream = answering.stream
    sent: list = []
    stream.publisher = SimpleNamespace(publish=sent.append)
    # A face about 1 m away, right of the centre of a 640x480 image.
    landmarks = np.array([[382.0, 220.0], [417.0, 220.0], [399.5, 240.0], [386.0, 258.0],
                          [413.0, 258.0]], np.float32)
    face = FaceResult(detection=Detection(box=np.array([370.0, 200.5, 430.0, 279.6],
                                                       np.float32),
                                          score=0.99, landmarks=landmarks),
                      track_id=7, name="ada", similarity=0.8)
    calibrated = CameraInfo(width=640, height=480, k=[900.0, 0, 280, 0, 910, 260, 0, 0, 1])

    def answer(info: CameraInfo | None):
        msg = image_to_msg(np.zeros((480, 640, 3), np.uint8), "bgr8")
        msg.header.stamp.sec, msg.header.frame_id = 42, "head_camera"
        stream.camera_info = info
        frame = _frame(stream, msg)
        stream.decode(frame)
        stream.publish(frame, [face], 60.0)
        return sent[-1]

    assumed, measured = answer(None), answer(calibrated)
    for out in (assumed, measured):
        assert (out.header.stamp.sec, out.header.frame_id) == (42, "head_camera")
        assert (out.image_width, out.image_height) == (640, 480)
        assert len(out.faces) == 1 and out.faces[0].name == "ada"
        assert out.faces[0].track_id == 7 and out.faces[0].head_pose_valid
    assert assumed.faces == [face_to_msg(face, Intrinsics.from_fov(640, 480, 60.0))]
    assert measured.faces == [face_to_msg(face, Intrinsics.from_k(calibrated.k))]
    assert measured.faces[0].head_pose != assumed.faces[0].head_pose
