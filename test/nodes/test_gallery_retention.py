"""perception_node's retention_days: at start-up (and every minute after) people not seen or
enrolled for that long (on a gallery where retention has run that long) are forgotten, as
~/forget does, and named no more; without persist_gallery it says that retention is off and
forgets nobody."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import data_path, wait_for
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosutil import TestNode, enroll, frame_bgr, handshake
from sensor_msgs.msg import Image

from fer_ros.msg import FaceEmotionArray
from fer_ros.paths import node_executable
from fer_ros.ros.image_codec import image_to_msg

pytestmark = pytest.mark.slow
OLD, RECENT = "madonna", "elton_john"
LONG_AGO = "2020-01-01T00:00:00+00:00"


def gallery_with_an_old_enrolment(folder: Path) -> Path:
    gallery = folder / "gallery.json"
    for person in (OLD, RECENT):
        enroll(gallery, person, sorted(data_path("celebrity", "train", person).glob("*.jpg"))[:3])
    data = json.loads(gallery.read_text())
    data["people"][OLD]["added"] = [LONG_AGO] * len(data["people"][OLD]["added"])
    data["retention_since"] = LONG_AGO  # retention has run on this gallery since then
    gallery.write_text(json.dumps(data))
    gallery.chmod(0o600)
    return gallery


@pytest.mark.parametrize("persist", [True, False])
def test_retention_forgets_who_was_not_seen(spawn, tmp_path: Path, persist: bool) -> None:
    gallery = gallery_with_an_old_enrolment(tmp_path)
    proc = spawn([str(node_executable("perception_node")), "--ros-args",
                  "-r", "image:=/camera/image_raw", "-p", f"gallery_path:={gallery}",
                  "-p", "retention_days:=30.0", "-p", f"persist_gallery:={str(persist).lower()}",
                  "-p", "qos:=reliable", "-p", "device:=cpu", "-p", "enable_emotion:=false"],
                 "perception")
    client = TestNode("retention_client")
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    pub = client.node.create_publisher(Image, "/camera/image_raw", reliable)
    outputs: dict[int, FaceEmotionArray] = {}
    lock = threading.Lock()

    def keep(msg: FaceEmotionArray) -> None:
        with lock:
            outputs[msg.header.stamp.sec] = msg

    client.node.create_subscription(FaceEmotionArray, "/faces/emotions", keep, 10)
    try:
        assert wait_for(lambda: "models loaded" in proc.output(), 120), proc.output()
        blank = image_to_msg(np.zeros((240, 320, 3), np.uint8), "bgr8")

        def probe(n: int) -> None:
            blank.header.stamp.nanosec = n
            pub.publish(blank)

        handshake(probe, lambda: 0 in outputs)

        def names(person: str, sec: int) -> list[str]:
            path = sorted(data_path("celebrity", "val", person).glob("*.jpg"))[0]
            msg = image_to_msg(frame_bgr(path), "bgr8")
            msg.header.stamp.sec = sec
            pub.publish(msg)
            assert wait_for(lambda: sec in outputs, 30), proc.output()[-2000:]
            return [face.name for face in outputs[sec].faces]

        stored = json.loads(gallery.read_text())
        if persist:
            assert f"retention: forgot '{OLD}', last seen or enrolled {LONG_AGO} " \
                   f"(retention_days 30)" in proc.output()
            assert OLD not in stored["people"] and OLD in stored["forgotten"]
            assert names(OLD, 1) == ["unknown"]
        else:
            assert proc.output().count("retention_days is set but persist_gallery is false: "
                                       "who was seen is not written, so retention is off") == 1
            assert OLD in stored["people"] and "forgotten" not in stored
            assert names(OLD, 1) == [OLD]
        assert RECENT in stored["people"] and names(RECENT, 2) == [RECENT]
    finally:
        client.close()
    assert proc.interrupt() == 0, proc.output()[-2000:]
    assert "Traceback" not in proc.output()
