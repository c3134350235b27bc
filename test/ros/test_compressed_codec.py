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


def noise() -> np.ndarray:
    """Detail everywhere: the compressed data, not the header, is most of the file."""
    return np.random.default_rng(5).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)


def message(data: bytes, fmt: str = "jpeg") -> CompressedImage:
    msg = CompressedImage(format=fmt)
    msg.data = array.array("B", data)
    return msg


def encoded(image: np.ndarray, ext: str = ".jpg") -> bytes:
    ok, data = cv2.imencode(ext, image)
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
    # Without a header the message's is left as it is.
    assert image_to_compressed(halves_bgr(), "bgr8", "jpeg").header == Header()


def test_jpeg_quality_is_the_one_asked_for() -> None:
    sizes = {q: len(image_to_compressed(noise(), "bgr8", "jpeg", q).data) for q in (50, 90, 95)}
    assert sizes[50] < sizes[90] < sizes[95]
    assert sizes[90] == len(image_to_compressed(noise(), "bgr8", "jpeg").data)  # the default
    assert sizes[95] == len(encoded(noise(), ".jpg"))  # OpenCV's own default is 95


def test_png_is_lossless_and_mono_is_grey() -> None:
    image = noise()
    msg = image_to_compressed(image, "bgr8", "png")
    assert msg.format == "bgr8; png compressed bgr8"
    assert compressed_size(msg) == ("png", WIDTH, HEIGHT)
    assert np.array_equal(compressed_to_image(msg, "bgr8"), image)
    grey = compressed_to_image(msg, "mono8")
    assert grey.shape == (HEIGHT, WIDTH)
    # (the decoder's own grey conversion: its rounding differs from cvtColor's by one)
    assert np.abs(grey.astype(int) - cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)).max() <= 1
    # An rgb8 array is written as the same picture.
    from_rgb = image_to_compressed(image[:, :, ::-1].copy(), "rgb8", "png")
    assert from_rgb.format == "rgb8; png compressed bgr8"
    assert np.array_equal(compressed_to_image(from_rgb, "bgr8"), image)
    # A grey one stays grey.
    mono = image_to_compressed(grey, "mono8", "png")
    assert mono.format == "mono8; png compressed mono8"
    assert np.array_equal(compressed_to_image(mono, "mono8"), grey)
    assert np.array_equal(compressed_to_image(mono, "bgr8"), cv2.cvtColor(grey,
                                                                          cv2.COLOR_GRAY2BGR))


@pytest.mark.parametrize("fmt", ["jpeg", "JPEG", "jpg", "rgb8; jpeg compressed bgr8",
                                 "bgr8;jpeg compressed bgr8", "mono8; jpeg compressed mono8"])
def test_every_way_of_writing_jpeg_is_read(fmt: str) -> None:
    image = compressed_to_image(message(encoded(halves_bgr()), fmt), "bgr8")
    assert image.shape == (HEIGHT, WIDTH, 3)


def test_zero_padding_after_the_end_marker_is_accepted_other_bytes_are_not() -> None:
    image = compressed_to_image(message(encoded(noise()) + bytes(100)), "bgr8")
    assert image.shape == (HEIGHT, WIDTH, 3)
    with pytest.raises(ImageDecodeError, match="has no end marker: truncated"):
        compressed_to_image(message(encoded(noise()) + b"XXXX"), "bgr8")


def test_a_multi_picture_jpeg_is_a_jpeg() -> None:
    """Some cameras write MPO (JPEG with further pictures after the first): Pillow names
    it MPO, the decoder shows the first picture."""
    import io

    import PIL.Image

    first = halves_bgr()
    buffer = io.BytesIO()
    PIL.Image.fromarray(first[:, :, ::-1]).save(
        buffer, "MPO", save_all=True, append_images=[PIL.Image.new("RGB", (WIDTH, HEIGHT))])
    msg = message(buffer.getvalue(), "jpeg")
    assert compressed_size(msg) == ("jpeg", WIDTH, HEIGHT)
    decoded = compressed_to_image(msg, "bgr8")
    assert np.abs(decoded.astype(int) - first).mean() < 10  # the first, not the black one


