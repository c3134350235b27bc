"""`fer-ros bag record --anonymize`: the faces of every recorded image pixelated (raw in its
own encoding, JPEG re-encoded), nothing else changed, other topics as they came, and an
image that cannot be searched left out rather than written with its faces."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import data_path
from rclpy.serialization import deserialize_message, serialize_message
from rosutil import frame_bgr
from sensor_msgs.msg import CompressedImage, Image

from fer_ros.msg import FaceEmotionArray
from fer_ros.paths import fer_ros_command
from fer_ros.pipeline import FacePipeline, PipelineConfig
from fer_ros.pipeline.recognition import sface
from fer_ros.ros.image_codec import (
    compressed_to_image,
    image_to_compressed,
    image_to_msg,
    msg_to_image,
)
from fer_ros.rosless.bag import ANONYMIZE_MIN_FACE_SIZE
from fer_ros.rosless.bag_anonymize import BagAnonymizer
from fer_ros.viewer.anonymize import hidden_region

FER_ROS = fer_ros_command()[0]
THRESHOLD = sface.THRESHOLD  # the default model's calibrated threshold


@pytest.fixture(scope="module")
def pipeline() -> FacePipeline:
    # The recorder's detector settings: the regions it hides are those of these faces.
    return FacePipeline(PipelineConfig(device="cpu", tracking=False, emotion=False,
                                       min_face_size=ANONYMIZE_MIN_FACE_SIZE))


def photo() -> np.ndarray:
    return frame_bgr(data_path("pyfeat", "multi_face.jpg"))


def check_anonymized(pipeline: FacePipeline, before_bgr: np.ndarray, after_bgr: np.ndarray,
                     exact: bool) -> None:
    """Every face of ``before`` no longer matches itself in ``after``; outside the faces'
    regions ``after`` is ``before`` (``exact``) or close to it (JPEG)."""
    rgb = cv2.cvtColor(before_bgr, cv2.COLOR_BGR2RGB)
    faces = pipeline.process(rgb)
    assert len(faces) >= 3
    boxes = np.stack([face.box for face in faces])
    before = pipeline.embedder.embed(rgb, boxes)
    after = pipeline.embedder.embed(cv2.cvtColor(after_bgr, cv2.COLOR_BGR2RGB), boxes)
    similarity = (before * after).sum(axis=1) / (
        np.linalg.norm(before, axis=1) * np.linalg.norm(after, axis=1))
    assert (similarity < 0.8 * THRESHOLD).all(), similarity
    outside = np.ones(before_bgr.shape[:2], bool)
    height, width = outside.shape
    for x1, y1, x2, y2 in boxes:
        r = hidden_region((round(x1), round(y1), round(x2 - x1), round(y2 - y1)), width, height)
        outside[r[1]:r[3], r[0]:r[2]] = False
    difference = np.abs(after_bgr.astype(int) - before_bgr.astype(int))[outside]
    if exact:
        assert (difference == 0).all()
    else:
        assert difference.mean() < 3


def test_images_in_every_encoding_come_out_anonymized(pipeline: FacePipeline) -> None:
    anonymizer = BagAnonymizer()
    bgr = photo()
    header = Image().header
    header.stamp.sec, header.frame_id = 42, "cam"
    for encoding in ("bgr8", "rgb8"):
        pixels = bgr if encoding == "bgr8" else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        out = deserialize_message(anonymizer("sensor_msgs/msg/Image", serialize_message(
            image_to_msg(pixels, encoding, header=header))), Image)
        assert (out.encoding, out.width, out.height, out.header) == (
            encoding, bgr.shape[1], bgr.shape[0], header)
        check_anonymized(pipeline, bgr, msg_to_image(out, "bgr8"), exact=True)
    jpeg = image_to_compressed(bgr, "bgr8", "jpeg", 95, header)
    out = deserialize_message(anonymizer("sensor_msgs/msg/CompressedImage",
                                         serialize_message(jpeg)), CompressedImage)
    assert out.format == "bgr8; jpeg compressed bgr8" and out.header == header
    check_anonymized(pipeline, compressed_to_image(jpeg, "bgr8"),
                     compressed_to_image(out, "bgr8"), exact=False)
    assert anonymizer.images == 3 and anonymizer.faces >= 9 and anonymizer.dropped == 0


def test_other_topics_pass_and_a_bad_image_is_left_out(capsys) -> None:
    anonymizer = BagAnonymizer()
    faces = serialize_message(FaceEmotionArray())
    assert anonymizer("fer_ros/msg/FaceEmotionArray", faces) == faces
    broken = image_to_compressed(photo(), "bgr8", "jpeg", 95)
    broken.data = broken.data[: len(broken.data) // 2]  # cut short on the way
    for _ in range(3):
        assert anonymizer("sensor_msgs/msg/CompressedImage", serialize_message(broken)) is None
    assert anonymizer.dropped == 3 and anonymizer.images == 0
    assert capsys.readouterr().err.count("anonymize: an image was not written") == 1
    assert anonymizer.summary() == "anonymized 0 images (0 faces pixelated); 3 not written"


def test_record_anonymize_over_dds(pipeline: FacePipeline, spawn, tmp_path: Path,
                                   rclpy_context) -> None:
    import rclpy
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from rosbags.highlevel import AnyReader

    node = rclpy.create_node("anonymize_bag_test", context=rclpy_context)
    # Transient local: the recorder gets every message however late it matches.
    durable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
    raw_pub = node.create_publisher(Image, "/an/image", durable)
    jpeg_pub = node.create_publisher(CompressedImage, "/an/image/compressed", durable)
    faces_pub = node.create_publisher(FaceEmotionArray, "/an/faces", durable)
    bgr = photo()
    raw_pub.publish(image_to_msg(bgr, "bgr8"))
    jpeg = image_to_compressed(bgr, "bgr8", "jpeg", 95)
    broken = image_to_compressed(bgr, "bgr8", "jpeg", 95)
    broken.data = broken.data[:1000]
    jpeg_pub.publish(broken)  # before the good one: the recorder meets it on its way
    jpeg_pub.publish(jpeg)
    faces_pub.publish(FaceEmotionArray(image_width=7))
    bag = tmp_path / "bag"
    recorder = spawn([FER_ROS, "bag", "record", "--anonymize", "-o", str(bag),
                      "--max-messages", "3", "/an/image", "/an/image/compressed", "/an/faces"],
                     "record")
    deadline = time.monotonic() + 120
    while recorder.popen.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert recorder.popen.wait(1) == 0, recorder.output()
    node.destroy_node()
    assert "Recorded 3 messages" in recorder.output() and "(anonymized 2 images (" in \
        recorder.output() and "; 1 not written)" in recorder.output(), recorder.output()
    with AnyReader([bag]) as reader:
        topics = [c.topic for c, _, _ in reader.messages()]
        messages = {c.topic: raw for c, _, raw in reader.messages()}
    assert sorted(topics) == ["/an/faces", "/an/image", "/an/image/compressed"]
    check_anonymized(pipeline, bgr, msg_to_image(
        deserialize_message(messages["/an/image"], Image), "bgr8"), exact=True)
    check_anonymized(pipeline, compressed_to_image(jpeg, "bgr8"), compressed_to_image(
        deserialize_message(messages["/an/image/compressed"], CompressedImage), "bgr8"),
        exact=False)
    assert deserialize_message(messages["/an/faces"], FaceEmotionArray).image_width == 7


def test_topics_that_may_hide_images_are_not_recorded_with_anonymize() -> None:
    from rosbags.typesys import Stores, get_typestore

    from fer_ros.rosless.bag_anonymize import refused_with_anonymize

    store = get_typestore(Stores.ROS2_KILTED)
    for msgtype in ("stereo_msgs/msg/DisparityImage", "theora_image_transport/msg/Packet"):
        assert refused_with_anonymize(store, msgtype), msgtype
    for msgtype in ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage",
                    "tf2_msgs/msg/TFMessage", "diagnostic_msgs/msg/DiagnosticArray",
                    "sensor_msgs/msg/CameraInfo"):
        assert not refused_with_anonymize(store, msgtype), msgtype
