"""image_transport:=compressed over DDS: perception_node and overlay_node take JPEG from
the remapped image topic's ``/compressed`` sibling, as a robot's camera sends it over
Wi-Fi; a bad JPEG is named once per kind and the next good one is answered; a recorded
bag of JPEG frames plays into it with `fer-ros bag play`."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from conftest import data_path, wait_for
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosutil import TestNode, frame_bgr, handshake
from sensor_msgs.msg import CompressedImage, Image, RegionOfInterest

from fer_ros.msg import FaceEmotion, FaceEmotionArray
from fer_ros.paths import fer_ros_command, node_executable
from fer_ros.ros.image_codec import image_to_compressed, msg_to_image

CAMERA = "/robot/head/image_raw"  # as a robot's driver names it
RELIABLE = QoSProfile(depth=20, reliability=ReliabilityPolicy.RELIABLE)
SIZE = (1280, 720)  # a 720p camera: the answer must carry the decoded size


def jpeg(image: np.ndarray, sec: int, nanosec: int = 0) -> CompressedImage:
    msg = image_to_compressed(image, "bgr8", "jpeg", quality=90)
    msg.header.stamp.sec, msg.header.stamp.nanosec = sec, nanosec
    msg.header.frame_id = "head_camera"
    return msg


class Collector:
    """Messages of one type on one topic, kept in arrival order."""

    def __init__(self, client: TestNode, kind: type, name: str) -> None:
        self.lock = threading.Lock()
        self.items: list = []
        client.node.create_subscription(kind, name, self._on, RELIABLE)

    def _on(self, msg) -> None:
        with self.lock:
            self.items.append(msg)

    def stamps(self) -> list[int]:
        with self.lock:
            return [m.header.stamp.sec for m in self.items]

    def at(self, sec: int):
        with self.lock:
            return next(m for m in self.items if m.header.stamp.sec == sec)


def write_jpeg_bag(path: Path, image: np.ndarray, seconds: tuple[int, ...]) -> Path:
    """A rosbag2 bag (MCAP) of JPEG CompressedImage messages on the camera's topic, one per
    second of bag time, stamped with those seconds."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    from fer_ros.rosless.bag import make_typestore

    store = make_typestore()
    types = store.types
    data = np.frombuffer(bytes(jpeg(image, 0).data), np.uint8)
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection(f"{CAMERA}/compressed", "sensor_msgs/msg/CompressedImage",
                                     typestore=store)
        for sec in seconds:
            msg = types["sensor_msgs/msg/CompressedImage"](
                header=types["std_msgs/msg/Header"](
                    stamp=types["builtin_interfaces/msg/Time"](sec=sec, nanosec=0),
                    frame_id="head_camera"),
                format="bgr8; jpeg compressed bgr8", data=data)
            writer.write(conn, sec * 10**9, store.serialize_cdr(msg, conn.msgtype))
    return path


