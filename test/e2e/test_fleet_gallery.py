"""Two perception nodes ("robots") share one gallery on a real PostgreSQL server: an
enrolment through one node's ~/enroll reaches the other by NOTIFY (it does not poll), a
person forgotten with `fer-ros gallery forget` is named by neither in their next images
(and may enrol again), and a server that goes away is one ERROR while both keep
recognising."""

from __future__ import annotations

import re
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import Proc, data_path, wait_for
from pgutil import PostgresCluster, postgres  # noqa: F401 (fixture)
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosutil import TestNode, frame_bgr, handshake
from sensor_msgs.msg import Image

from fer_ros.msg import FaceEmotionArray
from fer_ros.paths import fer_ros_command, node_executable
from fer_ros.ros.image_codec import image_to_msg
from fer_ros.srv import EnrollFace

pytestmark = pytest.mark.slow
PERSON = "madonna"


def start_robot(spawn, name: str, url: str, watch_period: float) -> Proc:
    return spawn([str(node_executable("perception_node")), "--ros-args",
                 "-r", f"__node:={name}", "-r", f"image:=/{name}/image",
                 "-r", f"faces/emotions:=/{name}/faces", "-p", f"gallery_path:={url}",
                 "-p", "qos:=reliable", "-p", "device:=cpu", "-p", "enable_tracking:=false",
                 "-p", f"gallery_watch_period:={watch_period}"], name)


