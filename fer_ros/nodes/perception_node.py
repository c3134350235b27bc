"""perception_node: faces, names and emotions from an image topic.

Subscribes to ``image`` (remap it to your camera, e.g. /camera/image_raw) and
``camera_info`` (for head poses; an assumed ``fov_deg`` without it) and publishes
fer_ros/msg/FaceEmotionArray on ``faces/emotions`` (/faces/emotions in the root
namespace) with the source image's header, one message per processed image, also
when it holds no face. While no face is tracked, an image may be answered without
being searched (idle_detection_rate, idle_change_threshold, idle_refresh_period: an
unchanged empty scene costs almost nothing); diagnostics count those skips. Only the
newest image is processed: images that arrive while inference runs replace the waiting
one and are counted as dropped, so the queue never grows and latency stays bounded.
Inference runs on its own thread so services, parameter changes and diagnostics stay
responsive.

A lifecycle (managed) node: configure loads the models and the gallery, activate
subscribes and publishes, deactivate stops all inference (the node then only answers
services and diagnostics), cleanup frees the models. With ``autostart`` (the default)
it configures and activates itself at start-up, so `ros2 run` and the launch files
work unchanged; a model that cannot be loaded then ends the node (exit code 2).

Services: ``~/enroll`` (fer_ros/srv/EnrollFace: enrol the largest face of the latest
image) and ``~/reload_gallery`` (std_srvs/srv/Trigger), from configure to cleanup. The
gallery is also reloaded when another process changes it.
"""

from __future__ import annotations

import gc
import re
import sys
import threading
import time
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
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
from fer_ros.ros.perception_diagnostics import PerceptionStats, perception_status
from fer_ros.ros.qos import QOS_CHOICES, qos_profile
from fer_ros.ros.run import log_final, run_node
from fer_ros.srv import EnrollFace

