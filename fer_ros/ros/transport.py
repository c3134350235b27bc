"""image_transport's raw and compressed transports (topic names, decoding), in place of the
image_transport package (which the ROS 2 wheels on PyPI lack).

As image_transport does, the compressed transport takes sensor_msgs/CompressedImage from
the image topic's ``/compressed`` sibling, the base name resolved (remapped) first:
``image:=/cam/image_raw`` subscribes to ``/cam/image_raw/compressed``.
"""

from __future__ import annotations

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import CompressedImage, Image

from fer_ros.ros.image_codec import compressed_to_image, msg_to_image

TRANSPORTS = ("raw", "compressed")
TRANSPORT_DESCRIPTION = (
    "How images arrive, as image_transport names it: raw (sensor_msgs/Image on the image "
    "topic) or compressed (sensor_msgs/CompressedImage, JPEG or PNG, on <image topic>/"
    "compressed, the name resolved first: image:=/cam/image_raw takes "
    "/cam/image_raw/compressed). Compressed suits a camera on another machine: a JPEG is "
    "about a twentieth of the raw image's bytes.")


def compressed_topic(node: Node, base: str) -> str:
    """Where image topic ``base``'s JPEG/PNG go: its resolved name + /compressed."""
    return f"{node.resolve_topic_name(base)}/compressed"


def image_subscription(node: Node, base: str, transport: str) -> tuple[str, type]:
    """The resolved topic and message type to subscribe to for image topic ``base``."""
    if transport == "compressed":
        return compressed_topic(node, base), CompressedImage
    return node.resolve_topic_name(base), Image


def decode(msg: Image | CompressedImage, want: str) -> np.ndarray:
    """The pixels of either kind of message (ImageDecodeError when malformed)."""
    if isinstance(msg, CompressedImage):
        return compressed_to_image(msg, want)
    return msg_to_image(msg, want)
