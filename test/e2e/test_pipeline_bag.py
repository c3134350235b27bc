"""The whole pipeline on a recorded bag: bag.launch.py + `fer-ros bag play` + record.

Builds an MCAP bag of packaged face images with known content, replays it into the
perception node started by the launch file, records /faces/emotions with
`fer-ros bag record`, and checks every output against its input.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from conftest import data_path, wait_for
from rclpy.serialization import deserialize_message, serialize_message
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore
from rosutil import TestNode, enroll, frame_bgr

from fer_ros.msg import FaceEmotionArray
from fer_ros.paths import fer_ros_command, share_dir
from fer_ros.ros.image_codec import image_to_msg

PERSON = "jerry_seinfeld"
FER_ROS = fer_ros_command()
LABELS = {"angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"}


def build_input_bag(path: Path) -> list[dict]:
    """Write the input bag; returns what each frame holds (None faces = no output)."""
    person = sorted(data_path("celebrity", "val", PERSON).glob("*.jpg"))
    frames: list[tuple[np.ndarray, str, dict]] = []
    for image in person[:3]:
        frames.append((frame_bgr(image), "bgr8", {"faces": 1, "names": [PERSON]}))
    stranger = frame_bgr(data_path("astronaut", "astronaut.png"))
    frames.append((stranger, "bgr8", {"faces": 1, "names": ["unknown"]}))
    frames.append((np.ascontiguousarray(stranger[:, :, ::-1]), "rgb8",
                   {"faces": 1, "names": ["unknown"]}))
    empty = frame_bgr(data_path("pyfeat", "free-mountain-vector-01.jpg"))
    frames.append((empty, "bgr8", {"faces": 0, "names": []}))
    frames.append((cv2.cvtColor(empty, cv2.COLOR_BGR2GRAY), "mono8", {"faces": 0, "names": []}))
    # The resolution changes mid-stream.
    frames.append((frame_bgr(person[0], (320, 240)), "bgr8",
                   {"faces": 1, "names": [PERSON], "size": (320, 240)}))
    frames.append((np.zeros((480, 640, 3), np.uint8), "yuv422", {"faces": None}))
    group = frame_bgr(data_path("pyfeat", "multi_face.jpg"))
    frames.append((group, "bgr8", {"faces": 5}))

    typestore = get_typestore(Stores.ROS2_KILTED)
    expected = []
    with Writer(path, version=8, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection("/camera/image_raw", "sensor_msgs/msg/Image",
                                     typestore=typestore)
        for i, (pixels, encoding, info) in enumerate(frames):
            msg = image_to_msg(pixels, "bgr8" if encoding in ("bgr8", "yuv422") else encoding)
            if encoding == "yuv422":
                msg.encoding = "yuv422"  # a real encoding we do not support
            msg.header.frame_id = "bag_camera"
            msg.header.stamp.sec, msg.header.stamp.nanosec = 500 + i, 250_000_000
            t_ns = (10 + i) * 700_000_000  # 0.7 s apart
            writer.write(conn, t_ns, serialize_message(msg))
            expected.append({**info, "stamp": (500 + i, 250_000_000),
                             "size": info.get("size", (640, 480))})
    return expected


def read_outputs(bag: Path) -> list[FaceEmotionArray]:
    from rosbags.rosbag2 import Reader

    with Reader(bag) as reader:
        return [deserialize_message(raw, FaceEmotionArray)
                for _, _, raw in reader.messages()]


def test_bag_replay_through_the_launch_file(tmp_path: Path, spawn) -> None:
    in_bag, out_bag, gallery = tmp_path / "input", tmp_path / "output", tmp_path / "g.json"
    expected = build_input_bag(in_bag)
    answered = len([e for e in expected if e["faces"] is not None])
    enroll(gallery, PERSON, sorted(data_path("celebrity", "train", PERSON).glob("*.jpg"))[:5])
    launch_file = share_dir() / "launch" / "bag.launch.py"
    # queue_size: every image is answered even when one takes longer than the 0.7 s
    # between images (the first ones do on a busy machine; the default would drop one).
    launch = spawn([*FER_ROS, "launch", str(launch_file), f"gallery:={gallery}",
                   "device:=cpu", "queue_size:=20"], "launch")
    assert wait_for(lambda: "models loaded" in launch.output(), 120), launch.output()
    # The recorder ends by itself once it has every answer: no guess at how long the
    # last images take.
    recorder = spawn([*FER_ROS, "bag", "record", "-o", str(out_bag), "/faces/emotions",
                      "--max-messages", str(answered)], "record")
    assert wait_for(lambda: "Subscribed to topic" in recorder.output(), 30), recorder.output()
    # The recorder subscribed; wait until that is discovered on the graph too, or the
    # first outputs could be published before the subscription matched.
    observer = TestNode("bag_test_observer")
    try:
        assert wait_for(lambda: observer.node.count_subscribers("/faces/emotions") >= 1, 20)
    finally:
        observer.close()
    player = spawn([*FER_ROS, "bag", "play", str(in_bag), "--start-delay", "3"], "play")
    assert player.popen.wait(120) == 0, player.output()
    assert recorder.popen.wait(120) == 0, (recorder.output(), launch.output()[-3000:])
    launch_code = launch.interrupt()
    log = launch.output()
    assert launch_code == 0, log[-3000:]
    assert "Traceback" not in log and "Traceback" not in recorder.output()
    assert log.count("yuv422") == 1  # one clear line for the unsupported encoding
    assert "dropped 0" in log, log[-3000:]  # the node's summary at exit

    outputs = read_outputs(out_bag)
    valid = [e for e in expected if e["faces"] is not None]
    assert len(outputs) == answered, [(o.header.stamp.sec, len(o.faces)) for o in outputs]
    for exp, out in zip(valid, outputs, strict=True):
        assert (out.header.stamp.sec, out.header.stamp.nanosec) == exp["stamp"]
        assert out.header.frame_id == "bag_camera"
        assert (out.image_width, out.image_height) == exp["size"]
        assert len(out.faces) == exp["faces"], exp
        if "names" in exp:
            assert [f.name for f in out.faces] == exp["names"], exp
        for face in out.faces:
            assert face.emotion in LABELS and set(face.emotion_labels) == LABELS
