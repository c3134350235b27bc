"""overlay_node: draws faces, names and emotions on the video.

Subscribes to ``image`` (or its ``/compressed`` sibling, parameter image_transport) and
``faces/emotions`` and pairs them by header stamp (not "latest": a slow perception node
still gets its boxes drawn on the image they were computed from). Publishes the annotated
image on ``faces/overlay`` (for rqt_image_view and RViz) and, as JPEG, on
``faces/overlay/compressed`` (image_transport's name, so rqt_image_view offers it: for a
laptop over Wi-Fi); with ``anonymize``, the camera image with faces pixelated and nothing
drawn on ``faces/anonymized`` (for teleoperation and recording); RViz markers on
``faces/markers`` (an arrow along each face's head pose and a "name - emotion" label,
removed when the face's track ends). Serves the image as MJPEG with a small HTML page
(default http://127.0.0.1:8080/), optionally writes it to a video file, and optionally
shows a local window when a display and a GUI-capable OpenCV exist.
"""

from __future__ import annotations

import copy
import os
from collections import OrderedDict

import cv2
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from sensor_msgs.msg import CompressedImage, Image
from visualization_msgs.msg import MarkerArray

from fer_ros.msg import FaceEmotion, FaceEmotionArray
from fer_ros.ros.image_codec import ImageDecodeError, image_to_compressed, image_to_msg
from fer_ros.ros.markers import FaceMarkers
from fer_ros.ros.params import ParamSpec, declare_parameters
from fer_ros.ros.qos import QOS_CHOICES, qos_profile
from fer_ros.ros.run import log_final, run_node
from fer_ros.ros.status_names import stream_of
from fer_ros.ros.transport import (
    TRANSPORT_DESCRIPTION,
    TRANSPORTS,
    compressed_topic,
    decode,
    image_subscription,
)
from fer_ros.viewer.access import ViewerTokenError, viewer_token
from fer_ros.viewer.anonymize import (
    ANONYMIZE,
    ANONYMIZE_DESCRIPTION,
    box_of,
    faces_to_hide,
    pixelate,
)
from fer_ros.viewer.draw import draw_faces
from fer_ros.viewer.mjpeg_server import FrameHub, MjpegServer

PARAMS = (
    ParamSpec("port", 8080, "HTTP port of the MJPEG viewer; 0 turns the viewer off.",
              (0, 65535), read_only=True),
    ParamSpec("bind_address", "127.0.0.1", "Address the viewer listens on. Keep 127.0.0.1 "
              "unless the stream (faces of people) may be seen from the network; any other "
              "address needs viewer_token.", read_only=True),
    ParamSpec("viewer_token", "", "File (mode 0600) whose first line is the token the viewer "
              "asks for: HTTP Basic with any user name and the token as password (browsers "
              "ask once), or 'Authorization: Bearer <token>'. Required when bind_address is "
              "not a loopback address; empty = no token (loopback only).", read_only=True),
    ParamSpec("max_clients", 4, "Concurrent viewers of the stream.", (1, 64), read_only=True),
    ParamSpec("jpeg_quality", 80, "JPEG quality of the browser stream and of "
              "faces/overlay/compressed.", (10, 100)),
    ParamSpec("publish_compressed", True, "Also publish faces/overlay/compressed "
              "(sensor_msgs/CompressedImage, JPEG): the same JPEG the browser stream gets, "
              "a twentieth of the raw image's bytes.", read_only=True),
    ParamSpec("buffer_size", 30, "Images kept while waiting for their faces message.",
              (1, 1000), read_only=True),
    ParamSpec("anonymize", "none", ANONYMIZE_DESCRIPTION + " Applies to faces/overlay, the "
              "browser stream and video_path; with strangers or all, faces/anonymized carries "
              "the image with those faces pixelated and nothing drawn.", choices=ANONYMIZE),
    ParamSpec("image_transport", "raw", TRANSPORT_DESCRIPTION, read_only=True,
              choices=TRANSPORTS),
    ParamSpec("qos", "sensor_data", "Image subscription QoS: sensor_data (best effort, as "
              "camera drivers publish), reliable or system_default.", read_only=True,
              choices=QOS_CHOICES),
    ParamSpec("video_path", "", "Also write the annotated video to this file (.mp4/.avi); "
              "empty = no file.", read_only=True),
    ParamSpec("video_fps", 15.0, "Frame rate written into video_path.", (1.0, 240.0),
              read_only=True),
    ParamSpec("show_window", False, "Show a local OpenCV window (needs a display and an "
              "OpenCV built with GUI support).", read_only=True),
)


