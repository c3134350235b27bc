"""image_codec: numpy <-> sensor_msgs/Image round trips and every malformed message."""

from __future__ import annotations

import array

import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from fer_ros.ros.image_codec import MAX_SIDE, ImageDecodeError, image_to_msg, msg_to_image
from fer_ros.ros.qos import qos_profile


def sample_bgr(height: int = 6, width: int = 5) -> np.ndarray:
    rng = np.random.default_rng(3)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def raw_msg(encoding: str, width: int, height: int, step: int, size: int) -> Image:
    msg = Image(encoding=encoding, width=width, height=height, step=step)
    msg.data = array.array("B", bytes(size))
    return msg


def test_bgr_round_trip_keeps_pixels_and_header() -> None:
    image = sample_bgr()
    header = Header(frame_id="cam")
    header.stamp.sec = 12
    msg = image_to_msg(image, "bgr8", header)
    assert (msg.width, msg.height, msg.step, msg.encoding) == (5, 6, 15, "bgr8")
    assert msg.header.frame_id == "cam" and msg.header.stamp.sec == 12
    back = deserialize_message(serialize_message(msg), Image)
    assert np.array_equal(msg_to_image(back, "bgr8"), image)
    assert np.array_equal(msg_to_image(back, "rgb8"), image[:, :, ::-1])


def test_rgb_message_converts_to_bgr() -> None:
    image = sample_bgr()
    msg = image_to_msg(np.ascontiguousarray(image[:, :, ::-1]), "rgb8")
    assert np.array_equal(msg_to_image(msg, "bgr8"), image)
    assert np.array_equal(msg_to_image(msg, "rgb8"), image[:, :, ::-1])


def test_mono_and_alpha_encodings() -> None:
    grey = np.arange(30, dtype=np.uint8).reshape(6, 5)
    msg = image_to_msg(grey, "mono8")
    assert msg.step == 5
    assert np.array_equal(msg_to_image(msg, "mono8"), grey)
    rgb = msg_to_image(msg, "rgb8")
    assert rgb.shape == (6, 5, 3) and np.array_equal(rgb[:, :, 1], grey)
    assert np.array_equal(msg_to_image(image_to_msg(grey[:, :, None], "mono8"), "mono8"), grey)

    bgra = np.dstack([sample_bgr(), np.full((6, 5), 9, np.uint8)])
    msg = image_to_msg(bgra, "bgra8")
    assert msg.step == 20
    assert np.array_equal(msg_to_image(msg, "bgr8"), bgra[:, :, :3])
    rgba = np.ascontiguousarray(bgra[:, :, [2, 1, 0, 3]])
    assert np.array_equal(msg_to_image(image_to_msg(rgba, "rgba8"), "bgr8"), bgra[:, :, :3])


def test_same_encoding_is_a_view_without_copy() -> None:
    msg = image_to_msg(sample_bgr(), "bgr8")
    view = msg_to_image(msg, "bgr8")
    assert np.shares_memory(view, np.frombuffer(msg.data, dtype=np.uint8))


def test_row_padding_is_dropped() -> None:
    image = sample_bgr(4, 3)
    padded = np.zeros((4, 16), np.uint8)  # step 16 > 3 * 3: 7 bytes of padding per row
    padded[:, :9] = image.reshape(4, 9)
    padded[:, 9:] = 255
    msg = raw_msg("bgr8", 3, 4, 16, 0)
    msg.data = array.array("B", padded.tobytes())
    assert np.array_equal(msg_to_image(msg, "bgr8"), image)
    assert np.array_equal(msg_to_image(msg, "rgb8"), image[:, :, ::-1])


def test_big_endian_flag_is_irrelevant_for_8_bit() -> None:
    msg = image_to_msg(sample_bgr(), "bgr8")
    msg.is_bigendian = 1
    assert np.array_equal(msg_to_image(msg, "bgr8"), sample_bgr())


def test_large_image_round_trip_is_exact_and_decoding_copies_nothing() -> None:
    # 1080p: every pixel survives encoding, the wire (CDR) and decoding; a decode that
    # needs no conversion is a view of the message's buffer, not a copy of 6 MB.
    image = np.random.default_rng(7).integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    msg = deserialize_message(serialize_message(image_to_msg(image)), Image)
    assert (msg.height, msg.width, msg.step, len(msg.data)) == (1080, 1920, 5760, 1080 * 5760)
    decoded = msg_to_image(msg, "bgr8")
    assert np.array_equal(decoded, image)
    assert np.shares_memory(decoded, np.frombuffer(msg.data, np.uint8)), "decoded as a copy"
    assert np.array_equal(msg_to_image(msg, "rgb8"), image[:, :, ::-1])
    # image_to_msg copies: changing the image afterwards leaves the message as it was.
    source = image.copy()
    encoded = image_to_msg(source)
    source[:] = 0
    assert np.array_equal(msg_to_image(encoded, "bgr8"), image)


@pytest.mark.parametrize(("encoding", "words"), [
    ("BGR8", ["case-sensitive", "'bgr8'"]),
    ("bgr", ["unknown", "did you mean 'bgr8'"]),
    ("rbg8", ["unknown", "did you mean"]),
    ("", ["unknown", "supported are bgr8"]),
    ("16UC1", ["unsupported", "16UC1"]),
    ("yuv422", ["unsupported"]),
])
def test_bad_message_encodings(encoding: str, words: list[str]) -> None:
    msg = raw_msg(encoding, 2, 2, 6, 12)
    with pytest.raises(ImageDecodeError) as info:
        msg_to_image(msg)
    for word in words:
        assert word in str(info.value)


