"""The installed overlay_node: it draws each face where its message says, on the image of
the same stamp (never on another), publishes the result on faces/overlay (and as JPEG on
faces/overlay/compressed) and writes it to video_path."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import cv2
import numpy as np
from conftest import wait_for
from geometry_msgs.msg import Point, Point32, Pose, Quaternion
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosutil import TestNode, handshake
from sensor_msgs.msg import CompressedImage, Image, RegionOfInterest
from visualization_msgs.msg import MarkerArray

from fer_ros.msg import FaceEmotion, FaceEmotionArray
from fer_ros.paths import node_executable
from fer_ros.ros.image_codec import compressed_to_image, image_to_msg, msg_to_image

WIDTH, HEIGHT = 320, 240
BACKGROUND = 90  # a plain grey frame: every drawn pixel stands out
PROBE = 200  # the handshake's frames, told apart from the test's in the video
# BGR of "sad", written here rather than imported, so a changed palette is noticed.
SAD_BGR = (200, 120, 40)
# Two places, far apart, so a box drawn on the wrong image is seen.
LEFT_BOX = (40, 60, 70, 90)    # x, y, width, height
RIGHT_BOX = (210, 70, 60, 80)


def raw_frame(value: int = BACKGROUND) -> np.ndarray:
    return np.full((HEIGHT, WIDTH, 3), value, np.uint8)


def stamped(msg, sec: int, nanosec: int = 0):
    msg.header.stamp.sec = sec
    msg.header.stamp.nanosec = nanosec
    msg.header.frame_id = "camera_optical_frame"
    return msg


def face(box: tuple[int, int, int, int], name: str = "ada", track_id: int = 1) -> FaceEmotion:
    x, y, w, h = box
    out = FaceEmotion(track_id=track_id, name=name, name_similarity=0.9, emotion="sad",
                      emotion_score=0.8, head_pose_valid=True)
    out.box = RegionOfInterest(x_offset=x, y_offset=y, width=w, height=h)
    # Eyes and nose inside the box, so the landmark dots lie in it too.
    out.landmarks = [Point32(x=float(x + w * fx), y=float(y + h * fy))
                     for fx, fy in ((0.3, 0.4), (0.7, 0.4), (0.5, 0.6), (0.35, 0.8),
                                    (0.65, 0.8))]
    out.head_pose = Pose(position=Point(x=0.0, y=0.0, z=1.0),
                         orientation=Quaternion(x=0.5, y=-0.5, z=0.5, w=0.5))
    return out


def faces_at_stamp(sec: int, nanosec: int,
                   *boxes: tuple[int, int, int, int]) -> FaceEmotionArray:
    msg = FaceEmotionArray(image_width=WIDTH, image_height=HEIGHT)
    msg.faces = [face(box, track_id=i + 1) for i, box in enumerate(boxes)]
    return stamped(msg, sec, nanosec)


def faces_at(sec: int, *boxes: tuple[int, int, int, int]) -> FaceEmotionArray:
    return faces_at_stamp(sec, 0, *boxes)


def changed_mask(annotated: np.ndarray, raw: np.ndarray) -> np.ndarray:
    return np.abs(annotated.astype(int) - raw.astype(int)).sum(axis=2) > 0


def assert_box_drawn(annotated: np.ndarray, raw: np.ndarray,
                     box: tuple[int, int, int, int]) -> None:
    """The box's four edges carry the emotion colour, its middle (between the landmark
    dots) is untouched, and nothing changed far from the box and its two labels."""
    x, y, w, h = box
    colour = np.array(SAD_BGR)
    for row, col in ((y, x + w // 2), (y + h, x + w // 2), (y + h // 2, x),
                     (y + h // 2, x + w)):
        assert (annotated[row, col] == colour).all(), (row, col, annotated[row, col])
    assert (annotated[y + h // 4, x + w // 4] == raw[y + h // 4, x + w // 4]).all()
    # Everything drawn lies in the box (2 px line), the label band above it or the one
    # below it: both bands start at the box's left edge, are under 40 px tall and, for
    # these short labels, under 150 px wide.
    changed = changed_mask(annotated, raw)
    allowed = np.zeros_like(changed)
    allowed[max(y - 40, 0):y + h + 42, max(x - 2, 0):x + max(w + 3, 150)] = True
    assert not (changed & ~allowed).any(), np.argwhere(changed & ~allowed)[:5]
    # The name label sits on a band of the emotion colour right above the box, and the
    # text (white on this dark colour) is written on it.
    above = annotated[max(y - 30, 0):y - 1, x:x + 60]
    assert (above == colour).all(axis=2).sum() > 50, "no name label band above the box"
    assert (above > 230).all(axis=2).sum() > 10, "no text on the name label"
    below = annotated[y + h + 3:y + h + 30, x:x + 60]
    assert (below == colour).all(axis=2).sum() > 50, "no emotion label band below the box"
    assert (below > 230).all(axis=2).sum() > 10, "no text on the emotion label"


class Client:
    """Publishes images and faces to the overlay node, collects what it publishes."""

    def __init__(self) -> None:
        self.ros = TestNode("overlay_test_client")
        self.overlays: list[Image] = []
        self.compressed: list[CompressedImage] = []
        self.markers: list[MarkerArray] = []
        self.lock = threading.Lock()
        node = self.ros.node
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.overlay_sub = node.create_subscription(Image, "/faces/overlay",
                                                    self._on_overlay, reliable)
        self.compressed_sub = node.create_subscription(
            CompressedImage, "/faces/overlay/compressed", self._on_compressed, reliable)
        self.markers_sub = node.create_subscription(MarkerArray, "/faces/markers",
                                                    self._on_markers, reliable)
        self.image_pub = node.create_publisher(Image, "/image", reliable)
        self.faces_pub = node.create_publisher(FaceEmotionArray, "/faces/emotions", reliable)

    def _on_overlay(self, msg: Image) -> None:
        with self.lock:
            self.overlays.append(msg)

    def _on_compressed(self, msg: CompressedImage) -> None:
        with self.lock:
            self.compressed.append(msg)

    def _on_markers(self, msg: MarkerArray) -> None:
        with self.lock:
            self.markers.append(msg)

    def overlay_stamps(self) -> list[int]:
        with self.lock:
            return [m.header.stamp.sec for m in self.overlays]

    def test_stamps(self) -> list[int]:
        return [sec for sec in self.overlay_stamps() if sec]

    def compressed_stamps(self) -> list[int]:
        with self.lock:
            return [m.header.stamp.sec for m in self.compressed]

    def marker_stamps(self) -> list[int]:
        with self.lock:
            return [m.header.stamp.sec for array in self.markers for m in array.markers]

    def connect(self) -> None:
        """Handshake both ways on both paths.

        Probes carry stamp sec 0 (the test's own start at 1), each its own nanosec:
        faces are answered with markers, then an image and its (empty) faces with an
        overlay. An overlay sent before our subscription was matched is lost to us but
        still drawn into the video: the count comes from the node's log instead.
        """
        def probe_faces(n: int) -> None:
            self.faces_pub.publish(faces_at_stamp(0, n, LEFT_BOX))

        def probe_image(n: int) -> None:
            self.image_pub.publish(stamped(image_to_msg(raw_frame(PROBE), "bgr8"), 0, n))
            self.faces_pub.publish(faces_at_stamp(0, n))

        handshake(probe_faces, lambda: 0 in self.marker_stamps())
        handshake(probe_image, lambda: 0 in self.overlay_stamps()
                  and 0 in self.compressed_stamps())

    def send_faces(self, msg: FaceEmotionArray) -> None:
        """Publish faces and wait until the node has them (it answers with markers)."""
        self.faces_pub.publish(msg)
        sec = msg.header.stamp.sec
        assert wait_for(lambda: sec in self.marker_stamps(), 15), f"faces {sec} not received"

    def send_image(self, image: np.ndarray, sec: int) -> None:
        self.image_pub.publish(stamped(image_to_msg(image, "bgr8"), sec))


def test_overlay_draws_faces_on_the_image_of_their_stamp(spawn, tmp_path: Path) -> None:
    video = tmp_path / "video" / "overlay.avi"
    proc = spawn([str(node_executable("overlay_node")), "--ros-args", "-p", "port:=0",
                  "-p", "qos:=reliable", "-p", f"video_path:={video}", "-p", "video_fps:=5.0"],
                 "overlay")
    client = Client()
    try:
        client.connect()
        raw_a, raw_b = raw_frame(BACKGROUND), raw_frame(BACKGROUND + 20)

        # Faces of image 2 arrive before image 1, which then gets its own faces: image 1
        # must carry only its own box (left), image 2 only its own (right).
        client.send_faces(faces_at(2, RIGHT_BOX))
        client.send_image(raw_a, 1)
        client.send_faces(faces_at(1, LEFT_BOX))
        assert wait_for(lambda: client.test_stamps() == [1], 15), proc.output()
        client.send_image(raw_b, 2)
        assert wait_for(lambda: client.test_stamps() == [1, 2], 15), proc.output()
        # An image whose faces never come is never drawn.
        client.send_image(raw_frame(BACKGROUND + 40), 3)
        # An image with no faces is published unchanged.
        client.send_image(raw_a, 4)
        client.faces_pub.publish(faces_at(4))
        assert wait_for(lambda: client.test_stamps() == [1, 2, 4], 15), proc.output()

        with client.lock:
            first, second, empty = (msg_to_image(m, "bgr8") for m in client.overlays
                                    if m.header.stamp.sec)
        assert first.shape == second.shape == (HEIGHT, WIDTH, 3)
        assert_box_drawn(first, raw_a, LEFT_BOX)
        assert_box_drawn(second, raw_b, RIGHT_BOX)
        assert (empty == raw_a).all()

        # The same three as JPEG, in order, with their images' headers.
        assert wait_for(lambda: [s for s in client.compressed_stamps() if s] == [1, 2, 4], 15)
        with client.lock:
            jpegs = [m for m in client.compressed if m.header.stamp.sec]
            raws = [m for m in client.overlays if m.header.stamp.sec]
        for jpeg, raw in zip(jpegs, raws, strict=True):
            assert jpeg.header == raw.header and jpeg.format == "bgr8; jpeg compressed bgr8"
            # Quality 80 (jpeg_quality's default): close to the raw overlay, not equal.
            error = np.abs(compressed_to_image(jpeg, "bgr8").astype(int)
                           - msg_to_image(raw, "bgr8").astype(int))
            assert error.mean() < 2 and 0 < len(jpeg.data) < WIDTH * HEIGHT * 3 / 5
    finally:
        client.ros.close()
    assert proc.interrupt() == 0, proc.output()

    # The video holds every annotated frame, in order, at the image size: the probes the
    # node drew (at least the one answered; those drawn before our subscription matched
    # never reached us, so their number comes from the log), then the test's three.
    written = re.search(rf"wrote (\d+) annotated frames to {re.escape(str(video))}",
                        proc.output())
    assert written, proc.output()
    capture = cv2.VideoCapture(str(video))
    assert capture.isOpened(), f"{video} is not a readable video"
    frames: list[np.ndarray] = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    assert len(frames) == int(written.group(1)) >= 4
    assert all(abs(float(frame.mean()) - PROBE) < 3 for frame in frames[:-3])
    frames = frames[-3:]
    assert all(frame.shape == (HEIGHT, WIDTH, 3) for frame in frames)
    # JPEG-compressed: compare the box edge and the background loosely.
    for frame, (x, y, _, h), background in ((frames[0], LEFT_BOX, BACKGROUND),
                                            (frames[1], RIGHT_BOX, BACKGROUND + 20)):
        edge = frame[y + h // 2 - 5:y + h // 2 + 5, x].astype(int).mean(axis=0)
        assert np.abs(edge - SAD_BGR).max() < 40, edge
        assert abs(float(frame[HEIGHT - 10:, :20].mean()) - background) < 6
    assert abs(float(frames[2].mean()) - BACKGROUND) < 3  # the faceless frame, unchanged
