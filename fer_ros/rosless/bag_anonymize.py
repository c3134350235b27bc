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

from fer_ros.ros.image_codec import image_to_compressed, image_to_msg
from fer_ros.ros.transport import decode
from fer_ros.rosless.bag import ANONYMIZE_MIN_FACE_SIZE as MIN_FACE_SIZE
from fer_ros.viewer.anonymize import pixelate

IMAGE_TYPES = {"sensor_msgs/msg/Image": Image,
               "sensor_msgs/msg/CompressedImage": CompressedImage}
# Images waiting for the detector; beyond this the oldest is left out (counted).
IMAGE_BACKLOG = 30
# Video streams of other image transports: images inside, but not ones we can decode.
PACKET_TYPES = {"theora_image_transport/msg/Packet",
                "ffmpeg_image_transport_msgs/msg/FFMPEGPacket",
                "foxglove_msgs/msg/CompressedVideo"}


def refused_with_anonymize(typestore, msgtype: str) -> bool:
    """Whether a topic of ``msgtype`` must not be recorded with --anonymize: a video packet,
    or a message with an Image or CompressedImage inside (stereo_msgs/DisparityImage...),
    which would be written with its faces."""
    if msgtype in PACKET_TYPES:
        return True
    seen: set[str] = set()

    def holds_image(name: str, top: bool) -> bool:
        if name in IMAGE_TYPES:
            return not top
        if name in seen or name not in typestore.fielddefs:
            return False
        seen.add(name)
        return any(holds_image(type_name, False)
                   for type_name in _named_types(typestore.fielddefs[name][1]))

    return holds_image(msgtype, True)


def _named_types(fields) -> list[str]:
    """The message types a rosbags field list uses (through arrays and sequences too)."""
    names = []
    for _, (_, detail) in fields:
        while isinstance(detail, tuple) and len(detail) == 2 and isinstance(detail[0], tuple):
            detail = detail[0][1]  # an array or sequence: its element
        if isinstance(detail, str):
            names.append(detail)
    return names
KEPT_ENCODINGS = ("bgr8", "rgb8", "mono8")  # written back as they came; others as bgr8
JPEG_QUALITY = 95


class BagAnonymizer:
    """Turns the serialized image messages of a recording into anonymized ones."""

    def __init__(self, device: str = "cpu", min_face_size: int = MIN_FACE_SIZE) -> None:
        from fer_ros.pipeline import FacePipeline, PipelineConfig

        self.pipeline = FacePipeline(PipelineConfig(
            device=device, min_face_size=min_face_size, recognition=False, emotion=False,
            tracking=False))
        self.images = self.faces = self.dropped = self.behind = 0
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
        except Exception as exc:  # whatever it is, the image is not written with its faces
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
                f"{self.dropped + self.behind} not written"
                + (f" ({self.behind} while the detector was behind)" if self.behind else ""))