SUPPORTED = "supported are bgr8, rgb8, mono8, bgra8, rgba8"


@pytest.mark.parametrize(("encoding", "message"), [
    ("monochrome", f"unknown message encoding 'monochrome' (did you mean 'mono8'?): {SUPPORTED}"),
    ("xyz8", f"unknown message encoding 'xyz8': {SUPPORTED}"),
    ("YUV422", f"unsupported message encoding 'YUV422': {SUPPORTED}"),
    ("BGR8", "unknown message encoding 'BGR8' (encodings are case-sensitive: did you mean "
             f"'bgr8'?): {SUPPORTED}"),
])
def test_bad_message_encoding_messages_exactly(encoding: str, message: str) -> None:
    with pytest.raises(ImageDecodeError) as info:
        msg_to_image(raw_msg(encoding, 2, 2, 6, 12))
    assert str(info.value) == message


def test_the_largest_side_is_accepted() -> None:
    wide = msg_to_image(raw_msg("bgr8", MAX_SIDE, 1, 3 * MAX_SIDE, 3 * MAX_SIDE), "bgr8")
    tall = msg_to_image(raw_msg("mono8", 1, MAX_SIDE, 1, MAX_SIDE), "mono8")
    assert wide.shape == (1, MAX_SIDE, 3) and tall.shape == (MAX_SIDE, 1)
    with pytest.raises(ImageDecodeError) as info:
        msg_to_image(raw_msg("mono8", 1, MAX_SIDE + 1, 1, MAX_SIDE + 1))
    assert str(info.value) == (f"image of 1x{MAX_SIDE + 1} exceeds the {MAX_SIDE}x{MAX_SIDE} "
                               "limit (a corrupt header?)")


def test_encoded_messages_are_little_endian() -> None:
    assert image_to_msg(sample_bgr()).is_bigendian == 0


def test_bad_wanted_encoding() -> None:
    msg = image_to_msg(sample_bgr())
    with pytest.raises(ImageDecodeError, match="wanted encoding 'bgra8'"):
        msg_to_image(msg, "bgra8")
    with pytest.raises(ImageDecodeError, match="did you mean 'rgb8'"):
        msg_to_image(msg, "rgb")


@pytest.mark.parametrize(("width", "height", "step", "size", "pattern"), [
    (0, 4, 0, 0, "no pixels: width 0, height 4"),
    (4, 0, 12, 0, "no pixels"),
    (MAX_SIDE + 1, 1, 3 * (MAX_SIDE + 1), 3 * (MAX_SIDE + 1), "exceeds the 8192x8192"),
    (1, 100000, 3, 300000, "exceeds"),
    (4, 2, 11, 22, "step 11 is shorter than a row of 4 bgr8 pixels \\(12 bytes\\)"),
    (4, 2, 12, 23, "data holds 23 bytes, but height 2 x step 12 needs 24"),
    (4, 2, 12, 0, "data holds 0 bytes"),
    (4, 2, 16, 24, "needs 32"),
])
def test_bad_message_geometry(width: int, height: int, step: int, size: int,
                              pattern: str) -> None:
    with pytest.raises(ImageDecodeError, match=pattern):
        msg_to_image(raw_msg("bgr8", width, height, step, size))


def test_image_decode_error_is_a_value_error() -> None:
    assert issubclass(ImageDecodeError, ValueError)


@pytest.mark.parametrize(("array_", "encoding", "pattern"), [
    (np.zeros((4, 4, 3), np.float32), "bgr8", "uint8"),
    (np.zeros((4, 4), np.uint8), "bgr8", "HxWx3 array, got shape \\(4, 4\\)"),
    (np.zeros((4, 4, 3), np.uint8), "mono8", "HxW array"),
    (np.zeros((4, 4, 3), np.uint8), "bgra8", "HxWx4"),
    (np.zeros((0, 4, 3), np.uint8), "bgr8", "no pixels"),
    (np.zeros((4, 4, 3), np.uint8), "jpeg", "unknown image encoding 'jpeg'"),
])
def test_bad_arrays_for_image_to_msg(array_: np.ndarray, encoding: str, pattern: str) -> None:
    with pytest.raises(ImageDecodeError, match=pattern):
        image_to_msg(array_, encoding)


def test_non_contiguous_input_is_copied_in_order() -> None:
    image = sample_bgr(6, 10)[:, ::2]  # every other column: not contiguous
    assert np.array_equal(msg_to_image(image_to_msg(image), "bgr8"), image)


def test_qos_profiles_by_name() -> None:
    from rclpy.qos import HistoryPolicy, ReliabilityPolicy

    sensor = qos_profile("sensor_data")
    assert sensor.reliability == ReliabilityPolicy.BEST_EFFORT and sensor.depth == 5
    reliable = qos_profile("reliable")
    assert reliable.reliability == ReliabilityPolicy.RELIABLE and reliable.depth == 10
    assert reliable.history == HistoryPolicy.KEEP_LAST
    qos_profile("system_default").depth = 99  # a fresh copy: the rclpy constant is untouched
    assert qos_profile("system_default").depth != 99
    with pytest.raises(ValueError, match="sensor_data, reliable, system_default"):
        qos_profile("best_effort")
