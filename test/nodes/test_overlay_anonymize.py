"""The installed overlay_node's anonymize: strangers' faces (then, set at run time, everyone's)
pixelated in faces/anonymized (nothing drawn) and under the drawings of faces/overlay; the
rest of the image untouched."""

from __future__ import annotations

import threading

import numpy as np
from conftest import wait_for
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosutil import TestNode, handshake
from sensor_msgs.msg import Image

from fer_ros.msg import FaceEmotion, FaceEmotionArray
from fer_ros.paths import node_executable
from fer_ros.ros.image_codec import image_to_msg, msg_to_image
from fer_ros.viewer.anonymize import hidden_region

WIDTH, HEIGHT = 320, 240
ADA = (40, 60, 60, 70)  # x, y, width, height
STRANGER = (200, 70, 60, 70)


def camera_image() -> np.ndarray:
    return np.random.default_rng(7).integers(0, 256, (HEIGHT, WIDTH, 3), np.uint8)


def faces_msg(sec: int, nanosec: int = 0) -> FaceEmotionArray:
    msg = FaceEmotionArray(image_width=WIDTH, image_height=HEIGHT)
    for track, (name, (x, y, w, h)) in enumerate((("ada", ADA), ("unknown", STRANGER)), 1):
        face = FaceEmotion(track_id=track, name=name, emotion="happy", emotion_score=0.9)
        face.box.x_offset, face.box.y_offset, face.box.width, face.box.height = x, y, w, h
        msg.faces.append(face)
    msg.header.stamp.sec, msg.header.stamp.nanosec = sec, nanosec
    msg.header.frame_id = "camera_optical_frame"
    return msg


def region(box: tuple[int, int, int, int]) -> tuple[slice, slice]:
    x1, y1, x2, y2 = hidden_region(box, WIDTH, HEIGHT)
    return slice(y1, y2), slice(x1, x2)


def inner(box: tuple[int, int, int, int]) -> tuple[slice, slice]:
    """The middle of a box, away from the drawn frame, labels and landmark dots."""
    x, y, w, h = box
    return slice(y + h // 4, y + h // 2), slice(x + w // 4, x + 3 * w // 4)


class Client:
    def __init__(self) -> None:
        self.ros = TestNode("anonymize_test_client")
        node = self.ros.node
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.lock = threading.Lock()
        self.received: dict[str, dict[tuple[int, int], Image]] = {"anonymized": {},
                                                                  "overlay": {}}
        for kind in self.received:
            node.create_subscription(Image, f"/faces/{kind}",
                                     lambda msg, kind=kind: self._on(kind, msg), reliable)
        self.image_pub = node.create_publisher(Image, "/image", reliable)
        self.faces_pub = node.create_publisher(FaceEmotionArray, "/faces/emotions", reliable)
        self.set_params = node.create_client(SetParameters, "/overlay/set_parameters")

    def _on(self, kind: str, msg: Image) -> None:
        with self.lock:
            self.received[kind][(msg.header.stamp.sec, msg.header.stamp.nanosec)] = msg

    def send(self, image: np.ndarray, sec: int, nanosec: int = 0) -> None:
        msg = image_to_msg(image, "bgr8")
        msg.header = faces_msg(sec, nanosec).header
        self.image_pub.publish(msg)
        self.faces_pub.publish(faces_msg(sec, nanosec))

    def got(self, kind: str, sec: int, nanosec: int = 0) -> np.ndarray:
        key = (sec, nanosec)
        assert wait_for(lambda: key in self.received[kind], 15), f"no faces/{kind} {key}"
        return msg_to_image(self.received[kind][key], "bgr8")

    def anonymize(self, value: str) -> None:
        request = SetParameters.Request(parameters=[Parameter(
            name="anonymize", value=ParameterValue(type=ParameterType.PARAMETER_STRING,
                                                   string_value=value))])
        assert self.ros.call(self.set_params, request).results[0].successful


def test_strangers_then_everyone_pixelated(spawn) -> None:
    proc = spawn([str(node_executable("overlay_node")), "--ros-args", "-p", "port:=0",
                  "-p", "qos:=reliable", "-p", "anonymize:=strangers"], "overlay")
    client = Client()
    raw = camera_image()
    try:
        # Probes (sec 0) until both outputs answer: both directions of both topics work.
        handshake(lambda n: client.send(raw, 0, n),
                  lambda: any(k[0] == 0 for k in client.received["anonymized"])
                  and any(k[0] == 0 for k in client.received["overlay"]))
        client.send(raw, 1)
        anonymized, overlay = client.got("anonymized", 1), client.got("overlay", 1)
        hidden = region(STRANGER)
        # faces/anonymized: the stranger's widened box pixelated, nothing else changed.
        outside = np.ones((HEIGHT, WIDTH), bool)
        outside[hidden] = False
        assert (anonymized[outside] == raw[outside]).all()
        assert (anonymized[hidden] != raw[hidden]).any(axis=2).mean() > 0.9
        # faces/overlay: drawn on the pixelated image; ada's face shown as it is.
        assert (overlay[inner(STRANGER)] == anonymized[inner(STRANGER)]).all()
        assert (overlay[inner(ADA)] == raw[inner(ADA)]).all()

        client.anonymize("all")
        client.send(raw, 2)
        everyone = client.got("anonymized", 2)
        assert (everyone[region(ADA)] != raw[region(ADA)]).any(axis=2).mean() > 0.9
        assert (everyone[hidden] == anonymized[hidden]).all()

        client.anonymize("none")
        client.send(raw, 3)
        assert (client.got("overlay", 3)[inner(STRANGER)] == raw[inner(STRANGER)]).all()
        assert (3, 0) not in client.received["anonymized"]  # after its overlay: none comes
    finally:
        client.ros.close()
    assert proc.interrupt() == 0, proc.output()


def test_with_anonymize_all_no_name_is_drawn_or_listed() -> None:
    from fer_ros.nodes.overlay_node import nameless

    face = faces_msg(1).faces[0]
    shown = nameless(face)
    assert (shown.name, shown.name_similarity) == ("", 0.0)
    assert (shown.emotion, shown.box) == (face.emotion, face.box)
    assert face.name == "ada"  # the message itself unchanged
