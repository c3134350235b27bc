"""numpy <-> sensor_msgs/Image for 8-bit colour and grey images, in place of cv_bridge;
and sensor_msgs/CompressedImage (JPEG, PNG) -> numpy, in place of image_transport's
compressed plugin.

cv_bridge (and image_transport) exist only as ROS distribution packages built from
source or apt; the ROS 2 wheels on PyPI have neither, and PyPI's `cv-bridge` is the ROS 1
one, broken on numpy 2. This module covers what the fer_ros nodes need: bgr8, rgb8,
mono8, bgra8 and rgba8 images, with every field of an incoming message checked before
its bytes are interpreted, so a malformed message from another process gives one clear
ImageDecodeError instead of a numpy reshape error or a wrong picture.

is_bigendian is ignored: it concerns multi-byte channels only and every encoding
accepted here has one byte per channel.
"""

from __future__ import annotations

import array
import difflib

import cv2
import numpy as np
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

# Channels per pixel of the accepted encodings (all 8 bits per channel).
CHANNELS = {"bgr8": 3, "rgb8": 3, "mono8": 1, "bgra8": 4, "rgba8": 4}
WANTED = ("rgb8", "bgr8", "mono8")
# Larger than any camera fer_ros meets; guards against a corrupt header making us
# allocate or reshape gigabytes.
MAX_SIDE = 8192

# Encodings of sensor_msgs/image_encodings.hpp that are real but not supported here:
# named as "unsupported" rather than "unknown" in errors.
_OTHER_ROS_ENCODINGS = (
    "rgb16", "rgba16", "bgr16", "bgra16", "mono16", "8UC1", "8UC2", "8UC3", "8UC4",
    "8SC1", "16UC1", "16SC1", "32SC1", "32FC1", "64FC1", "bayer_rggb8", "bayer_bggr8",
    "bayer_gbrg8", "bayer_grbg8", "bayer_rggb16", "yuv422", "yuv422_yuy2", "uyvy", "yuyv",
    "nv21", "nv24", "type_8uc3",
)

_TO_WANTED = {
    ("bgr8", "rgb8"): cv2.COLOR_BGR2RGB, ("rgb8", "bgr8"): cv2.COLOR_RGB2BGR,
    ("bgr8", "mono8"): cv2.COLOR_BGR2GRAY, ("rgb8", "mono8"): cv2.COLOR_RGB2GRAY,
    ("mono8", "rgb8"): cv2.COLOR_GRAY2RGB, ("mono8", "bgr8"): cv2.COLOR_GRAY2BGR,
    ("bgra8", "rgb8"): cv2.COLOR_BGRA2RGB, ("bgra8", "bgr8"): cv2.COLOR_BGRA2BGR,
    ("bgra8", "mono8"): cv2.COLOR_BGRA2GRAY, ("rgba8", "rgb8"): cv2.COLOR_RGBA2RGB,
    ("rgba8", "bgr8"): cv2.COLOR_RGBA2BGR, ("rgba8", "mono8"): cv2.COLOR_RGBA2GRAY,
}


class ImageDecodeError(ValueError):
    """An image or Image message that cannot be converted; the message says why."""