def listeners(url: str) -> int:
    """Sessions LISTENing on the server (each robot's gallery listener)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity "
                            "WHERE query LIKE 'LISTEN %'").fetchone()[0]


def test_enrolment_reaches_the_other_robot_by_notify(postgres: PostgresCluster,  # noqa: F811
                                                     spawn) -> None:
    # spawn (conftest) stops the nodes whatever happens in the test.
    # robot_b polls once an hour (the most allowed): within the test only PostgreSQL's
    # NOTIFY can bring it robot_a's enrolment. robot_a polls every 5 s, and so notices
    # the server going away without being asked anything.
    robots = {name: start_robot(spawn, name, postgres.url, period)
              for name, period in (("robot_a", 5.0), ("robot_b", 3600.0))}
    client = TestNode("fleet_test_client")
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    pubs = {n: client.node.create_publisher(Image, f"/{n}/image", reliable) for n in robots}
    outputs: dict[str, list[FaceEmotionArray]] = {n: [] for n in robots}
    lock = threading.Lock()
    for name in robots:
        client.node.create_subscription(
            FaceEmotionArray, f"/{name}/faces",
            lambda msg, n=name: (lock.acquire(), outputs[n].append(msg), lock.release()), 10)
    enroll = client.node.create_client(EnrollFace, "/robot_a/enroll")
    try:
        for proc in robots.values():
            assert wait_for(lambda p=proc: "models loaded" in p.output(), 180), proc.output()
        # Blank images stamped (0, n) until one is answered: only an answer proves both
        # sides have matched (rosutil.handshake). The test's own are stamped from 1 s.
        blank = image_to_msg(np.zeros((240, 320, 3), np.uint8), "bgr8")
        for name, pub in pubs.items():

            def probe(n: int, p=pub) -> None:
                blank.header.stamp.nanosec = n
                p.publish(blank)

            def probed(robot: str = name) -> bool:
                with lock:
                    return any(o.header.stamp.sec == 0 for o in outputs[robot])

            handshake(probe, probed, 60)
        stamps = iter(range(1, 10_000))

        def names_seen(robot: str, image: Path) -> list[str]:
            msg = image_to_msg(frame_bgr(image), "bgr8")
            msg.header.stamp.sec = next(stamps)
            pubs[robot].publish(msg)

            def answered():
                with lock:
                    return [o for o in outputs[robot] if o.header.stamp.sec == msg.header.stamp.sec]
            assert wait_for(lambda: bool(answered()), 30), robots[robot].output()[-2000:]
            return [face.name for face in answered()[0].faces]

        train = sorted(data_path("celebrity", "train", PERSON).glob("*.jpg"))
        val = sorted(data_path("celebrity", "val", PERSON).glob("*.jpg"))
        assert names_seen("robot_b", val[0]) == ["unknown"]
        # Both robots listen before anyone enrols (a listener that connects later catches
        # up by reading the gallery, which is not the NOTIFY path under test).
        assert wait_for(lambda: listeners(postgres.url) == 2, 30), listeners(postgres.url)
        taken = re.compile(r"\[(\d+\.\d+)\] \[robot_b\]: gallery .* took in changes to madonna")

        def taken_at() -> list[float]:
            return [float(t) for t in taken.findall(robots["robot_b"].output())]

        before = len(taken_at())
        asked_at = time.time()  # the nodes log with the same (system) clock
        for image in train[:3]:
            assert names_seen("robot_a", image) != []
            response = client.call(enroll, EnrollFace.Request(name=PERSON, append=True))
            assert response.success, response.message
        # In this order: the enrolment asked for, robot_b taking in the change (only lines
        # logged after the request count: not those of any earlier change), robot_b naming
        # the face. The harness's timeout is all the time it gets; robot_b's next poll is
        # an hour away.
        assert wait_for(lambda: len(taken_at()) > before, 30), \
            robots["robot_b"].output()[-2000:]
        assert all(t >= asked_at for t in taken_at()[before:]), (asked_at, taken_at())
        assert names_seen("robot_b", val[0]) == [PERSON]

        # Forgotten on request, by a third process: each robot takes the change in (robot_b
        # by NOTIFY: its poll is an hour away) and names her in no later image.
        def changes_taken(robot: str) -> int:
            return len(re.findall(rf"\[{robot}\]: gallery .* took in changes to {PERSON}",
                                  robots[robot].output()))

        taken_before = {robot: changes_taken(robot) for robot in robots}
        forget = subprocess.run([*fer_ros_command(), "gallery", "forget", postgres.url, PERSON],
                                capture_output=True, text=True, check=False, timeout=60)
        assert forget.returncode == 0, forget.stderr
        assert forget.stdout.startswith(f"forgot '{PERSON}': 3 embedding(s) erased"), forget.stdout
        for robot in robots:
            assert wait_for(lambda robot=robot: changes_taken(robot) > taken_before[robot], 30), \
                robots[robot].output()[-2000:]
            assert names_seen(robot, val[0]) == ["unknown"]
        # She agrees again: a new enrolment is taken, and both name her once more.
        taken_before = changes_taken("robot_b")
        for image in train[:3]:
            assert names_seen("robot_a", image) != []
            response = client.call(enroll, EnrollFace.Request(name=PERSON, append=True))
            assert response.success, response.message
        assert wait_for(lambda: changes_taken("robot_b") > taken_before, 30)
        assert names_seen("robot_b", val[0]) == [PERSON]

        postgres.stop()
        for robot in robots:
            assert names_seen(robot, val[0]) == [PERSON]  # the last gallery keeps working
        response = client.call(enroll, EnrollFace.Request(name="somebody", append=True))
        assert not response.success and "cannot reach the database" in response.message

        def outage_errors(robot: str) -> list[str]:  # a refused enrolment is a WARN
            return [line for line in robots[robot].output().splitlines()
                    if "ERROR" in line and "cannot reach the database" in line]
        # Each robot says so: robot_a at its poll, robot_b (whose poll is an hour away)
        # when its LISTEN connection breaks. One ERROR each, however long it lasts.
        for robot in robots:
            assert wait_for(lambda robot=robot: outage_errors(robot), 30), \
                robots[robot].output()[-2000:]
        for robot in robots:
            assert names_seen(robot, val[0]) == [PERSON]
        for robot, proc in robots.items():
            assert len(outage_errors(robot)) == 1, proc.output()[-2000:]
            assert proc.popen.poll() is None, proc.output()[-2000:]
    finally:
        client.close()
    for proc in robots.values():
        assert proc.interrupt() == 0, proc.output()[-3000:]
        assert "Traceback" not in proc.output(), proc.output()[-3000:]
