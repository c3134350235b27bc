"""overlay_node publishes RViz markers for faces with a head pose (an arrow along the
pose and a label above it, coloured by emotion, each expiring by itself) and deletes
them when the face's track ends."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from conftest import wait_for
from geometry_msgs.msg import Point, Pose, Quaternion
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosutil import TestNode, handshake
from visualization_msgs.msg import Marker, MarkerArray

from fer_ros.msg import FaceEmotion, FaceEmotionArray
from fer_ros.paths import node_executable
from fer_ros.ros.markers import FaceMarkers

# The documented look, written here rather than imported: each emotion's colour (as
# RGB in [0, 1]), grey-blue for labels the palette does not know; a 25 cm arrow along
# the head pose; a 6 cm label 15 cm above the head (the optical frame's y points down).
RGB = {"happy": (240, 200, 40), "sad": (40, 120, 200), "angry": (230, 40, 40),
       "my_label": (100, 140, 180)}
ARROW_LENGTH_M = 0.25
LABEL_HEIGHT_M = 0.06
LABEL_ABOVE_M = 0.15
NAMESPACE = "fer_ros_faces"
# RViz keeps a marker of lifetime 0 for ever: every marker must expire by itself, soon.
MAX_LIFETIME_S = 5.0


def faces(*tracks: int, stamp: int = 1, emotion: str = "happy") -> FaceEmotionArray:
    msg = FaceEmotionArray()
    msg.header.stamp.sec = stamp
    msg.header.frame_id = "camera_optical_frame"
    for track in tracks:
        face = FaceEmotion(track_id=track, name=f"p{track}", emotion=emotion,
                           head_pose_valid=True)
        # A different pose per track, so a marker placed at another face's pose is seen.
        face.head_pose = Pose(position=Point(x=0.1 * track, y=0.02 * track, z=1.0 + track),
                              orientation=Quaternion(x=0.5, y=-0.5, z=0.5, w=0.5))
        msg.faces.append(face)
    return msg


def ids_by_action(array: MarkerArray) -> list[tuple[int, int]]:
    return [(m.id, m.action) for m in array.markers]


def lifetime_s(marker: Marker) -> float:
    return marker.lifetime.sec + marker.lifetime.nanosec * 1e-9


def test_markers_follow_tracks() -> None:
    markers = FaceMarkers()
    first = markers.update(faces(3, 5))
    # An arrow and a label per face, in the faces' order, each with its own id.
    assert [m.type for m in first.markers] == [
        Marker.ARROW, Marker.TEXT_VIEW_FACING, Marker.ARROW, Marker.TEXT_VIEW_FACING]
    assert all(m.action == Marker.ADD and m.ns == NAMESPACE for m in first.markers)
    ids = [m.id for m in first.markers]
    assert len(set(ids)) == 4, ids
    assert [m.text for m in first.markers[1::2]] == ["p3 - happy", "p5 - happy"]
    assert all(m.header.frame_id == "camera_optical_frame" and m.header.stamp.sec == 1
               for m in first.markers)
    # The same track keeps its ids; the ended track's two markers are deleted, by the ids
    # it was drawn with, stamped with the message that no longer has it.
    second = markers.update(faces(5, stamp=2))
    assert ids_by_action(second) == [(ids[2], Marker.ADD), (ids[3], Marker.ADD),
                                     (ids[0], Marker.DELETE), (ids[1], Marker.DELETE)]
    assert all(m.ns == NAMESPACE and m.header.stamp.sec == 2 for m in second.markers)
    invalid = faces(5, stamp=3)
    invalid.faces[0].head_pose_valid = False
    assert ids_by_action(markers.update(invalid)) == [(ids[2], Marker.DELETE),
                                                      (ids[3], Marker.DELETE)]
    # Nothing drawn and nothing to delete: an empty array (the node then publishes none).
    assert ids_by_action(markers.update(faces(stamp=4))) == []


def test_untracked_faces_never_take_a_tracked_face_s_ids() -> None:
    msg = faces(1, 2)
    for face in faces(0, 0).faces:  # track 0: untracked, keyed by their place
        msg.faces.append(face)
    ids = [m.id for m in FaceMarkers().update(msg).markers]
    assert len(ids) == 8 and len(set(ids)) == 8, ids


@pytest.mark.parametrize("emotion", sorted(RGB))
def test_marker_colour_lifetime_and_pose(emotion: str) -> None:
    msg = faces(2, 7, emotion=emotion)
    out = FaceMarkers().update(msg).markers
    want = tuple(v / 255.0 for v in RGB[emotion])
    for marker in out:
        got = (marker.color.r, marker.color.g, marker.color.b)
        assert got == pytest.approx(want, abs=1e-6), (emotion, got)
        assert marker.color.a == pytest.approx(1.0)  # a = 0 would be invisible
        assert 0.0 < lifetime_s(marker) <= MAX_LIFETIME_S, marker.lifetime
    for face, arrow, label in zip(msg.faces, out[0::2], out[1::2], strict=True):
        # The arrow is the head pose itself: it starts between the eyes and points along
        # the head frame's x (where the face looks), 25 cm long.
        assert arrow.pose == face.head_pose
        assert arrow.scale.x == pytest.approx(ARROW_LENGTH_M)
        assert 0 < arrow.scale.y <= arrow.scale.z < ARROW_LENGTH_M
        head = face.head_pose.position
        assert (label.pose.position.x, label.pose.position.y, label.pose.position.z) == \
            pytest.approx((head.x, head.y - LABEL_ABOVE_M, head.z))
        assert label.scale.z == pytest.approx(LABEL_HEIGHT_M)


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

        def actions() -> list[tuple[int, int]]:
            with lock:
                return [(m.id, m.action) for array in received for m in array.markers]

        # The same face at stamp 0 until markers come back, then forgotten: only an answer
        # proves both sides have matched (rosutil.handshake).
        handshake(lambda _: pub.publish(faces(4, stamp=0, emotion="sad")),
                  lambda: (8, Marker.ADD) in actions())
        with lock:
            received.clear()  # a late probe's markers may still come: stamps tell them apart

        def at_stamp(sec: int) -> list[Marker]:
            with lock:
                return [m for array in received for m in array.markers
                        if m.header.stamp.sec == sec]

        pub.publish(faces(4, stamp=1, emotion="sad"))
        assert wait_for(lambda: (8, Marker.ADD) in ids_by_action(
            MarkerArray(markers=at_stamp(1))), 10), proc.output()
        added = at_stamp(1)
        # Colour and lifetime survive the trip: a marker that never expires, or one
        # that is transparent, would be the node's fault as much as the library's.
        assert all(0.0 < lifetime_s(m) <= MAX_LIFETIME_S and m.color.a == 1.0
                   for m in added), added
        assert (added[0].color.r, added[0].color.b) == pytest.approx(
            (RGB["sad"][0] / 255.0, RGB["sad"][2] / 255.0))
        pub.publish(faces(stamp=2))  # the face left: its track ended
        assert wait_for(lambda: (8, Marker.DELETE) in actions(), 10), actions()
        assert (9, Marker.DELETE) in actions()
    finally:
        client.close()
    assert proc.interrupt() == 0, proc.output()