def _check_encoding(encoding: str, accepted: tuple[str, ...] | dict, role: str) -> None:
    if encoding in accepted:
        return
    names = ", ".join(accepted)
    if encoding.lower() in accepted:
        hint = f" (encodings are case-sensitive: did you mean {encoding.lower()!r}?)"
    elif encoding in _OTHER_ROS_ENCODINGS or encoding.lower() in (
            e.lower() for e in _OTHER_ROS_ENCODINGS):
        raise ImageDecodeError(f"unsupported {role} encoding {encoding!r}: supported are {names}")
    else:
        close = difflib.get_close_matches(encoding.lower(), list(accepted), n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ImageDecodeError(f"unknown {role} encoding {encoding!r}{hint}: supported are {names}")


def _check_size(width: int, height: int) -> None:
    if width <= 0 or height <= 0:
        raise ImageDecodeError(f"image has no pixels: width {width}, height {height}")
    if width > MAX_SIDE or height > MAX_SIDE:
        raise ImageDecodeError(f"image of {width}x{height} exceeds the {MAX_SIDE}x{MAX_SIDE}"
                               " limit (a corrupt header?)")


def image_to_msg(image: np.ndarray, encoding: str = "bgr8",
                 header: Header | None = None) -> Image:
    """A sensor_msgs/Image holding a copy of `image` (uint8, HxWxC or HxW for mono8)."""
    _check_encoding(encoding, CHANNELS, "image")
    channels = CHANNELS[encoding]
    if image.dtype != np.uint8:
        raise ImageDecodeError(f"{encoding} needs a uint8 array, got {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1 and channels == 1:
        image = image[:, :, 0]
    expected = (channels,) if channels > 1 else ()
    if image.ndim != 2 + (channels > 1) or image.shape[2:] != expected:
        shape = "HxW" if channels == 1 else f"HxWx{channels}"
        raise ImageDecodeError(f"{encoding} needs an {shape} array, got shape {image.shape}")
    height, width = image.shape[:2]
    _check_size(width, height)
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = height, width
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = width * channels
    # array.array from a buffer is one memcpy; assigning bytes or a list would make the
    # generated setter check every element in Python (~100 ms for 640x480).
    data = array.array("B")
    data.frombytes(memoryview(np.ascontiguousarray(image)).cast("B"))
    msg.data = data
    return msg


def msg_to_image(msg: Image, want: str = "rgb8") -> np.ndarray:
    """The pixels of `msg` as an HxWx3 (rgb8/bgr8) or HxW (mono8) uint8 array.

    When no conversion is needed and rows carry no padding the result is a view of the
    message's buffer (no copy): copy it before changing it if the message is still used.
    """
    _check_encoding(want, WANTED, "wanted")
    _check_encoding(msg.encoding, CHANNELS, "message")
    channels = CHANNELS[msg.encoding]
    width, height, step = int(msg.width), int(msg.height), int(msg.step)
    _check_size(width, height)
    row = width * channels
    if step < row:
        raise ImageDecodeError(f"step {step} is shorter than a row of {width} {msg.encoding}"
                               f" pixels ({row} bytes)")
    size = len(msg.data)
    if size != height * step:
        raise ImageDecodeError(f"data holds {size} bytes, but height {height} x step {step}"
                               f" needs {height * step}")
    flat = np.frombuffer(msg.data, dtype=np.uint8)
    rows = flat.reshape(height, step)[:, :row]  # drops any padding at the end of each row
    pixels = rows.reshape(height, width, channels) if channels > 1 else rows
    if msg.encoding == want:
        return pixels
    return cv2.cvtColor(np.ascontiguousarray(pixels), _TO_WANTED[(msg.encoding, want)])


# What compressed_image_transport writes in ``format``: "jpeg", "png", or
# "<raw encoding>; jpeg compressed <encoding>". The codec is named in it either way.
COMPRESSED_FORMATS = ("jpeg", "png")
_MAGIC = {"jpeg": b"\xff\xd8\xff", "png": b"\x89PNG\r\n\x1a\n"}
# JPEG start-of-frame markers (C0-CF but for DHT C4, JPG C8, DAC CC): they carry the size.
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _format_of(declared: str) -> str:
    words = declared.lower().replace(";", " ").split()
    named = [f for f in COMPRESSED_FORMATS if f in words or (f == "jpeg" and "jpg" in words)]
    if not named:
        raise ImageDecodeError(f"unsupported compressed format {declared!r}: supported are "
                               f"{', '.join(COMPRESSED_FORMATS)} (as compressed_image_transport "
                               "writes them, e.g. 'jpeg' or 'bgr8; jpeg compressed bgr8')")
    return named[0]


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the first start-of-frame segment, or None if there is none
    before the image data starts (a truncated or damaged header)."""
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        length = int.from_bytes(data[at + 2:at + 4], "big")
        if marker in _SOF:
            if at + 9 > len(data):
                return None
            return (int.from_bytes(data[at + 7:at + 9], "big"),
                    int.from_bytes(data[at + 5:at + 7], "big"))
        if marker == 0xDA or length < 2:  # start of scan: no size came first
            return None
        at += 2 + length
    return None


def compressed_size(msg: CompressedImage) -> tuple[str, int, int]:
    """The codec and (width, height) that ``msg`` declares, read from its header bytes
    before any pixel is decoded: a corrupt or hostile size is refused without allocating."""
    declared = _format_of(msg.format)
    data = bytes(msg.data[:65536])  # the size is in the first segments
    if not data:
        raise ImageDecodeError(f"compressed image ({declared}) has no data")
    found = next((f for f, magic in _MAGIC.items() if data.startswith(magic)), None)
    if found is None:
        raise ImageDecodeError(f"compressed image is not {declared}: it does not start with "
                               f"a {declared} signature ({len(msg.data)} bytes)")
    if found != declared:
        raise ImageDecodeError(f"compressed image holds {found}, but its format says "
                               f"{msg.format!r}")
    if found == "png":
        size = ((int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big"))
                if len(data) >= 24 and data[12:16] == b"IHDR" else None)
    else:
        size = _jpeg_size(data)
    if size is None:
        raise ImageDecodeError(f"compressed image ({found}, {len(msg.data)} bytes) has no "
                               "readable size in its header: damaged or truncated")
    _check_size(*size)
    return found, size[0], size[1]


def compressed_to_image(msg: CompressedImage, want: str = "rgb8") -> np.ndarray:
    """The pixels of a JPEG or PNG CompressedImage as an HxWx3 (rgb8/bgr8) or HxW (mono8)
    uint8 array; ImageDecodeError says what is wrong with a bad one."""
    _check_encoding(want, WANTED, "wanted")
    found, _, _ = compressed_size(msg)  # checked before decoding; the decoder keeps it
    raw = np.frombuffer(msg.data, dtype=np.uint8)
    # libjpeg decodes a JPEG cut short as a grey bottom and a warning: the end-of-image
    # marker (padding after it allowed) tells a whole one.
    if found == "jpeg" and not bytes(raw[-64:]).rstrip(b"\x00").endswith(b"\xff\xd9"):
        raise ImageDecodeError(f"compressed image (jpeg, {raw.size} bytes) has no end "
                               "marker: truncated")
    flag = cv2.IMREAD_GRAYSCALE if want == "mono8" else cv2.IMREAD_COLOR
    image = cv2.imdecode(raw, flag)
    if image is None:
        raise ImageDecodeError(f"compressed image ({found}, {raw.size} bytes) could not be "
                               "decoded: corrupt or truncated")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if want == "rgb8" else image


def image_to_compressed(image: np.ndarray, encoding: str = "bgr8", codec: str = "jpeg",
                        quality: int = 90, header: Header | None = None) -> CompressedImage:
    """A CompressedImage of ``image`` (bgr8, rgb8 or mono8), ``format`` written as
    compressed_image_transport writes it, so ROS tools decode it too."""
    _check_encoding(encoding, WANTED, "image")
    if codec not in COMPRESSED_FORMATS:
        raise ImageDecodeError(f"unknown codec {codec!r}: supported are "
                               f"{', '.join(COMPRESSED_FORMATS)}")
    if encoding == "rgb8":
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    params = ([cv2.IMWRITE_JPEG_QUALITY, int(quality)] if codec == "jpeg"
              else [cv2.IMWRITE_PNG_COMPRESSION, 1])
    ok, data = cv2.imencode(".jpg" if codec == "jpeg" else ".png", image, params)
    if not ok:
        raise ImageDecodeError(f"OpenCV could not encode a {image.shape} image as {codec}")
    msg = CompressedImage()
    if header is not None:
        msg.header = header
    written = "bgr8" if encoding != "mono8" else "mono8"
    msg.format = f"{encoding}; {codec} compressed {written}"
    buffer = array.array("B")
    buffer.frombytes(data.tobytes())
    msg.data = buffer
    return msg
