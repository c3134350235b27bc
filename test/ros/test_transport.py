"""transport: which topic and type each image_transport subscribes to, and decoding
either kind of message to the encoding asked for."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from rclpy.node import Node
from sensor_msgs.msg import CompressedImage, Image

from fer_ros.ros.image_codec import image_to_compressed, image_to_msg
from fer_ros.ros.transport import TRANSPORTS, decode, image_subscription


@pytest.fixture
def node(rclpy_context) -> Iterator[Node]:
    node = Node("transport_test", namespace="/robot", context=rclpy_context,
                cli_args=["--ros-args", "-r", "image:=/head/image_raw"])
    yield node
    node.destroy_node()


def test_each_transport_subscribes_where_image_transport_would(node: Node) -> None:
    assert TRANSPORTS == ("raw", "compressed")
    assert image_subscription(node, "image", "raw") == ("/head/image_raw", Image)
    assert image_subscription(node, "image", "compressed") == ("/head/image_raw/compressed",
                                                                CompressedImage)
    # Not remapped: relative to the node's namespace.
    assert image_subscription(node, "cam/image", "compressed") == (
        "/robot/cam/image/compressed", CompressedImage)


def test_decode_gives_the_encoding_asked_for_from_either_kind() -> None:
    bgr = np.zeros((4, 6, 3), np.uint8)
    bgr[:, :, 0] = 255  # blue
    for msg in (image_to_msg(bgr, "bgr8"), image_to_compressed(bgr, "bgr8", "png")):
        assert np.array_equal(decode(msg, "bgr8"), bgr), type(msg).__name__
        assert np.array_equal(decode(msg, "rgb8"), bgr[:, :, ::-1]), type(msg).__name__
