"""RViz markers for the faces of a FaceEmotionArray: an arrow along each face's head
pose and a "name - emotion" label above it, coloured by emotion.

Markers are keyed by track, and a track that is no longer in the message gets DELETE
markers, so RViz never keeps a stale face; every marker also has a short lifetime, in
case the messages stop altogether.
"""

from __future__ import annotations

from builtin_interfaces.msg import Duration
from geometry_msgs.msg import Point, Pose, Vector3
from std_msgs.msg import ColorRGBA
from visualization_msgs.msg import Marker, MarkerArray

from fer_ros.msg import FaceEmotionArray
from fer_ros.viewer.draw import EMOTION_COLOURS

NAMESPACE = "fer_ros_faces"
LIFETIME = Duration(sec=2)
ARROW_LENGTH_M = 0.25
TEXT_HEIGHT_M = 0.06
OTHER_COLOUR = (180, 140, 100)  # BGR, as draw.py uses for labels it does not know


def _colour(emotion: str) -> ColorRGBA:
    b, g, r = EMOTION_COLOURS.get(emotion, OTHER_COLOUR)
    return ColorRGBA(r=r / 255.0, g=g / 255.0, b=b / 255.0, a=1.0)


def _ids(key: int) -> tuple[int, int]:
    """Marker ids of the arrow and the label of one face."""
    return 2 * key, 2 * key + 1


class FaceMarkers:
    """Turns each FaceEmotionArray into a MarkerArray, remembering which faces it drew."""

    def __init__(self) -> None:
        self._drawn: set[int] = set()

    def update(self, msg: FaceEmotionArray) -> MarkerArray:
        out = MarkerArray()
        drawn: set[int] = set()
        for index, face in enumerate(msg.faces):
            if not face.head_pose_valid:
                continue
            # Untracked faces (track_id 0) are keyed by their place in the message, in a
            # range of their own.
            key = face.track_id if face.track_id else (1 << 30) + index
            drawn.add(key)
            arrow_id, text_id = _ids(key)
            colour = _colour(face.emotion)
            arrow = Marker(header=msg.header, ns=NAMESPACE, id=arrow_id, type=Marker.ARROW,
                           action=Marker.ADD, pose=face.head_pose, color=colour,
                           scale=Vector3(x=ARROW_LENGTH_M, y=0.02, z=0.03), lifetime=LIFETIME)
            above = face.head_pose.position
            text_pose = Pose(position=Point(x=above.x, y=above.y - 0.15, z=above.z))
            label = face.name or "face"
            if face.emotion:
                label += f" - {face.emotion}"
            text = Marker(header=msg.header, ns=NAMESPACE, id=text_id,
                          type=Marker.TEXT_VIEW_FACING, action=Marker.ADD, pose=text_pose,
                          color=colour, scale=Vector3(z=TEXT_HEIGHT_M), text=label,
                          lifetime=LIFETIME)
            out.markers += [arrow, text]
        for key in sorted(self._drawn - drawn):
            for marker_id in _ids(key):
                out.markers.append(Marker(header=msg.header, ns=NAMESPACE, id=marker_id,
                                          action=Marker.DELETE))
        self._drawn = drawn
        return out
