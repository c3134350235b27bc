"""overlay_node publishes RViz markers for faces with a head pose and deletes them when
the face's track ends."""

from __future__ import annotations

import threading
from pathlib import Path

from conftest import wait_for
from geometry_msgs.msg import Point, Pose, Quaternion
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosutil import TestNode
from visualization_msgs.msg import Marker, MarkerArray

from fer_ros.msg import FaceEmotion, FaceEmotionArray
from fer_ros.paths import node_executable
from fer_ros.ros.markers import FaceMarkers


def faces(*tracks: int, stamp: int = 1) -> FaceEmotionArray:
    msg = FaceEmotionArray()
    msg.header.stamp.sec = stamp
    msg.header.frame_id = "camera_optical_frame"
    for track in tracks:
        face = FaceEmotion(track_id=track, name=f"p{track}", emotion="happy",
                           head_pose_valid=True)
        face.head_pose = Pose(position=Point(x=0.1 * track, y=0.0, z=1.0),
                              orientation=Quaternion(x=0.5, y=-0.5, z=0.5, w=0.5))
        msg.faces.append(face)
    return msg


def test_markers_follow_tracks() -> None:
    markers = FaceMarkers()
    first = markers.update(faces(3, 5))
    assert [(m.id, m.type, m.action) for m in first.markers] == [
        (6, Marker.ARROW, Marker.ADD), (7, Marker.TEXT_VIEW_FACING, Marker.ADD),
        (10, Marker.ARROW, Marker.ADD), (11, Marker.TEXT_VIEW_FACING, Marker.ADD)]
    assert first.markers[1].text == "p3 - happy"
    assert first.markers[0].header.frame_id == "camera_optical_frame"
    second = markers.update(faces(5, stamp=2))
    assert [(m.id, m.action) for m in second.markers] == [
        (10, Marker.ADD), (11, Marker.ADD), (6, Marker.DELETE), (7, Marker.DELETE)]
    invalid = faces(5, stamp=3)
    invalid.faces[0].head_pose_valid = False
    assert [(m.id, m.action) for m in markers.update(invalid).markers] == [
        (10, Marker.DELETE), (11, Marker.DELETE)]


def test_overlay_node_publishes_and_deletes_markers(spawn, tmp_path: Path) -> None:
    proc = spawn([str(node_executable("overlay_node")), "--ros-args", "-p", "port:=0"],
                 "overlay")
    client = TestNode("markers_test_client")
    received: list[MarkerArray] = []
    lock = threading.Lock()

    def on_markers(msg: MarkerArray) -> None:
        with lock:
            received.append(msg)

    try:
        client.node.create_subscription(MarkerArray, "/faces/markers", on_markers, 10)
        pub = client.node.create_publisher(
            FaceEmotionArray, "/faces/emotions",
            QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
        assert wait_for(lambda: pub.get_subscription_count() > 0, 30), proc.output()
        assert wait_for(lambda: client.node.count_publishers("/faces/markers") > 0, 30)

        def actions() -> list[tuple[int, int]]:
            with lock:
                return [(m.id, m.action) for array in received for m in array.markers]

        pub.publish(faces(4, stamp=1))
        assert wait_for(lambda: (8, Marker.ADD) in actions(), 10), proc.output()
        pub.publish(faces(stamp=2))  # the face left: its track ended
        assert wait_for(lambda: (8, Marker.DELETE) in actions(), 10), actions()
        assert (9, Marker.DELETE) in actions()
    finally:
        client.close()
    assert proc.interrupt() == 0, proc.output()