def test_perception_answers_compressed_images_and_names_each_bad_kind_once(
        spawn, tmp_path: Path) -> None:
    proc = spawn([str(node_executable("perception_node")), "--ros-args",
                  "-r", f"image:={CAMERA}", "-p", "image_transport:=compressed",
                  "-p", "qos:=reliable", "-p", "device:=cpu", "-p", "queue_size:=20",
                  "-p", "diagnostics_period:=0.5"], "perception")
    client = TestNode("compressed_perception_client")
    try:
        images = client.node.create_publisher(CompressedImage, f"{CAMERA}/compressed",
                                              RELIABLE)
        out = Collector(client, FaceEmotionArray, "/faces/emotions")
        diagnostics = Collector(client, DiagnosticArray, "/diagnostics")
        assert wait_for(lambda: "models loaded" in proc.output(), 120), proc.output()
        blank = np.zeros((SIZE[1], SIZE[0], 3), np.uint8)
        handshake(lambda n: images.publish(jpeg(blank, 0, n)), lambda: 0 in out.stamps(), 60)

        face = frame_bgr(data_path("astronaut", "astronaut.png"), SIZE)
        images.publish(jpeg(face, 1))
        cut = jpeg(face, 2)
        cut.data = cut.data[:len(cut.data) // 3]  # lost on the way
        images.publish(cut)
        wrong = jpeg(face, 3)
        wrong.format = "theora"
        images.publish(wrong)
        empty = jpeg(face, 4)
        empty.data = []
        images.publish(empty)
        images.publish(cut)  # the same kind again: counted, not logged again
        images.publish(jpeg(face, 5))
        assert wait_for(lambda: 5 in out.stamps(), 60), proc.output()[-3000:]
        # Every image was taken in order (queue_size 20): the bad ones got no answer.
        assert [s for s in out.stamps() if s] == [1, 5]
        for sec in (1, 5):
            answer = out.at(sec)
            assert (answer.image_width, answer.image_height) == SIZE
            assert answer.header.frame_id == "head_camera"
            assert len(answer.faces) == 1 and answer.faces[0].box.width > 40
        lines = [line for line in proc.output().splitlines()
                 if f"dropping image on {CAMERA}/compressed: " in line]
        assert len(lines) == 3, lines
        assert "has no end marker: truncated" in lines[0]
        assert "unsupported compressed format 'theora'" in lines[1]
        assert "compressed image (jpeg) has no data" in lines[2]

        def status() -> dict[str, str]:
            with diagnostics.lock:
                last = diagnostics.items[-1] if diagnostics.items else None
            return {kv.key: kv.value for kv in last.status[0].values} if last else {}

        assert wait_for(lambda: status().get("images rejected") == "4", 10), status()
        assert status()["image topic"] == f"{CAMERA}/compressed"

        # A recorded bag of JPEG frames, as engineers replay a robot's camera: answered.
        bag = write_jpeg_bag(tmp_path / "jpeg_bag", face, (11, 12, 13))
        player = spawn([*fer_ros_command(), "bag", "play", str(bag),
                        "--wait-for-subscribers", "1"], "play")
        assert player.popen.wait(60) == 0, player.output()
        # The bag's first message is the player's handshake, which a reader that matched
        # late may never see (fer_ros/rosless/bag_play.py): the others must come.
        assert wait_for(lambda: {12, 13} <= set(out.stamps()), 60), proc.output()[-3000:]
        assert all(len(out.at(sec).faces) == 1 for sec in (12, 13))
    finally:
        client.close()
    assert proc.interrupt() == 0, proc.output()[-2000:]


def test_overlay_draws_on_compressed_images(spawn) -> None:
    proc = spawn([str(node_executable("overlay_node")), "--ros-args", "-p", "port:=0",
                  "-r", f"image:={CAMERA}", "-p", "image_transport:=compressed",
                  "-p", "qos:=reliable"], "overlay")
    client = TestNode("compressed_overlay_client")
    try:
        images = client.node.create_publisher(CompressedImage, f"{CAMERA}/compressed",
                                              RELIABLE)
        faces = client.node.create_publisher(FaceEmotionArray, "/faces/emotions", RELIABLE)
        overlays = Collector(client, Image, "/faces/overlay")
        grey = np.full((SIZE[1], SIZE[0], 3), 90, np.uint8)
        box = (600, 300, 120, 160)

        def send(n: int) -> None:
            msg = FaceEmotionArray(image_width=SIZE[0], image_height=SIZE[1])
            msg.header.stamp.nanosec = n
            found = FaceEmotion(track_id=1, name="ada", emotion="sad", emotion_score=0.9)
            found.box = RegionOfInterest(x_offset=box[0], y_offset=box[1], width=box[2],
                                         height=box[3])
            msg.faces = [found]
            images.publish(jpeg(grey, 0, n))
            faces.publish(msg)

        handshake(send, lambda: bool(overlays.stamps()))
        drawn = msg_to_image(overlays.at(0), "bgr8")
        assert drawn.shape == (SIZE[1], SIZE[0], 3)
        x, y, _, h = box
        # The box's left edge in the emotion's colour (sad, BGR 200,120,40); JPEG keeps the
        # grey background within a few levels.
        assert np.abs(drawn[y + h // 2, x].astype(int) - (200, 120, 40)).max() < 10
        assert np.abs(drawn[20, 20].astype(int) - 90).max() < 6
    finally:
        client.close()
    assert proc.interrupt() == 0, proc.output()[-2000:]
