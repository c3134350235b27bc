"""``fer-ros bag record --anonymize``: every image written with its faces pixelated.

Each sensor_msgs/Image or CompressedImage is decoded, searched for faces by the pipeline's
detector (no recognition, no tracking: every image on its own) and written with each face
pixelated (fer_ros/viewer/anonymize.py) in its own encoding (JPEG/PNG re-encoded, JPEG at
quality 95). An image that cannot be decoded or searched is not written at all, and
counted: a recording made to leave faces out must not keep one by accident. Other topics
are written as they come.
"""

from __future__ import annotations

import sys

import cv2
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CompressedImage, Image

from fer_ros.ros.image_codec import ImageDecodeError, image_to_compressed, image_to_msg
from fer_ros.ros.transport import decode
from fer_ros.rosless.bag import ANONYMIZE_MIN_FACE_SIZE as MIN_FACE_SIZE
from fer_ros.viewer.anonymize import pixelate

IMAGE_TYPES = {"sensor_msgs/msg/Image": Image,
               "sensor_msgs/msg/CompressedImage": CompressedImage}
KEPT_ENCODINGS = ("bgr8", "rgb8", "mono8")  # written back as they came; others as bgr8
JPEG_QUALITY = 95


class BagAnonymizer:
    """Turns the serialized image messages of a recording into anonymized ones."""

    def __init__(self, device: str = "cpu", min_face_size: int = MIN_FACE_SIZE) -> None:
        from fer_ros.pipeline import FacePipeline, PipelineConfig

        self.pipeline = FacePipeline(PipelineConfig(
            device=device, min_face_size=min_face_size, recognition=False, emotion=False,
            tracking=False))
        self.images = self.faces = self.dropped = 0
        self._said: set[str] = set()

    def __call__(self, msgtype: str, data: bytes) -> bytes | None:
        """The message to write instead of ``data``; None: write nothing."""
        kind = IMAGE_TYPES.get(msgtype)
        if kind is None:
            return data
        msg = deserialize_message(data, kind)
        try:
            pixels, encoding = self._pixels(msg)
            rgb = (cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB) if encoding == "bgr8" else
                   cv2.cvtColor(pixels, cv2.COLOR_GRAY2RGB) if encoding == "mono8" else pixels)
            faces = self.pipeline.process(rgb)
        except (ImageDecodeError, ValueError, RuntimeError) as exc:
            self.dropped += 1
            kind_of_fault = type(exc).__name__ + str(exc)[:40]
            if kind_of_fault not in self._said:
                self._said.add(kind_of_fault)
                print(f"anonymize: an image was not written (it could not be searched for "
                      f"faces): {exc}", file=sys.stderr, flush=True)
            return None
        boxes = [(round(x1), round(y1), round(x2 - x1), round(y2 - y1))
                 for x1, y1, x2, y2 in (face.box for face in faces)]
        hidden = pixelate(pixels, boxes)
        self.images += 1
        self.faces += len(boxes)
        if isinstance(msg, CompressedImage):
            codec = "png" if "png" in msg.format.lower() else "jpeg"
            out = image_to_compressed(hidden, encoding, codec, JPEG_QUALITY, msg.header)
        else:
            out = image_to_msg(hidden, encoding, header=msg.header)
        return serialize_message(out)

    @staticmethod
    def _pixels(msg: Image | CompressedImage):
        """The pixels and the encoding they are in (and will be written back in)."""
        if isinstance(msg, Image) and msg.encoding in KEPT_ENCODINGS:
            return decode(msg, msg.encoding), msg.encoding
        return decode(msg, "bgr8"), "bgr8"

    def summary(self) -> str:
        return (f"anonymized {self.images} images ({self.faces} faces pixelated); "
                f"{self.dropped} not written")
