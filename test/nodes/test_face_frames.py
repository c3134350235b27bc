"""perception_node's TF frame per face (publish_tf), over DDS, with a tf2_msgs built for
the test run from the definition rosbags carries (test/tf2msgs.py); and its diagnostics
named after the node, as diagnostic_updater names them.

One node (named head_perception, as a second perception node on a robot would be) serves
the module. Each test sends images with stamps of its own and checks the
/tf messages of those stamps against the faces/emotions messages of the same stamps.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import numpy as np
import pytest
from conftest import Proc, data_path, wait_for
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rosutil import TestNode, frame_bgr, handshake
from sensor_msgs.msg import Image
from tf2msgs import import_here, tf2_msgs_prefix, with_tf2_msgs

from fer_ros.msg import FaceEmotionArray
from fer_ros.paths import node_executable
from fer_ros.ros.face_frames import TF_QUEUE_DEPTH
from fer_ros.ros.image_codec import image_to_msg

pytestmark = pytest.mark.slow

Stamp = tuple[int, int]
FRAME_ID = "head_camera_optical_frame"
NODE = "head_perception"
PROBE_SEC = 1  # handshake probes: stamps 2, 3...; the tests' own are far from them


class Client:
    def __init__(self, proc: Proc, tf_message: type) -> None:
        self.proc = proc
        self.client = TestNode("face_frames_client")
        node = self.client.node
        reliable = QoSProfile(depth=20, reliability=ReliabilityPolicy.RELIABLE)
        self.image_pub = node.create_publisher(Image, "/camera/image_raw", reliable)
        self.lock = threading.Lock()
        self.outputs: dict[Stamp, FaceEmotionArray] = {}
        self.frames: dict[Stamp, list] = {}  # the /tf messages of each stamp, in order
        self.status_names: set[str] = set()
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        node.create_subscription(FaceEmotionArray, "/faces/emotions", self._on_faces, 20)
        # As tf2_ros's TransformListener subscribes to /tf.
        node.create_subscription(tf_message, "/tf", self._on_tf, QoSProfile(
            depth=TF_QUEUE_DEPTH, reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.VOLATILE))

    def _on_faces(self, msg: FaceEmotionArray) -> None:
        with self.lock:
            self.outputs[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = msg

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        with self.lock:
            self.status_names.update(status.name for status in msg.status)

    def _on_tf(self, msg) -> None:
        stamps = {(t.header.stamp.sec, t.header.stamp.nanosec) for t in msg.transforms}
        with self.lock:
            for stamp in stamps:
                self.frames.setdefault(stamp, []).append(msg)

    def publish(self, image: Image, sec: int, frame_id: str = FRAME_ID) -> Stamp:
        image.header.stamp.sec, image.header.stamp.nanosec = sec, 500
        image.header.frame_id = frame_id
        self.image_pub.publish(image)
        return sec, 500

    def reply(self, stamp: Stamp) -> FaceEmotionArray:
        assert wait_for(lambda: stamp in self.outputs, 30), (
            f"no /faces/emotions for {stamp}; node log:\n{self.proc.output()[-3000:]}")
        return self.outputs[stamp]


def image(dataset: str, name: str) -> Image:
    return image_to_msg(frame_bgr(data_path(dataset, name)), "bgr8")


@pytest.fixture(scope="module")
def node(tmp_path_factory) -> Iterator[Client]:
    try:
        prefix = tf2_msgs_prefix()
    except RuntimeError as exc:
        pytest.fail(f"{exc} (cmake and the venv's rosidl are needed: run `make setup`)")
    tf_message = import_here(prefix)
    log = tmp_path_factory.mktemp("face_frames") / "perception.log"
    proc = Proc([str(node_executable("perception_node")), "--ros-args",
                 "-r", f"__node:={NODE}", "-r", "image:=/camera/image_raw",
                 "-p", "qos:=reliable", "-p", "device:=cpu",
                 "-p", "enable_emotion:=false", "-p", "enable_recognition:=false",
                 # Every image searched in its own time: each answer holds all its faces.
                 "-p", "async_detection:=false", "-p", "full_detection_interval:=1",
                 "-p", "queue_size:=10"], log,
                env=with_tf2_msgs(dict(os.environ), prefix))
    client = Client(proc, tf_message)
    assert wait_for(lambda: "models loaded" in proc.output(), 120), proc.output()
    # Faces until their frames come back: only that proves /tf delivers both ways.
    face = image("astronaut", "astronaut.png")
    handshake(lambda n: client.publish(face, PROBE_SEC + n),
              lambda: bool(client.frames))
    yield client
    client.client.close()
    assert proc.interrupt() == 0, proc.output()[-2000:]
    assert "Traceback" not in proc.output()


def test_every_tracked_face_has_a_frame_with_its_head_pose(node: Client) -> None:
    stamps = [node.publish(image("pyfeat", "multi_face.jpg"), 10_000 + i) for i in range(3)]
    for stamp in stamps:
        faces = node.reply(stamp).faces
        assert len(faces) >= 3 and all(f.head_pose_valid and f.track_id for f in faces)
        assert wait_for(lambda s=stamp: s in node.frames, 10), f"no /tf for {stamp}"
        (message,) = node.frames[stamp]  # one TFMessage per image, all its faces in it
        assert [t.child_frame_id for t in message.transforms] == [
            f"face_{f.track_id}" for f in faces]
        for transform, face in zip(message.transforms, faces, strict=True):
            assert transform.header.frame_id == FRAME_ID
            assert (transform.header.stamp.sec, transform.header.stamp.nanosec) == stamp
            t, p = transform.transform.translation, face.head_pose.position
            assert (t.x, t.y, t.z) == (p.x, p.y, p.z) and p.z > 0  # in front of the camera
            r, q = transform.transform.rotation, face.head_pose.orientation
            assert (r.x, r.y, r.z, r.w) == (q.x, q.y, q.z, q.w)
    # The same people in the same place keep their frames' names from image to image.
    names = [[t.child_frame_id for t in node.frames[s][0].transforms] for s in stamps]
    assert names[0] == names[1] == names[2]


def test_no_frame_for_an_image_without_faces(node: Client) -> None:
    blank = image_to_msg(np.zeros((480, 640, 3), np.uint8), "bgr8")
    stamp = node.publish(blank, 20_000)
    after = node.publish(image("astronaut", "astronaut.png"), 20_001)
    assert node.reply(stamp).faces == []
    node.reply(after)
    # Frames come in order on one reliable connection: the next image's have arrived.
    assert wait_for(lambda: after in node.frames, 10)
    assert stamp not in node.frames


def test_an_image_without_frame_id_gets_no_frame_and_one_warning(node: Client) -> None:
    face = image("astronaut", "astronaut.png")
    unframed = [node.publish(face, 30_000 + i, frame_id="") for i in range(2)]
    after = node.publish(face, 30_010)
    for stamp in unframed:
        assert len(node.reply(stamp).faces) == 1
    node.reply(after)
    assert wait_for(lambda: after in node.frames, 10)
    assert not set(unframed) & set(node.frames)
    assert node.proc.output().count("have no header.frame_id: their faces get no TF frame") == 1


def test_the_tf_publisher_has_the_qos_of_tf2_ros(node: Client) -> None:
    (info,) = [i for i in node.client.node.get_publishers_info_by_topic("/tf")
               if i.node_name == NODE]
    assert info.qos_profile.reliability == ReliabilityPolicy.RELIABLE
    assert info.qos_profile.durability == DurabilityPolicy.VOLATILE


def test_diagnostics_carry_the_node_name(node: Client) -> None:
    assert wait_for(lambda: f"{NODE}: perception" in node.status_names, 10), node.status_names
    assert not {name for name in node.status_names if "perception" in name} - {
        f"{NODE}: perception"}
