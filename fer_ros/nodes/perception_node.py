"""perception_node: faces, names and emotions from an image topic.

Subscribes to ``image`` (remap it to your camera, e.g. /camera/image_raw) and
publishes fer_ros/msg/FaceEmotionArray on ``faces/emotions`` (/faces/emotions in the
root namespace) with the source image's header, one message per processed image,
also when it holds no face. While no face is tracked, an image may be answered without
being searched (idle_detection_rate, idle_change_threshold, idle_refresh_period: an
unchanged empty scene costs almost nothing); diagnostics count those skips. Only the
newest image is processed: images that arrive while inference runs replace the waiting
one and are counted as dropped, so the queue never grows and latency stays bounded.
Inference runs on its own thread so services, parameter changes and diagnostics stay
responsive.

Services: ``~/enroll`` (fer_ros/srv/EnrollFace: enrol the largest face of the latest
image) and ``~/reload_gallery`` (std_srvs/srv/Trigger). The gallery file is also
reloaded when it changes on disk.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image
from std_srvs.srv import Trigger

from fer_ros.msg import FaceEmotionArray
from fer_ros.pipeline import FacePipeline, GalleryError, PipelineConfig
from fer_ros.pipeline.gallery import validate_name
from fer_ros.pipeline.gallery_store import GalleryStore
from fer_ros.pipeline.pipeline import RUNTIME_SETTINGS
from fer_ros.ros.face_msgs import camera_for, face_to_msg
from fer_ros.ros.image_codec import ImageDecodeError, msg_to_image
from fer_ros.ros.params import ParamSpec, declare_parameters
from fer_ros.ros.qos import QOS_CHOICES, qos_profile
from fer_ros.ros.run import log_final, run_node
from fer_ros.srv import EnrollFace

PARAMS = (
    ParamSpec("gallery_path", "", "Gallery of enrolled people: a .json file, an SQLite file "
              "(.db/.sqlite) or a postgresql:// URL shared by several robots; empty = no "
              "gallery, every face is 'unknown'. Created on the first enrolment."),
    ParamSpec("persist_gallery", True, "Write run-time enrolments to gallery_path (JSON: "
              "atomically, mode 0600; SQLite/PostgreSQL: one transaction). False keeps them "
              "in memory only."),
    ParamSpec("recognition_threshold", 0.5, "Cosine similarity below which a face is "
              "'unknown'.", (0.0, 1.0)),
    ParamSpec("recognition_margin", 0.05, "How much the best person must beat the second "
              "best; closer calls are 'unknown'.", (0.0, 1.0)),
    ParamSpec("device", "auto", "auto (CUDA when present), cpu or cuda[:N].", read_only=True),
    ParamSpec("min_face_size", 40, "Smallest face searched for, in pixels of the input image.",
              (10, 2000), read_only=True),
    ParamSpec("detection_thresholds", [0.6, 0.7, 0.7], "MTCNN P/R/O-Net stage thresholds.",
              read_only=True),
    ParamSpec("detection_min_score", 0.9, "Faces scored below this are dropped.", (0.0, 1.0)),
    ParamSpec("downscale", 1.0, "Detect on the image scaled by this factor (faster; boxes "
              "are mapped back to full resolution).", (0.1, 1.0), read_only=True),
    ParamSpec("enable_recognition", True, "Compute embeddings and names.", read_only=True),
    ParamSpec("enable_emotion", True, "Classify emotions.", read_only=True),
    ParamSpec("enable_tracking", True, "Track faces across images (stable track_id, name "
              "voting, emotion smoothing, fewer embeddings).", read_only=True),
    ParamSpec("facenet_weights", "", "FaceNet weights (.pt); empty = the converted "
              "CASIA-WebFace model from `fer-ros models fetch`.", read_only=True),
    ParamSpec("emotion_weights", "", "Emotion model (.pt from `fer-ros train-emotion`); empty "
              "= the FER2013 mini-Xception.", read_only=True),
    ParamSpec("emotion_smoothing", 0.5, "Weight of the past in the per-track moving average "
              "of emotion probabilities; 0 = this image only.", (0.0, 0.99)),
    ParamSpec("full_detection_interval", 5, "Search the whole image every N images; in "
              "between, only the tracked faces are re-located (much cheaper). New faces "
              "appear within N images. 1 = search every image.", (1, 100)),
    ParamSpec("reembed_interval", 10, "A tracked face is embedded again every N images.",
              (1, 1000)),
    ParamSpec("async_reembed", True, "Re-embed already named faces on a background "
              "thread, so images never wait for a periodic re-embedding (new faces are "
              "still named before their image is published).", read_only=True),
    ParamSpec("vote_window", 5, "Embeddings a track's name is voted over.", (1, 100),
              read_only=True),
    ParamSpec("track_max_age", 1.0, "Seconds a face may go unseen before its track ends.",
              (0.0, 60.0)),
    ParamSpec("idle_detection_rate", 2.0, "While no face is tracked, search the image for "
              "faces at most this often (Hz, on average; a change after a quiet spell is "
              "searched at once); images not searched are answered with no faces. Lower "
              "costs less in a changing empty scene, higher finds faces sooner there. "
              "0 = search every image.", (0.0, 1000.0)),
    ParamSpec("idle_change_threshold", 12.0, "While no face is tracked, an image whose grey "
              "thumbnail (20x20-pixel cells at 640x480) differs from the last searched one "
              "by at most this many grey levels in every cell is not searched; 0 = every "
              "image counts as changed.", (0.0, 255.0)),
    ParamSpec("idle_refresh_period", 5.0, "Seconds after which an unchanged scene is "
              "searched again while no face is tracked; 0 = never.", (0.0, 3600.0)),
    ParamSpec("fov_deg", 60.0, "Horizontal field of view (degrees) assumed for head poses "
              "while no camera_info of the image's size arrives.", (1.0, 179.0)),
    ParamSpec("qos", "sensor_data", f"Image subscription QoS: {', '.join(QOS_CHOICES)}.",
              read_only=True, choices=QOS_CHOICES),
    ParamSpec("torch_threads", 1, "CPU threads for inference; 0 = PyTorch's default (one "
              "per core). 1 leaves the other cores to the camera, DDS and other nodes; on "
              "2 cores it is also faster than 2 threads competing with them.",
              (0, 256), read_only=True),
    ParamSpec("gallery_watch_period", 1.0, "Seconds between checks of the gallery for changes "
              "made by others (PostgreSQL also notifies at once); 0 = only reload on the "
              "service call.", (0.0, 3600.0), read_only=True),
    ParamSpec("diagnostics_period", 1.0, "Seconds between /diagnostics messages.",
              (0.1, 60.0), read_only=True),
    ParamSpec("latency_warn_ms", 250.0, "Mean latency (image stamp to publish) above which "
              "diagnostics report WARN.", (1.0, 60000.0)),
    ParamSpec("drop_warn_ratio", 0.5, "Fraction of dropped images above which diagnostics "
              "report WARN.", (0.0, 1.0)),
)

_DIGITS = re.compile(r"\d+")
_MAX_BAD_KINDS = 32

# Parameters named differently from the PipelineConfig field they set.
_CONFIG_NAMES = {"enable_recognition": "recognition", "enable_emotion": "emotion",
                 "enable_tracking": "tracking"}


@dataclass
class Frame:
    msg: Image
    received: float  # monotonic seconds


class PerceptionNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("perception", **kwargs)
        self.p = declare_parameters(self, PARAMS, on_change=self._on_parameters_changed)

        self._slot: Frame | None = None  # the newest unprocessed image
        self._slot_cv = threading.Condition()
        self._stop = threading.Event()
        # The last processed image and its number of faces, for enrolment (one tuple, so
        # the service never pairs an image with another image's count).
        self._latest: tuple[np.ndarray, int] | None = None
        self._bad_encodings: set[str] = set()
        self._stats = {"received": 0, "dropped": 0, "published": 0, "bad": 0}
        self._window: deque = deque(maxlen=300)  # (publish time, latency, StageTimes)
        self._diag_last: dict[str, int] = {}  # counters at the previous diagnostics
        self._last_received: float | None = None  # monotonic time of the last image

        start = time.monotonic()
        self.pipeline = self._make_pipeline()
        self.load_seconds = time.monotonic() - start
        self.get_logger().info(
            f"models loaded in {self.load_seconds:.1f} s on {self.pipeline.device}: "
            f"detector MTCNN, embedder {self.pipeline.model_name or 'off'}, emotion "
            f"{'/'.join(self.pipeline.emotion_labels) or 'off'}")
        self.gallery = GalleryStore(self.pipeline, self.p["gallery_path"],
                                    self.p["persist_gallery"], self.get_logger())
        self.gallery.reload()

        self.publisher = self.create_publisher(FaceEmotionArray, "faces/emotions", 10)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.subscription = self.create_subscription(
            Image, "image", self._on_image, qos_profile(self.p["qos"]))
        # The camera's intrinsics, for head poses (the latest; the camera may change).
        self._camera_info: CameraInfo | None = None
        self.create_subscription(CameraInfo, "camera_info", self._on_camera_info,
                                 qos_profile(self.p["qos"]))
        services = MutuallyExclusiveCallbackGroup()
        self.create_service(EnrollFace, "~/enroll", self._on_enroll, callback_group=services)
        self.create_service(Trigger, "~/reload_gallery", self._on_reload,
                            callback_group=services)
        self.create_timer(self.p["diagnostics_period"], self._publish_diagnostics)
        if self.p["gallery_watch_period"] > 0:
            self.create_timer(self.p["gallery_watch_period"], self.gallery.watch,
                              callback_group=services)
        self._worker = threading.Thread(target=self._run, name="inference", daemon=True)
        self._worker.start()

    # ------------------------------------------------------------------ set-up
    def _make_pipeline(self) -> FacePipeline:
        if self.p["torch_threads"] > 0:
            torch.set_num_threads(self.p["torch_threads"])
            # OpenCV's resizes are small here: its thread pool only competes for the cores.
            cv2.setNumThreads(self.p["torch_threads"])
        values = {_CONFIG_NAMES.get(name, name): value for name, value in self.p.items()}
        return FacePipeline(PipelineConfig.from_values(values))

    def _on_parameters_changed(self, changed: dict) -> None:
        """Apply accepted run-time changes (after the set succeeded)."""
        settings = {name: value for name, value in changed.items() if name in RUNTIME_SETTINGS}
        if settings:
            self.pipeline.configure(**settings)
        if "persist_gallery" in changed:
            self.gallery.persist = changed["persist_gallery"]
        if "gallery_path" in changed:
            self.gallery.set_path(changed["gallery_path"])

    # ------------------------------------------------------------------ gallery
    def _on_reload(self, _request, response):
        response.success, response.message = self.gallery.reload()
        return response

    def _on_enroll(self, request, response):
        response.success = False
        try:
            validate_name(request.name)  # refuse a bad name before running the models
        except GalleryError as exc:
            response.message = f"refused: {exc}"
            self.get_logger().warning(response.message)
            return response
        latest = self._latest
        if latest is None:
            response.message = "refused: no image received yet"
            return response
        image, faces_seen = latest
        try:
            detection, embedding = self.pipeline.embed_largest_face(image)
        except ValueError as exc:
            response.message = f"refused: {exc} in the latest image"
            self.get_logger().warning(response.message)
            return response
        except Exception as exc:  # a model failure (e.g. out of GPU memory) must not kill us
            response.message = f"failed: {exc!r}"
            self.get_logger().error(response.message)
            return response
        try:
            done = self.gallery.enroll(request.name, embedding, request.append)
        except (GalleryError, OSError) as exc:
            response.message = f"refused: {exc}"
            self.get_logger().warning(response.message)
            return response
        response.success = True
        response.num_embeddings = len(done.person.embeddings)
        where = f"saved to {self.gallery.location}" if done.persisted else "in memory only"
        size = f"{int(detection.width)}x{int(detection.height)} px"
        which = (f"the largest of {faces_seen} faces, {size}" if faces_seen > 1
                 else f"a {size} face")
        response.message = (f"enrolled {done.person.name!r} from {which} "
                            f"({response.num_embeddings} embedding(s), {where})")
        self.get_logger().info(response.message)
        return response

    # ------------------------------------------------------------------ images
    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._camera_info = msg

    def _on_image(self, msg: Image) -> None:
        self._last_received = time.monotonic()
        with self._slot_cv:
            self._stats["received"] += 1
            if self._slot is not None:
                self._stats["dropped"] += 1  # superseded before inference got to it
            self._slot = Frame(msg, time.monotonic())
            self._slot_cv.notify()

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._slot_cv:
                while self._slot is None and not self._stop.is_set():
                    self._slot_cv.wait(0.5)
                frame, self._slot = self._slot, None
            if frame is None:
                continue
            try:
                self._process(frame)
            except Exception as exc:
                self._stats["bad"] += 1
                self.get_logger().error(f"processing an image failed: {exc!r}",
                                        throttle_duration_sec=5.0)

    def _process(self, frame: Frame) -> None:
        msg = frame.msg
        try:
            rgb = msg_to_image(msg, "rgb8")
        except ImageDecodeError as exc:
            self._stats["bad"] += 1
            # One log line per kind of problem: the same fault with other sizes (a
            # truncation by 5 or by 7 bytes) is the same kind. The set is capped so that
            # a publisher sending ever new garbage cannot grow it without end.
            kind = _DIGITS.sub("#", str(exc))
            if kind not in self._bad_encodings and len(self._bad_encodings) < _MAX_BAD_KINDS:
                self._bad_encodings.add(kind)
                more = (" (further kinds of bad images are not logged; see diagnostics "
                        "'images rejected')" if len(self._bad_encodings) == _MAX_BAD_KINDS
                        else "")
                self.get_logger().error(f"dropping image: {exc}{more}")
            return
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        # Unstamped images (stamp 0) still need time to move on, or tracks never age.
        faces = self.pipeline.process(rgb, color="rgb",
                                      stamp=stamp if stamp > 0 else frame.received)
        self._latest = (rgb, len(faces))
        out = FaceEmotionArray()
        out.header = msg.header
        out.image_width, out.image_height = int(msg.width), int(msg.height)
        camera = camera_for(self._camera_info, int(msg.width), int(msg.height),
                            self.p["fov_deg"])
        out.faces = [face_to_msg(face, camera) for face in faces]
        self.publisher.publish(out)
        now = time.monotonic()
        self._stats["published"] += 1
        ros_now = self.get_clock().now().nanoseconds * 1e-9
        latency = ros_now - stamp if stamp > 0 else now - frame.received
        self._window.append((now, latency, self.pipeline.last_times))

    # ------------------------------------------------------------------ diagnostics
    def _publish_diagnostics(self) -> None:
        now = time.monotonic()
        # list(): one copy taken at once, as the inference thread appends meanwhile.
        recent = [w for w in list(self._window) if now - w[0] <= 5.0]
        span = (recent[-1][0] - recent[0][0]) if len(recent) > 1 else 0.0
        out_rate = (len(recent) - 1) / span if span > 0 else 0.0
        lat = np.array([w[1] for w in recent]) * 1e3 if recent else np.zeros(0)
        stages = {k: np.mean([getattr(w[2], k) for w in recent]) if recent else 0.0
                  for k in ("detect", "embed", "emotion", "total")}
        searched = [w[2].extra.get("searched", True) for w in recent]  # False: idle skip
        s = dict(self._stats)
        # Ratios over the last period, not since start-up: the state now is what matters.
        delta = {k: s[k] - self._diag_last.get(k, 0) for k in s}
        self._diag_last = s
        drop_ratio = delta["dropped"] / delta["received"] if delta["received"] else 0.0
        silent = now - self._last_received if self._last_received is not None else None
        status = DiagnosticStatus(name="fer_ros: perception", hardware_id=self.pipeline.device)
        status.level, status.message = DiagnosticStatus.OK, "ok"
        if silent is None:
            status.level, status.message = DiagnosticStatus.WARN, "no images received"
        elif silent > max(5.0, 2 * self.p["diagnostics_period"]):
            status.level, status.message = (DiagnosticStatus.WARN,
                                            f"no images for {silent:.0f} s")
        elif lat.size and lat.mean() > self.p["latency_warn_ms"]:
            status.level = DiagnosticStatus.WARN
            status.message = f"latency {lat.mean():.0f} ms above {self.p['latency_warn_ms']} ms"
        elif drop_ratio > self.p["drop_warn_ratio"]:
            status.level = DiagnosticStatus.WARN
            status.message = f"{drop_ratio:.0%} of images dropped: inference is too slow"
        if delta["bad"] and delta["published"] == 0:
            status.level, status.message = DiagnosticStatus.ERROR, "every image was rejected"
        gallery = self.pipeline.gallery
        values = {
            "images received": s["received"], "images dropped": s["dropped"],
            "images rejected": s["bad"], "messages published": s["published"],
            "background re-embedding errors": self.pipeline.reembed_errors,
            "searches skipped (idle)": self.pipeline.idle.skipped,
            "images searched (%)": f"{100 * np.mean(searched):.0f}" if searched else "",
            "output rate (Hz)": f"{out_rate:.2f}",
            "latency mean (ms)": f"{lat.mean():.1f}" if lat.size else "",
            "latency p95 (ms)": f"{np.percentile(lat, 95):.1f}" if lat.size else "",
            **{f"{k} time (ms)": f"{v:.1f}" for k, v in stages.items()},
            "device": self.pipeline.device, "embedding model": self.pipeline.model_name,
            "emotion labels": ",".join(self.pipeline.emotion_labels),
            "model load time (s)": f"{self.load_seconds:.1f}",
            "gallery people": len(gallery) if gallery is not None else 0,
        }
        status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
        diag = DiagnosticArray()
        diag.header.stamp = self.get_clock().now().to_msg()
        diag.status = [status]
        self.diag_pub.publish(diag)

    def destroy_node(self) -> None:
        if not hasattr(self, "_worker"):  # start-up failed: nothing ran, nothing to report
            super().destroy_node()
            return
        self._stop.set()
        with self._slot_cv:
            self._slot_cv.notify_all()
        if self._worker.is_alive():
            self._worker.join(timeout=5.0)
        self.gallery.close()
        s = self._stats
        log_final(self, f"received {s['received']}, published {s['published']}, "
                        f"dropped {s['dropped']}, rejected {s['bad']}")
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    # The inference thread gives up the GIL inside every torch/OpenCV call and must win it
    # back from the executor threads, which run Python for each incoming image; with
    # Python's default 5 ms switch interval each of MTCNN's hundreds of small calls per
    # frame can wait that long. Measured on 2 cores, 640x480 images at 120 Hz: 11 outputs
    # in 6 s at 5 ms, 66 at 0.5 ms (at 30 Hz: 40 and 76).
    sys.setswitchinterval(0.0005)
    return run_node(PerceptionNode, args, "perception")