def with_size(data: bytes, width: int, height: int) -> bytes:
    """The JPEG with its start-of-frame segment's size replaced."""
    at = data.index(b"\xff\xc0")
    return (data[:at + 5] + height.to_bytes(2, "big") + width.to_bytes(2, "big")
            + data[at + 9:])


JPEG = encoded(noise())
PNG = encoded(noise(), ".png")


@pytest.mark.parametrize("data, fmt, problem", [
    (b"", "jpeg", "compressed image (jpeg) has no data"),
    (JPEG, "tiff", "unsupported compressed format 'tiff': supported are jpeg, png (as "
     "compressed_image_transport writes them, e.g. 'jpeg' or 'bgr8; jpeg compressed bgr8')"),
    (JPEG, "", "unsupported compressed format '': supported are jpeg, png (as "
     "compressed_image_transport writes them, e.g. 'jpeg' or 'bgr8; jpeg compressed bgr8')"),
    (b"not an image at all", "jpeg", "compressed image (19 bytes) is not a readable image: no "
     "known signature, or a damaged header"),
    (JPEG, "png", "compressed image holds jpeg, but its format says 'png'"),
    (PNG, "bgr8; jpeg compressed bgr8",
     "compressed image holds png, but its format says 'bgr8; jpeg compressed bgr8'"),
    (encoded(noise(), ".bmp"), "jpeg", "compressed image holds bmp, but its format says 'jpeg'"),
    (JPEG[:12], "jpeg", "compressed image (jpeg, 12 bytes) has no readable size in its "
     "header: damaged or truncated"),
    (PNG[:20], "png", "compressed image (png, 20 bytes) has no readable size in its header: "
     "damaged or truncated"),
    (JPEG[:len(JPEG) // 2], "jpeg",
     f"compressed image (jpeg, {len(JPEG) // 2} bytes) has no end marker: truncated"),
    (PNG[:len(PNG) // 2], "png",
     f"compressed image (png, {len(PNG) // 2} bytes) could not be decoded: corrupt or "
     "truncated"),
    (with_size(JPEG, MAX_SIDE + 1, 10), "jpeg",
     f"image of {MAX_SIDE + 1}x10 exceeds the {MAX_SIDE}x{MAX_SIDE} limit (a corrupt header?)"),
    (with_size(JPEG, 20000, 20000), "jpeg", "compressed image (jpeg): Image size (400000000 "
     "pixels) exceeds limit of 178956970 pixels, could be decompression bomb DOS attack."),
])
def test_each_bad_message_names_its_problem(data: bytes, fmt: str, problem: str) -> None:
    with pytest.raises(ImageDecodeError) as info:
        compressed_to_image(message(data, fmt), "rgb8")
    assert str(info.value) == problem


def test_unknown_codec_or_encoding_is_refused() -> None:
    with pytest.raises(ImageDecodeError, match=r"^unknown codec 'webp': supported are jpeg, png$"):
        image_to_compressed(halves_bgr(), "bgr8", "webp")
    with pytest.raises(ImageDecodeError, match="unknown image encoding 'bgr9'"):
        image_to_compressed(halves_bgr(), "bgr9", "jpeg")
    with pytest.raises(ImageDecodeError, match=r"^unknown wanted encoding 'bgra8'"):
        compressed_to_image(message(JPEG), "bgra8")
    with pytest.raises(ImageDecodeError, match=r"^bgr8 needs an HxWx3 array, got shape "
                                               r"\(48, 64, 5\)$"):
        image_to_compressed(np.zeros((HEIGHT, WIDTH, 5), np.uint8), "bgr8", "png")
    with pytest.raises(ImageDecodeError, match=r"^mono8 needs a uint8 array, got float32$"):
        image_to_compressed(np.zeros((HEIGHT, WIDTH), np.float32), "mono8", "png")
