"""perception_node's parameters that change what it reports: enable_emotion, fov_deg,
queue_size, and the /diagnostics levels that latency_warn_ms and drop_warn_ratio decide.

One node process (enable_emotion:=false, diagnostics every 0.5 s) serves the module;
fov_deg, queue_size, latency_warn_ms and drop_warn_ratio are set at run time. Images are
stamped with the current time, so the latency diagnostics measure is the node's own.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from itertools import pairwise

import numpy as np
import pytest
from conftest import Proc, data_path, wait_for
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosutil import TestNode, frame_bgr, handshake
from sensor_msgs.msg import Image

from fer_ros.msg import FaceEmotionArray
from fer_ros.paths import node_executable
from fer_ros.ros.image_codec import image_to_msg

pytestmark = pytest.mark.slow

Stamp = tuple[int, int]
COUNTERS = ("images received", "images dropped", "images rejected", "messages published")


def counters(status: DiagnosticStatus) -> dict[str, int]:
    values = {kv.key: kv.value for kv in status.values}
    return {key: int(values[key]) for key in COUNTERS}


class Client:
    def __init__(self, proc: Proc) -> None:
        self.proc = proc
        self.client = TestNode("perception_options_client")
        node = self.client.node
        # Deep enough for a whole burst (see burst()).
        reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self.image_pub = node.create_publisher(Image, "/camera/image_raw", reliable)
        self.lock = threading.Lock()
        self.outputs: dict[Stamp, FaceEmotionArray] = {}
        self.order: list[Stamp] = []  # of the outputs, as they arrived
        self.diagnostics: list[DiagnosticStatus] = []
        node.create_subscription(FaceEmotionArray, "/faces/emotions", self._on_faces, 50)
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics,
                                 reliable)
        self.set_params = node.create_client(SetParameters, "/perception/set_parameters")

    def _on_faces(self, msg: FaceEmotionArray) -> None:
        stamp = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        with self.lock:
            self.outputs[stamp] = msg
            self.order.append(stamp)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        with self.lock:
            self.diagnostics += [s for s in msg.status if s.name == "perception: perception"]

    def publish(self, image: Image) -> Stamp:
        """Publish ``image`` stamped now (its latency is then the node's own)."""
        image.header.stamp = self.client.node.get_clock().now().to_msg()
        image.header.frame_id = "test_camera"
        self.image_pub.publish(image)
        return image.header.stamp.sec, image.header.stamp.nanosec

    def reply(self, stamp: Stamp, timeout: float = 30.0) -> FaceEmotionArray:
        assert wait_for(lambda: stamp in self.outputs, timeout), (
            f"no /faces/emotions for {stamp}; node log:\n{self.proc.output()[-3000:]}")
        return self.outputs[stamp]

    def send(self, image: Image) -> FaceEmotionArray:
        return self.reply(self.publish(image))

    def settled(self) -> int:
        """Index of the first diagnostics status that counts every reply received so far
        with no image in flight (so the next one's counters start from here)."""
        with self.lock:
            replies = len(self.outputs)

        def index() -> int | None:
            with self.lock:
                for i, status in enumerate(self.diagnostics):
                    c = counters(status)
                    if (c["messages published"] >= replies and c["images received"]
                            == c["messages published"] + c["images dropped"]
                            + c["images rejected"]):
                        return i
            return None

        assert wait_for(lambda: index() is not None, 15), "no settled diagnostics"
        return index()

    def set_param(self, name: str, value: float) -> None:
        pv = (ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=value)
              if isinstance(value, int) else
              ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value))
        request = SetParameters.Request(parameters=[ParameterMsg(name=name, value=pv)])
        result = self.client.call(self.set_params, request).results[0]
        assert result.successful, result.reason


@pytest.fixture(scope="module")
def node(tmp_path_factory) -> Iterator[Client]:
    log = tmp_path_factory.mktemp("perception_options") / "perception.log"
    proc = Proc([str(node_executable("perception_node")), "--ros-args",
                 "-r", "image:=/camera/image_raw", "-p", "qos:=reliable", "-p", "device:=cpu",
                 "-p", "enable_emotion:=false", "-p", "diagnostics_period:=0.5"], log)
    client = Client(proc)
    assert wait_for(lambda: "models loaded" in proc.output(), 120), proc.output()
    # A blank image until its (empty) answer comes: only an answer proves both sides have
    # matched (rosutil.handshake). Every test counts from its own stamps or settled().
    blank = image_to_msg(np.zeros((480, 640, 3), np.uint8), "bgr8")
    handshake(lambda _: client.publish(blank), lambda: bool(client.outputs))
    yield client
    client.client.close()
    assert proc.interrupt() == 0, proc.output()[-2000:]
    assert "Traceback" not in proc.output()


def face_image() -> Image:
    return image_to_msg(frame_bgr(data_path("astronaut", "astronaut.png")), "bgr8")


def test_enable_emotion_false_gives_faces_without_emotion(node: Client) -> None:
    faces = node.send(face_image()).faces
    assert len(faces) == 1
    face = faces[0]
    # Found, placed and (no gallery) named as usual ...
    assert face.box.width > 20 and len(face.landmarks) == 5 and face.head_pose_valid
    assert face.name == "unknown"
    # ... but no emotion at all: the message's "disabled" values.
    assert face.emotion == "" and face.emotion_score == 0.0
    assert list(face.emotion_labels) == [] and list(face.emotion_scores) == []
    assert list(face.emotion_scores_raw) == []
    assert "emotion off" in node.proc.output()
    values = {kv.key: kv.value for kv in node.diagnostics[node.settled()].values}
    assert values["emotion labels"] == ""