def nameless(face: FaceEmotion) -> FaceEmotion:
    """The face as it is drawn and listed when everyone is anonymized: without a name."""
    shown = copy.copy(face)
    shown.name, shown.name_similarity = "", 0.0
    return shown


class OverlayNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("overlay", **kwargs)
        self.p = declare_parameters(self, PARAMS)
        self._images: OrderedDict[tuple[int, int], Image | CompressedImage] = OrderedDict()
        self._pending: OrderedDict[tuple[int, int], FaceEmotionArray] = OrderedDict()
        self.frames = 0
        self.names_seen: set[str] = set()
        self._writer: cv2.VideoWriter | None = None
        self._window = self.p["show_window"] and self._gui_available()
        self.hub = FrameHub()
        self.server: MjpegServer | None = None
        if self.p["port"]:
            try:
                token = viewer_token(self.p["bind_address"], self.p["viewer_token"])
                self.server = MjpegServer(self.hub, self.p["bind_address"], self.p["port"],
                                          self.p["max_clients"], token=token,
                                          log=self.get_logger().warning).start()
                self.get_logger().info(f"viewer: open {self.server.url} in a browser"
                                       + (" (it asks for the token)" if token else ""))
            except ViewerTokenError as exc:
                self.get_logger().error(f"viewer off: {exc}")
            except OSError as exc:
                self.get_logger().error(f"viewer could not listen on {self.p['bind_address']}:"
                                        f"{self.p['port']}: {exc}; continuing without it")
        self.publisher = self.create_publisher(Image, "faces/overlay", 5)
        self.compressed_pub = (self.create_publisher(
            CompressedImage, compressed_topic(self, "faces/overlay"), 5)
            if self.p["publish_compressed"] else None)
        # With anonymize set at start-up, or at the first image after it is set at run time.
        self.anonymized_pub = (self.create_publisher(Image, "faces/anonymized", 5)
                               if self.p["anonymize"] != "none" else None)
        self.markers = FaceMarkers()
        self.marker_pub = self.create_publisher(MarkerArray, "faces/markers", 10)
        image_topic, image_type = image_subscription(self, "image", self.p["image_transport"])
        self.create_subscription(image_type, image_topic, self._on_image,
                                 qos_profile(self.p["qos"]))
        self.create_subscription(FaceEmotionArray, "faces/emotions", self._on_faces, 10)
        # The perception node's rate and latency, shown on the viewer page.
        self.perception: dict[str, str] | None = None
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)

    def _gui_available(self) -> bool:
        if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
            self.get_logger().warning("show_window: no display; the window is off")
            return False
        try:
            cv2.namedWindow("fer_ros")
            return True
        except cv2.error:
            self.get_logger().warning("show_window: this OpenCV has no GUI support "
                                      "(opencv-python-headless); the window is off")
            return False

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        # An overlay in namespace /front shows the perception node's camera "front" (see
        # README "Many cameras"); otherwise its single camera.
        stream = self.get_namespace().strip("/")
        wanted = [stream, ""] if stream else [""]
        found: dict[str, list] = {}
        for status in msg.status:
            found.setdefault(stream_of(status.name), status.values)
        for name in wanted:
            if name in found:
                values = {kv.key: kv.value for kv in found[name]}
                if "output rate (Hz)" in values:
                    self.perception = {"fps": values["output rate (Hz)"],
                                       "latency_ms": values.get("latency mean (ms)", ""),
                                       "latency_p95_ms": values.get("latency p95 (ms)", "")}
                return

    @staticmethod
    def _key(header) -> tuple[int, int]:
        return header.stamp.sec, header.stamp.nanosec

    def _on_image(self, msg: Image | CompressedImage) -> None:
        key = self._key(msg.header)
        faces = self._pending.pop(key, None)
        if faces is not None:
            self._render(msg, faces)
            return
        self._images[key] = msg
        while len(self._images) > self.p["buffer_size"]:
            self._images.popitem(last=False)

    def _on_faces(self, faces: FaceEmotionArray) -> None:
        markers = self.markers.update(faces)
        if markers.markers:
            self.marker_pub.publish(markers)
        key = self._key(faces.header)
        image = self._images.pop(key, None)
        if image is None:  # faces can overtake their image on another connection
            self._pending[key] = faces
            while len(self._pending) > self.p["buffer_size"]:
                self._pending.popitem(last=False)
            return
        # Older unmatched images can no longer get faces (they come in order): drop them.
        for old in [k for k in self._images if k < key]:
            del self._images[old]
        self._render(image, faces)

    def _render(self, image: Image | CompressedImage, faces: FaceEmotionArray) -> None:
        try:
            bgr = decode(image, "bgr8")
        except ImageDecodeError as exc:
            self.get_logger().warning(f"cannot draw on image: {exc}",
                                      throttle_duration_sec=10.0)
            return
        shown = faces.faces
        if self.p["anonymize"] != "none":
            bgr = pixelate(bgr, map(box_of, faces_to_hide(faces.faces, self.p["anonymize"])))
            if self.anonymized_pub is None:
                self.anonymized_pub = self.create_publisher(Image, "faces/anonymized", 5)
            self.anonymized_pub.publish(image_to_msg(bgr, "bgr8", header=image.header))
            if self.p["anonymize"] == "all":  # no name drawn or listed either
                shown = [nameless(face) for face in faces.faces]
        annotated = draw_faces(bgr, shown)
        self.publisher.publish(image_to_msg(annotated, "bgr8", header=image.header))
        self.frames += 1
        self.names_seen.update(f.name for f in shown if f.name and f.name != "unknown")
        compressed = image_to_compressed(annotated, "bgr8", "jpeg", self.p["jpeg_quality"],
                                         image.header)
        if self.compressed_pub is not None:
            self.compressed_pub.publish(compressed)
        details = [{"name": f.name, "emotion": f.emotion,
                    "scores": dict(zip(f.emotion_labels,
                                       (round(float(v), 3) for v in f.emotion_scores),
                                       strict=False))} for f in shown]
        self.hub.publish(compressed.data.tobytes(),
                         {"frames": self.frames, "faces": len(faces.faces),
                          "names": [] if self.p["anonymize"] == "all" else sorted(self.names_seen),
                          "details": details,
                          "perception": self.perception})
        self._write_video(annotated)
        if self._window:
            cv2.imshow("fer_ros", annotated)
            cv2.waitKey(1)

    def _write_video(self, frame) -> None:
        path = self.p["video_path"]
        if not path:
            return
        if self._writer is None:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            fourcc = cv2.VideoWriter_fourcc(*("mp4v" if path.endswith(".mp4") else "MJPG"))
            self._writer = cv2.VideoWriter(path, fourcc, self.p["video_fps"],
                                           (frame.shape[1], frame.shape[0]))
            if not self._writer.isOpened():
                self.get_logger().error(f"cannot write video {path}; recording is off")
                self._writer.release()
                self._writer = None
                self.p["video_path"] = ""
                return
            self._video_size = (frame.shape[1], frame.shape[0])
        if (frame.shape[1], frame.shape[0]) != self._video_size:
            frame = cv2.resize(frame, self._video_size)
        self._writer.write(frame)

    def destroy_node(self) -> None:
        if getattr(self, "server", None) is not None:
            self.server.stop()
        if getattr(self, "_writer", None) is not None:
            self._writer.release()
            log_final(self, f"wrote {self.frames} annotated frames to {self.p['video_path']}")
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run_node(OverlayNode, args, "overlay")