PARAMS = (
    ParamSpec("autostart", True, "Configure and activate at start-up (load the models, "
              "subscribe). False: the node waits in the lifecycle state 'unconfigured' for a "
              "lifecycle manager (ros2 lifecycle set /perception configure).", read_only=True),
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
    ParamSpec("backend", "auto", "Runtime of the FaceNet and emotion models: auto (ONNX "
              "Runtime on a CPU for the default models when `fer-ros models fetch` made their "
              "ONNX files, PyTorch otherwise; WARN when a file is missing or fails its "
              "checks), torch, or onnxruntime (fails instead of falling back).",
              read_only=True, choices=("auto", "torch", "onnxruntime")),
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
    ParamSpec("async_detection", True, "Run that whole-image search on a worker thread "
              "while the tracked faces are re-located in every image, so no image waits for "
              "it; new faces join when it is done. False: the search runs in the image's own "
              "time.", read_only=True),
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

SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE


@dataclass
class Frame:
    msg: Image
    received: float  # monotonic seconds


class PerceptionNode(LifecycleNode):
    def __init__(self, **kwargs) -> None:
        super().__init__("perception", **kwargs)
        self.p = declare_parameters(self, PARAMS, on_change=self._on_parameters_changed)
        self.stats = PerceptionStats()
        self.pipeline: FacePipeline | None = None
        self.gallery: GalleryStore | None = None
        self.load_seconds = 0.0
        self._state = "unconfigured"
        self._slot: Frame | None = None  # the newest unprocessed image
        self._slot_cv = threading.Condition()
        self._stop = threading.Event()
        self._active = threading.Event()  # images are processed and published
        self._worker: threading.Thread | None = None
        # The last processed image and its number of faces, for enrolment (one tuple, so
        # the service never pairs an image with another image's count).
        self._latest: tuple[np.ndarray, int] | None = None
        self._bad_encodings: set[str] = set()
        self._camera_info: CameraInfo | None = None  # the latest; the camera may change
        self._configured: list = []  # what configure made, for cleanup
        self._subscriptions: list = []  # what activate made, for deactivate
        self._configure_error: Exception | None = None
        # Diagnostics in every state: a lifecycle manager sees why nothing comes out.
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(self.p["diagnostics_period"], self._publish_diagnostics)
        if self.p["autostart"]:
            if self.trigger_configure() != SUCCESS:
                raise self._configure_error or RuntimeError("configure failed")
            self.trigger_activate()

    # ------------------------------------------------------------------ lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            start = time.monotonic()
            self.pipeline = self._make_pipeline()
            self.load_seconds = time.monotonic() - start
        except Exception as exc:  # a missing model, CUDA asked for but absent, ...
            self._configure_error = exc
            if not self.p["autostart"]:  # at start-up run_node says it, as FATAL
                self.get_logger().error(f"configure failed: {exc}")
            return FAILURE
        for model in (self.pipeline.embedder, self.pipeline.classifier):
            if getattr(model, "backend_warning", None):
                self.get_logger().warning(model.backend_warning)
        runtimes = ", ".join(f"{k} {v}" for k, v in self.pipeline.backends.items())
        self.get_logger().info(
            f"models loaded in {self.load_seconds:.1f} s on {self.pipeline.device}: "
            f"detector MTCNN, embedder {self.pipeline.model_name or 'off'}, emotion "
            f"{'/'.join(self.pipeline.emotion_labels) or 'off'} (runtime: {runtimes or '-'})")
        self.gallery = GalleryStore(self.pipeline, self.p["gallery_path"],
                                    self.p["persist_gallery"], self.get_logger())
        self.gallery.reload()
        self.publisher = self.create_lifecycle_publisher(FaceEmotionArray, "faces/emotions", 10)
        services = MutuallyExclusiveCallbackGroup()
        self._configured = [
            self.publisher,
            self.create_service(EnrollFace, "~/enroll", self._on_enroll,
                                callback_group=services),
            self.create_service(Trigger, "~/reload_gallery", self._on_reload,
                                callback_group=services)]
        if self.p["gallery_watch_period"] > 0:
            self._configured.append(self.create_timer(
                self.p["gallery_watch_period"], self.gallery.watch, callback_group=services))
        self._stop.clear()
        self._worker = threading.Thread(target=self._run, name="inference", daemon=True)
        self._worker.start()
        self._state = "inactive"
        return SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        qos = qos_profile(self.p["qos"])
        self._subscriptions = [
            self.create_subscription(Image, "image", self._on_image, qos),
            self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, qos)]
        self._active.set()
        self._state = "active"
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active.clear()
        for subscription in self._subscriptions:
            self.destroy_subscription(subscription)
        self._subscriptions = []
        with self._slot_cv:
            self._slot = None  # a waiting image is not processed any more
        self._state = "inactive"
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self._state = "unconfigured"
        self.get_logger().info("models and gallery released")
        return SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self._active.is_set():
            self.on_deactivate(state)
        self._release()
        self._state = "finalized"
        return SUCCESS

    def _release(self) -> None:
        self._stop_worker()
        for entity in self._configured:
            if entity is getattr(self, "publisher", None):
                self.destroy_lifecycle_publisher(entity)
            elif hasattr(entity, "srv_name"):
                self.destroy_service(entity)
            else:
                self.destroy_timer(entity)
        self._configured = []
        if self.gallery is not None:
            self.gallery.close()
        self.gallery, self.pipeline, self._latest = None, None, None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _stop_worker(self) -> None:
        self._stop.set()
        with self._slot_cv:
            self._slot_cv.notify_all()
        if self._worker is not None and self._worker.is_alive():
            self._worker.join(timeout=5.0)
        self._worker = None

    # ------------------------------------------------------------------ set-up
    def _make_pipeline(self) -> FacePipeline:
        if self.p["torch_threads"] > 0:
            torch.set_num_threads(self.p["torch_threads"])
            # OpenCV's resizes are small here: its thread pool only competes for the cores.
            cv2.setNumThreads(self.p["torch_threads"])
        values = {_CONFIG_NAMES.get(name, name): value for name, value in self.p.items()}
        return FacePipeline(PipelineConfig.from_values(values))

    def _on_parameters_changed(self, changed: dict) -> None:
        """Apply accepted run-time changes (after the set succeeded); while unconfigured
        they are simply used at the next configure."""
        settings = {name: value for name, value in changed.items() if name in RUNTIME_SETTINGS}
        if settings and self.pipeline is not None:
            self.pipeline.configure(**settings)
        if self.gallery is not None:
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
        self.stats.last_received = time.monotonic()
        with self._slot_cv:
            self.stats.count("received")
            if self._slot is not None:
                self.stats.count("dropped")  # superseded before inference got to it
            self._slot = Frame(msg, time.monotonic())
            self._slot_cv.notify()

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._slot_cv:
                while self._slot is None and not self._stop.is_set():
                    self._slot_cv.wait(0.5)
                frame, self._slot = self._slot, None
            if frame is None or not self._active.is_set():
                continue
            try:
                self._process(frame)
            except Exception as exc:
                self.stats.count("bad")
                self.get_logger().error(f"processing an image failed: {exc!r}",
                                        throttle_duration_sec=5.0)

    def _process(self, frame: Frame) -> None:
        msg = frame.msg
        try:
            rgb = msg_to_image(msg, "rgb8")
        except ImageDecodeError as exc:
            self.stats.count("bad")
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
        if not self._active.is_set():
            return  # deactivated while this image was processed: say nothing
        self.publisher.publish(out)
        ros_now = self.get_clock().now().nanoseconds * 1e-9
        latency = ros_now - stamp if stamp > 0 else time.monotonic() - frame.received
        self.stats.published(latency, self.pipeline.last_times)

    # ------------------------------------------------------------------ diagnostics
    def _publish_diagnostics(self) -> None:
        diag = DiagnosticArray()
        diag.header.stamp = self.get_clock().now().to_msg()
        diag.status = [perception_status(self.stats, self.pipeline, self._state, self.p,
                                         self.load_seconds)]
        self.diag_pub.publish(diag)

    def destroy_node(self) -> None:
        if hasattr(self, "stats"):  # absent when start-up failed before it: nothing ran
            self._stop_worker()
            if self.gallery is not None:
                self.gallery.close()
            log_final(self, self.stats.summary())
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    # The inference thread gives up the GIL inside every torch/OpenCV call and must win it
    # back from the executor threads, which run Python for each incoming image; with
    # Python's default 5 ms switch interval each of MTCNN's hundreds of small calls per
    # frame can wait that long. Measured on 2 cores, 640x480 images at 120 Hz: 11 outputs
    # in 6 s at 5 ms, 66 at 0.5 ms (at 30 Hz: 40 and 76).
    sys.setswitchinterval(0.0005)
    return run_node(PerceptionNode, args, "perception")
