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
import io

import cv2
import numpy as np
import PIL.Image
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


def _checked_array(image: np.ndarray, encoding: str) -> np.ndarray:
    """``image`` as an array of ``encoding``'s shape (HxW for mono8), or ImageDecodeError."""
    channels = CHANNELS[encoding]
    if image.dtype != np.uint8:
        raise ImageDecodeError(f"{encoding} needs a uint8 array, got {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1 and channels == 1:
        image = image[:, :, 0]
    expected = (channels,) if channels > 1 else ()
    if image.ndim != 2 + (channels > 1) or image.shape[2:] != expected:
        shape = "HxW" if channels == 1 else f"HxWx{channels}"
        raise ImageDecodeError(f"{encoding} needs an {shape} array, got shape {image.shape}")
    _check_size(image.shape[1], image.shape[0])
    return image


def image_to_msg(image: np.ndarray, encoding: str = "bgr8",
                 header: Header | None = None) -> Image:
    """A sensor_msgs/Image holding a copy of `image` (uint8, HxWxC or HxW for mono8)."""
    _check_encoding(encoding, CHANNELS, "image")
    channels = CHANNELS[encoding]
    image = _checked_array(image, encoding)
    height, width = image.shape[:2]
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
# Pillow's names for what it finds (a JPEG with a multi-picture APP2 segment reads as MPO).
_PILLOW_FORMATS = {"JPEG": "jpeg", "MPO": "jpeg", "PNG": "png"}


def _format_of(declared: str) -> str:
    words = declared.lower().replace(";", " ").split()
    named = [f for f in COMPRESSED_FORMATS if f in words or (f == "jpeg" and "jpg" in words)]
    if not named:
        raise ImageDecodeError(f"unsupported compressed format {declared!r}: supported are "
                               f"{', '.join(COMPRESSED_FORMATS)} (as compressed_image_transport "
                               "writes them, e.g. 'jpeg' or 'bgr8; jpeg compressed bgr8')")
    return named[0]


def compressed_size(msg: CompressedImage) -> tuple[str, int, int]:
    """The codec and (width, height) that ``msg`` holds, read from its header by Pillow
    before any pixel is decoded: a corrupt or hostile size is refused without allocating."""
    return _read_header(bytes(msg.data), msg.format)


def _read_header(data: bytes, fmt: str) -> tuple[str, int, int]:
    declared = _format_of(fmt)
    if not data:
        raise ImageDecodeError(f"compressed image ({declared}) has no data")
    try:
        with PIL.Image.open(io.BytesIO(data)) as header:  # reads the header only
            kind, (width, height) = header.format, header.size
    except PIL.Image.DecompressionBombError as exc:
        raise ImageDecodeError(f"compressed image ({declared}): {exc}") from None
    except PIL.UnidentifiedImageError:
        raise ImageDecodeError(f"compressed image ({len(data)} bytes) is not a readable "
                               "image: no known signature, or a damaged header") from None
    except (OSError, SyntaxError, ValueError):  # Pillow's words for a header cut short
        raise ImageDecodeError(f"compressed image ({declared}, {len(data)} bytes) has no "
                               "readable size in its header: damaged or truncated") from None
    found = _PILLOW_FORMATS.get(kind, str(kind).lower())
    if found != declared:
        raise ImageDecodeError(f"compressed image holds {found}, but its format says "
                               f"{fmt!r}")
    _check_size(width, height)
    return found, width, height


def compressed_to_image(msg: CompressedImage, want: str) -> np.ndarray:
    """The pixels of a JPEG or PNG CompressedImage as an HxWx3 (rgb8/bgr8) or HxW (mono8)
    uint8 array; ImageDecodeError says what is wrong with a bad one."""
    _check_encoding(want, WANTED, "wanted")
    data = bytes(msg.data)  # one copy, for the header and the decoder
    found, _, _ = _read_header(data, msg.format)  # checked before decoding; kept by it
    # libjpeg decodes a JPEG cut short as a grey bottom and a warning: the end-of-image
    # marker (zero padding after it allowed) tells a whole one.
    if found == "jpeg" and not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
        raise ImageDecodeError(f"compressed image (jpeg, {len(data)} bytes) has no end "
                               "marker: truncated")
    flag = cv2.IMREAD_GRAYSCALE if want == "mono8" else cv2.IMREAD_COLOR
    image = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
    if image is None:
        raise ImageDecodeError(f"compressed image ({found}, {len(data)} bytes) could not be "
                               "decoded: corrupt or truncated")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if want == "rgb8" else image


def image_to_compressed(image: np.ndarray, encoding: str, codec: str, quality: int = 90,
                        header: Header | None = None) -> CompressedImage:
    """A CompressedImage of ``image`` (bgr8, rgb8 or mono8) as JPEG (``quality``) or PNG,
    ``format`` written as compressed_image_transport writes it, so ROS tools decode it."""
    _check_encoding(encoding, WANTED, "image")
    image = _checked_array(image, encoding)
    if codec not in COMPRESSED_FORMATS:
        raise ImageDecodeError(f"unknown codec {codec!r}: supported are "
                               f"{', '.join(COMPRESSED_FORMATS)}")
    if encoding == "rgb8":
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    # (OpenCV raises rather than fail quietly, and the array was checked above.)
    if codec == "jpeg":
        _, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    else:
        _, data = cv2.imencode(".png", image)
    msg = CompressedImage()
    if header is not None:
        msg.header = header
    # What the pixels were, what the codec holds (OpenCV writes colour as BGR).
    held = "mono8" if encoding == "mono8" else "bgr8"
    msg.format = f"{encoding}; {codec} compressed {held}"
    buffer = array.array("B")
    buffer.frombytes(data.tobytes())
    msg.data = buffer
    return msg
