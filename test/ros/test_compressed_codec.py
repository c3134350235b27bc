"""image_codec's CompressedImage half: JPEG and PNG round trips, the format strings ROS's
compressed_image_transport writes, and one clear error for each kind of bad message."""

from __future__ import annotations

import array

import cv2
import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CompressedImage
from std_msgs.msg import Header

from fer_ros.ros.image_codec import (
    MAX_SIDE,
    ImageDecodeError,
    compressed_size,
    compressed_to_image,
    image_to_compressed,
)

WIDTH, HEIGHT = 64, 48


def halves_bgr() -> np.ndarray:
    """Left half pure blue, right half pure red (BGR): a swapped channel order shows."""
    image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    image[:, :WIDTH // 2] = (255, 0, 0)
    image[:, WIDTH // 2:] = (0, 0, 255)
    return image


def message(data: bytes, fmt: str = "jpeg") -> CompressedImage:
    msg = CompressedImage(format=fmt)
    msg.data = array.array("B", data)
    return msg


def jpeg_bytes(image: np.ndarray | None = None) -> bytes:
    ok, data = cv2.imencode(".jpg", halves_bgr() if image is None else image)
    assert ok
    return data.tobytes()


def test_jpeg_round_trip_keeps_size_colours_and_header() -> None:
    header = Header(frame_id="cam")
    header.stamp.sec = 7
    msg = image_to_compressed(halves_bgr(), "bgr8", "jpeg", quality=95, header=header)
    assert msg.format == "bgr8; jpeg compressed bgr8"
    assert msg.header.frame_id == "cam" and msg.header.stamp.sec == 7
    back = deserialize_message(serialize_message(msg), CompressedImage)
    assert compressed_size(back) == ("jpeg", WIDTH, HEIGHT)
    bgr = compressed_to_image(back, "bgr8")
    rgb = compressed_to_image(back, "rgb8")
    assert bgr.shape == rgb.shape == (HEIGHT, WIDTH, 3)
    # Away from the edge JPEG keeps flat colours within a few levels.
    assert np.abs(bgr[10, 5].astype(int) - (255, 0, 0)).max() < 8
    assert np.abs(bgr[10, -5].astype(int) - (0, 0, 255)).max() < 8
    assert np.array_equal(rgb, bgr[:, :, ::-1])


def test_png_is_lossless_and_mono_is_grey() -> None:
    image = np.random.default_rng(5).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    msg = image_to_compressed(image, "bgr8", "png")
    assert msg.format == "bgr8; png compressed bgr8"
    assert np.array_equal(compressed_to_image(msg, "bgr8"), image)
    grey = compressed_to_image(msg, "mono8")
    assert grey.shape == (HEIGHT, WIDTH)
    # (the decoder's own grey conversion: its rounding differs from cvtColor's by one)
    assert np.abs(grey.astype(int) - cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)).max() <= 1
    # An rgb8 array is written as the same picture.
    from_rgb = image_to_compressed(image[:, :, ::-1].copy(), "rgb8", "png")
    assert from_rgb.format == "rgb8; png compressed bgr8"
    assert np.array_equal(compressed_to_image(from_rgb, "bgr8"), image)


@pytest.mark.parametrize("fmt", ["jpeg", "JPEG", "jpg", "rgb8; jpeg compressed bgr8",
                                 "mono8; jpeg compressed mono8"])
def test_every_way_of_writing_jpeg_is_read(fmt: str) -> None:
    assert compressed_to_image(message(jpeg_bytes(), fmt), "bgr8").shape == (HEIGHT, WIDTH, 3)


def test_padding_after_the_end_marker_is_accepted() -> None:
    image = compressed_to_image(message(jpeg_bytes() + bytes(16)), "bgr8")
    assert image.shape == (HEIGHT, WIDTH, 3)


def with_size(data: bytes, width: int, height: int) -> bytes:
    """The JPEG with its start-of-frame segment's size replaced."""
    at = data.index(b"\xff\xc0")
    return (data[:at + 5] + height.to_bytes(2, "big") + width.to_bytes(2, "big")
            + data[at + 9:])


@pytest.mark.parametrize("data, fmt, problem", [
    (b"", "jpeg", r"^compressed image \(jpeg\) has no data$"),
    (jpeg_bytes(), "tiff", r"^unsupported compressed format 'tiff': supported are jpeg, png"),
    (jpeg_bytes(), "", r"^unsupported compressed format '': supported are jpeg, png"),
    (b"not an image at all", "jpeg",
     r"^compressed image is not jpeg: it does not start with a jpeg signature \(19 bytes\)$"),
    (jpeg_bytes(), "png", r"^compressed image holds jpeg, but its format says 'png'$"),
    (jpeg_bytes()[:12], "jpeg",
     r"^compressed image \(jpeg, 12 bytes\) has no readable size in its header: damaged or "
     r"truncated$"),
    (jpeg_bytes()[:len(jpeg_bytes()) // 2], "jpeg",
     r"^compressed image \(jpeg, \d+ bytes\) has no end marker: truncated$"),
    (with_size(jpeg_bytes(), MAX_SIDE + 1, 10), "jpeg",
     rf"^image of {MAX_SIDE + 1}x10 exceeds the {MAX_SIDE}x{MAX_SIDE} limit"),
    (with_size(jpeg_bytes(), 0, HEIGHT), "jpeg", r"^image has no pixels: width 0, height 48$"),
])
def test_each_bad_message_names_its_problem(data: bytes, fmt: str, problem: str) -> None:
    with pytest.raises(ImageDecodeError, match=problem):
        compressed_to_image(message(data, fmt))


def test_a_png_cut_short_or_damaged_is_refused() -> None:
    png = cv2.imencode(".png", halves_bgr())[1].tobytes()
    assert compressed_size(message(png, "png")) == ("png", WIDTH, HEIGHT)
    with pytest.raises(ImageDecodeError, match=r"^compressed image \(png, \d+ bytes\) could "
                                               r"not be decoded: corrupt or truncated$"):
        compressed_to_image(message(png[:len(png) // 2], "png"))
    with pytest.raises(ImageDecodeError, match="no readable size"):
        compressed_to_image(message(png[:20], "png"))


def test_unknown_codec_or_encoding_to_compress_is_refused() -> None:
    with pytest.raises(ImageDecodeError, match=r"^unknown codec 'webp': supported are jpeg, png"):
        image_to_compressed(halves_bgr(), "bgr8", "webp")
    with pytest.raises(ImageDecodeError, match="unknown image encoding 'bgr9'"):
        image_to_compressed(halves_bgr(), "bgr9")
    with pytest.raises(ImageDecodeError, match=r"^unknown wanted encoding 'bgra8'"):
        compressed_to_image(message(jpeg_bytes()), "bgra8")
