"""Where a face is and where it looks, from its five landmarks and the camera intrinsics.

Method: `cv2.solvePnP` fits a generic adult 3D face (five points, millimetres, below)
to MTCNN's five landmarks (eyes, nose tip, mouth corners). The model's size sets the
scale, so the distance comes from how large the face is in pixels against the average
adult inter-ocular distance (63 mm between the eye centres); the fit is started from
that distance along the ray through the eyes, which keeps it stable.

Assumptions, and what they cost:
* an average adult face: a child, or a face 10% wider than average, reads about 10%
  nearer or farther than it is;
* a pinhole camera with no distortion (camera_info's K, or K from a field of view);
* MTCNN's landmarks are a few pixels accurate: orientation is good to roughly 10-15
  degrees on real faces, best for faces that look within about 45 degrees of the camera.

Frames: the position is the point between the eyes in the camera's optical frame (x
right, y down, z forward, metres). The orientation is that of a head frame that
follows REP 103 as a body would: x out of the face (where it looks), y to the face's
own left, z up through the top of the head. A face looking straight into the camera
has its x axis along the camera's -z.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

# Generic adult face in the head frame (x forward, y left, z up), millimetres, origin
# between the eye centres. MTCNN's order: the eye on the image's left (the person's
# right eye), the other eye, the nose tip, the mouth corner on the image's left, the other.
INTEROCULAR_MM = 63.0
FACE_MODEL_MM = np.array([
    [0.0, -INTEROCULAR_MM / 2, 0.0],
    [0.0, INTEROCULAR_MM / 2, 0.0],
    [25.0, 0.0, -35.0],
    [12.0, -24.0, -67.0],
    [12.0, 24.0, -67.0],
], dtype=np.float64)
# Columns: the head frame's axes in camera coordinates for a face looking at the camera.
FACING_CAMERA = np.array([[0.0, 1.0, 0.0],
                          [0.0, 0.0, -1.0],
                          [-1.0, 0.0, 0.0]])


@dataclass(frozen=True)
class Intrinsics:
    """A pinhole camera: focal lengths and principal point, in pixels."""

    fx: float
    fy: float
    cx: float
    cy: float

    @classmethod
    def from_fov(cls, width: int, height: int, fov_deg: float) -> Intrinsics:
        """An ideal camera with horizontal field of view ``fov_deg`` (as camera_node's K)."""
        f = (width / 2.0) / math.tan(math.radians(fov_deg) / 2.0)
        return cls(f, f, (width - 1) / 2.0, (height - 1) / 2.0)

    @classmethod
    def from_k(cls, k: list[float] | np.ndarray) -> Intrinsics | None:
        """From camera_info's row-major 3x3 K; None when K is unset (all zeros)."""
        k = np.asarray(k, dtype=float).reshape(-1)
        if k.size != 9 or k[0] <= 0 or k[4] <= 0:
            return None
        return cls(float(k[0]), float(k[4]), float(k[2]), float(k[5]))

    def matrix(self) -> np.ndarray:
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class HeadPose:
    position: np.ndarray  # (3,) metres, camera optical frame
    rotation: np.ndarray  # (3, 3): head-frame axes (columns) in camera coordinates

    def quaternion(self) -> tuple[float, float, float, float]:
        """(x, y, z, w) of ``rotation``, as geometry_msgs/Quaternion wants it."""
        return _quaternion(self.rotation)

    def yaw_pitch_roll(self) -> tuple[float, float, float]:
        """Degrees, relative to looking straight into the camera: yaw > 0 when the face
        turns to its own left (towards the image's right), pitch > 0 looking down,
        roll > 0 tilting towards its own right shoulder."""
        relative = FACING_CAMERA.T @ self.rotation  # the turn away from facing the camera
        yaw = math.degrees(math.atan2(relative[1, 0], relative[0, 0]))
        pitch = math.degrees(math.asin(max(-1.0, min(1.0, -relative[2, 0]))))
        roll = math.degrees(math.atan2(relative[2, 1], relative[2, 2]))
        return yaw, pitch, roll


def estimate_head_pose(landmarks: np.ndarray, camera: Intrinsics) -> HeadPose | None:
    """The head pose of one face from its (5, 2) landmarks; None if they are unusable."""
    points = np.asarray(landmarks, dtype=np.float64).reshape(-1, 2)
    if points.shape != (5, 2) or not np.all(np.isfinite(points)):
        return None
    eye_gap = float(np.linalg.norm(points[1] - points[0]))
    if eye_gap < 2.0:
        return None
    # Start from the distance the eye gap gives, straight along the ray through the eyes.
    z0 = camera.fx * INTEROCULAR_MM / eye_gap
    mid = points[:2].mean(axis=0)
    t0 = np.array([(mid[0] - camera.cx) / camera.fx * z0, (mid[1] - camera.cy) / camera.fy * z0,
                   z0])
    r0, _ = cv2.Rodrigues(FACING_CAMERA)
    ok, rvec, tvec = cv2.solvePnP(FACE_MODEL_MM, points, camera.matrix(), None, r0.copy(),
                                  t0.reshape(3, 1).copy(), useExtrinsicGuess=True,
                                  flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok or tvec[2, 0] <= 0 or not np.all(np.isfinite(tvec)):
        rotation, position_mm = FACING_CAMERA, t0  # keep at least the position
    else:
        rotation, position_mm = cv2.Rodrigues(rvec)[0], tvec.reshape(3)
    return HeadPose(position=position_mm / 1000.0, rotation=rotation)


def project(pose: HeadPose, camera: Intrinsics) -> np.ndarray:
    """The (5, 2) pixels where the model's landmarks appear for ``pose`` (for tests)."""
    rvec, _ = cv2.Rodrigues(pose.rotation)
    pixels, _ = cv2.projectPoints(FACE_MODEL_MM, rvec, pose.position * 1000.0,
                                  camera.matrix(), None)
    return pixels.reshape(5, 2)


def _quaternion(r: np.ndarray) -> tuple[float, float, float, float]:
    trace = r[0, 0] + r[1, 1] + r[2, 2]
    if trace > 0:
        s = 2.0 * math.sqrt(trace + 1.0)
        return ((r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s,
                0.25 * s)
    i = int(np.argmax(np.diag(r)))
    j, k = (i + 1) % 3, (i + 2) % 3
    s = 2.0 * math.sqrt(1.0 + r[i, i] - r[j, j] - r[k, k])
    q = [0.0, 0.0, 0.0, (r[k, j] - r[j, k]) / s]
    q[i] = 0.25 * s
    q[j] = (r[j, i] + r[i, j]) / s
    q[k] = (r[k, i] + r[i, k]) / s
    return q[0], q[1], q[2], q[3]