def test_fov_deg_sets_the_distance_without_camera_info(node: Client) -> None:
    """Without camera_info the head pose uses an ideal camera of fov_deg: its focal length,
    and with it the distance, scale as 1 / tan(fov_deg / 2)."""
    try:
        node.set_param("fov_deg", 60.0)
        wide = node.send(face_image()).faces[0]
        node.set_param("fov_deg", 30.0)
        narrow = node.send(face_image()).faces[0]
    finally:
        node.set_param("fov_deg", 60.0)
    assert wide.head_pose_valid and narrow.head_pose_valid
    ratio = narrow.head_pose.position.z / wide.head_pose.position.z
    expected = math.tan(math.radians(30.0)) / math.tan(math.radians(15.0))  # 2.15
    # Tracking may move the landmarks by a pixel between the two images.
    assert ratio == pytest.approx(expected, rel=0.05), (wide.head_pose, narrow.head_pose)


def test_latency_warn_ms_decides_between_warn_and_ok(node: Client) -> None:
    try:
        node.set_param("drop_warn_ratio", 1.0)  # only latency can warn here
        node.set_param("latency_warn_ms", 1.0)  # no inference takes under 1 ms
        node.send(face_image())
        warn = node.diagnostics[node.settled()]
        assert warn.level == DiagnosticStatus.WARN, (warn.level, warn.message)
        assert warn.message.startswith("latency ") and warn.message.endswith(
            "ms above 1.0 ms"), warn.message

        node.set_param("latency_warn_ms", 60000.0)
        node.send(face_image())
        ok = node.diagnostics[node.settled()]
        assert (ok.level, ok.message) == (DiagnosticStatus.OK, "ok")
    finally:
        node.set_param("latency_warn_ms", 250.0)
        node.set_param("drop_warn_ratio", 0.5)


def burst(node: Client, count: int = 30) -> list[tuple[dict[str, int], DiagnosticStatus]]:
    """Publish ``count`` images at once (the node keeps only the newest: most are dropped)
    and return each diagnostics status that covers them, with its change in the counters."""
    start = node.settled()
    image = face_image()
    stamps = [node.publish(image) for _ in range(count)]
    node.reply(stamps[-1])  # the newest is never dropped; after it nothing is in flight
    end = node.settled()
    with node.lock:
        statuses = node.diagnostics[start:end + 1]
    periods = []
    for before, after in pairwise(statuses):
        was, now = counters(before), counters(after)
        periods.append(({key: now[key] - was[key] for key in COUNTERS}, after))
    total = {key: sum(delta[key] for delta, _ in periods) for key in COUNTERS}
    # Every image received was either answered or dropped; none rejected.
    assert 0 < total["images received"] <= count, total
    assert total["images dropped"] >= 1, total  # the node cannot keep up with a burst
    assert (total["messages published"] + total["images dropped"]
            == total["images received"]), total
    return periods


def dropping(periods: list[tuple[dict[str, int], DiagnosticStatus]]) -> list[DiagnosticStatus]:
    """The statuses of the periods that received images and dropped some of them (a drop
    counted just after a period ends falls in the next one: such a period is left out)."""
    chosen = [status for delta, status in periods
              if 0 < delta["images dropped"] <= delta["images received"]]
    assert chosen, periods
    return chosen


def test_drop_warn_ratio_decides_between_warn_and_ok(node: Client) -> None:
    try:
        node.set_param("latency_warn_ms", 60000.0)  # only drops can warn here
        node.set_param("drop_warn_ratio", 0.0)  # any drop warns
        for status in dropping(burst(node)):
            assert status.level == DiagnosticStatus.WARN, (status.level, status.message)
            assert status.message.endswith("of images dropped: inference is too slow"), (
                status.message)

        node.set_param("drop_warn_ratio", 1.0)  # never more dropped than received
        for status in dropping(burst(node)):
            assert (status.level, status.message) == (DiagnosticStatus.OK, "ok")
    finally:
        node.set_param("latency_warn_ms", 250.0)
        node.set_param("drop_warn_ratio", 0.5)


def test_queue_size_keeps_every_image_of_a_burst_in_order(node: Client) -> None:
    """queue_size 20: ten images published at once all wait their turn, none dropped,
    answered oldest first (with the default 1, burst() above sees drops)."""
    try:
        node.set_param("queue_size", 20)
        start = node.settled()
        image = face_image()
        stamps = [node.publish(image) for _ in range(10)]
        for stamp in stamps:
            node.reply(stamp)
        end = node.settled()
        with node.lock:
            answered = [stamp for stamp in node.order if stamp in stamps]
            before, after = counters(node.diagnostics[start]), counters(node.diagnostics[end])
    finally:
        node.set_param("queue_size", 1)
    assert answered == stamps
    delta = {key: after[key] - before[key] for key in COUNTERS}
    assert delta == {"images received": 10, "images dropped": 0, "images rejected": 0,
                     "messages published": 10}, delta


def test_without_tf2_msgs_the_node_says_so_once_and_carries_on(node: Client) -> None:
    # The venv has no tf2_msgs (test_face_frames.py builds one for its own node only).
    assert node.proc.output().count("publish_tf: tf2_msgs is not installed here") == 1
    assert len(node.send(face_image()).faces) == 1
