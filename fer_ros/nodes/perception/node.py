"""perception_node: faces, names and emotions from an image topic.

Subscribes to ``image`` (remap it to your camera, e.g. /camera/image_raw) and
``camera_info`` (for head poses; an assumed ``fov_deg`` without it) and publishes
fer_ros/msg/FaceEmotionArray on ``faces/emotions`` (/faces/emotions in the root
namespace) with the source image's header, one message per processed image, also
when it holds no face. While no face is tracked, an image may be answered without
being searched (idle_detection_rate, idle_change_threshold, idle_refresh_period: an
unchanged empty scene costs almost nothing); diagnostics count those skips. By default
only the newest image is processed: one that arrives while inference runs replaces the
waiting one, which is counted as dropped, so latency stays bounded on a live camera.
``queue_size`` N > 1 keeps up to N waiting images per stream, processed in order: a bag
played faster than inference then loses none while the backlog fits.
Inference runs on its own thread so services, parameter changes and diagnostics stay
responsive.

A lifecycle (managed) node: configure loads the models and the gallery, activate
subscribes and publishes, deactivate stops all inference (the node then only answers
services and diagnostics), cleanup frees the models. With ``autostart`` (the default)
it configures and activates itself at start-up, so `ros2 run` and the launch files
work unchanged; a model that cannot be loaded then ends the node (exit code 2).

One node can serve several cameras (``streams``: ["cam1", "cam2"] subscribes to
cam1/image and publishes cam1/faces/emotions, and so on; see image_streams.py here).
Each stream has its own tracks, its own messages stamped with its own images' headers and
its own diagnostics status; the newest image of every stream is taken together and all
their faces go through FaceNet and the emotion model as one batch. ``streams`` can be
changed while the node is inactive (deactivate, set, activate): the models stay loaded.

Services: ``~/enroll`` (fer_ros/srv/EnrollFace: enrol the largest face of the latest
image), ``~/forget`` (fer_ros/srv/ForgetPerson: erase a person on request, a tombstone
kept) and ``~/reload_gallery`` (std_srvs/srv/Trigger), from configure to cleanup. The
gallery is also reloaded when another process changes it.
"""

from __future__ import annotations

import gc
import sys
import threading
import time

import cv2
import torch
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from std_srvs.srv import Trigger

from fer_ros.nodes.perception.diagnostics import perception_status
from fer_ros.nodes.perception.enrol_images import EnrolRefused, LatestImages
from fer_ros.nodes.perception.image_streams import ImageStream
from fer_ros.nodes.perception.params import PARAMS
from fer_ros.pipeline import (
    RUNTIME_SETTINGS,
    UNKNOWN,
    FaceStreams,
    GalleryError,
    PipelineConfig,
)
from fer_ros.pipeline.recognition.gallery import ErasurePending, validate_name
from fer_ros.pipeline.recognition.sync import SEEN_PERIOD_S, GallerySync
from fer_ros.ros.face_frames import FaceFrames, tf_message_type
from fer_ros.ros.params import declare_parameters
from fer_ros.ros.qos import qos_profile
from fer_ros.ros.run import log_final, run_node
from fer_ros.srv import EnrollFace, ForgetPerson

SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE


class PerceptionNode(LifecycleNode):
    def __init__(self, **kwargs) -> None:
        super().__init__("perception", **kwargs)
        self.p = declare_parameters(self, PARAMS, on_change=self._on_parameters_changed)
        self.add_on_set_parameters_callback(self._refuse_streams_while_active)
        self.faces: FaceStreams | None = None
        self.gallery: GallerySync | None = None
        self.frames: FaceFrames | None = None  # /tf, from configure with publish_tf
        # Looked for once: a missing tf2_msgs is said at start-up, not at every configure.
        self._tf_message = tf_message_type(self.get_logger()) if self.p["publish_tf"] else None
        self.load_seconds = 0.0
        self._state = "unconfigured"
        self._wake = threading.Condition()  # an image arrived on some stream
        # Held by the inference thread while it processes a batch: deactivate waits for
        # it, so the streams never change under a batch in flight.
        self._busy = threading.Lock()
        self.streams: dict[str, ImageStream] = {}
        self._set_streams(self.p["streams"])
        self._stop = threading.Event()
        self._active = threading.Event()  # images are processed and published
        self._worker: threading.Thread | None = None
        # The last processed image of each stream, for the enroll service.
        self._latest = LatestImages()
        self._configured: list = []  # what configure made, for cleanup
        self._configure_error: Exception | None = None
        self._said_retention_off = False
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
            self.faces = self._make_pipeline()
            self.load_seconds = time.monotonic() - start
        except Exception as exc:  # a missing model, CUDA asked for but absent, ...
            self._configure_error = exc
            if not self.p["autostart"]:  # at start-up run_node says it, as FATAL
                self.get_logger().error(f"configure failed: {exc}")
            return FAILURE
        for model in (self.faces.embedder, self.faces.classifier):
            if getattr(model, "backend_warning", None):
                self.get_logger().warning(model.backend_warning)
        runtimes = ", ".join(f"{k} {v}" for k, v in self.faces.backends.items())
        self.get_logger().info(
            f"models loaded in {self.load_seconds:.1f} s on {self.faces.device}: "
            f"detector MTCNN, embedder {self.faces.model_name or 'off'}{self._decision()}, "
            f"emotion {'/'.join(self.faces.emotion_labels) or 'off'} (runtime: "
            f"{runtimes or '-'})")
        self.gallery = GallerySync(self.faces, self.p["gallery_path"],
                                    self.p["persist_gallery"], self.get_logger())
        self.gallery.reload()
        self._housekeeping()  # people past retention go before the first image
        for stream in self.streams.values():
            stream.open_publisher()
        if self._tf_message is not None:
            self.frames = FaceFrames(self, self._tf_message)
        services = MutuallyExclusiveCallbackGroup()
        self._configured = [
            self.create_service(EnrollFace, "~/enroll", self._on_enroll,
                                callback_group=services),
            self.create_service(Trigger, "~/reload_gallery", self._on_reload,
                                callback_group=services),
            self.create_service(ForgetPerson, "~/forget", self._on_forget,
                                callback_group=services)]
        self._configured.append(self.create_timer(SEEN_PERIOD_S, self._housekeeping,
                                                  callback_group=services))
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
        for stream in self.streams.values():
            stream.subscribe(qos, self.p["image_transport"])
        self._active.set()
        self._state = "active"
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active.clear()
        for stream in self.streams.values():
            stream.unsubscribe()
        with self._busy:  # the batch in flight, if any, ends before we return
            pass
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
        for stream in self.streams.values():
            stream.close_publisher()
        if self.frames is not None:
            self.frames.close()
            self.frames = None
        for entity in self._configured:
            if hasattr(entity, "srv_name"):
                self.destroy_service(entity)
            else:
                self.destroy_timer(entity)
        self._configured = []
        if self.gallery is not None:
            self.gallery.close()
        if self.faces is not None:
            self.faces.close()
        self.gallery, self.faces = None, None
        self._latest.clear()
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _stop_worker(self) -> None:
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        if self._worker is not None and self._worker.is_alive():
            self._worker.join(timeout=5.0)
        self._worker = None

    # ------------------------------------------------------------------ set-up
    def _make_pipeline(self) -> FaceStreams:
        if self.p["torch_threads"] > 0:
            torch.set_num_threads(self.p["torch_threads"])
            # OpenCV's resizes are small here: its thread pool only competes for the cores.
            cv2.setNumThreads(self.p["torch_threads"])
        return FaceStreams(PipelineConfig.from_values(self.p), names=self.streams)

    def _set_streams(self, names: list[str]) -> None:
        """Serve exactly these streams (while not active; publishers while configured)."""
        kept = {name: self.streams.get(name)
                or ImageStream(self, name, self._wake, self.p["queue_size"])
                for name in names}
        for name, stream in self.streams.items():
            if name not in kept:
                stream.close_publisher()
                self._latest.forget(name)
        if self.faces is not None:
            self.faces.set_streams(names)
            for stream in kept.values():
                if stream.publisher is None:
                    stream.open_publisher()
        self.streams = kept

    def _refuse_streams_while_active(self, parameters: list) -> SetParametersResult:
        """The subscriptions follow ``streams`` only between activations."""
        if self._state == "active" and any(p.name == "streams" for p in parameters):
            return SetParametersResult(
                successful=False, reason="streams can change only while the node is "
                "inactive: deactivate it, set streams, activate it")
        return SetParametersResult(successful=True)

    def _on_parameters_changed(self, changed: dict) -> None:
        """Apply accepted run-time changes (after the set succeeded); while unconfigured
        they are simply used at the next configure."""
        settings = {name: value for name, value in changed.items() if name in RUNTIME_SETTINGS}
        if settings and self.faces is not None:
            self.faces.configure(**settings)
        if "queue_size" in changed:
            with self._wake:
                for stream in self.streams.values():
                    stream.queue_size = changed["queue_size"]
        if "streams" in changed:
            self._set_streams(changed["streams"])
        if self.gallery is not None:
            if "persist_gallery" in changed:
                self.gallery.persist = changed["persist_gallery"]
            if "gallery_path" in changed:
                self.gallery.set_path(changed["gallery_path"])

    # ------------------------------------------------------------------ gallery
    def _decision(self) -> str:
        """" (names at similarity >= T, margin M)" for the log; "" without recognition."""
        if self.faces.embedder is None:
            return ""
        threshold, margin = self.faces.decision
        return f" (names at similarity >= {threshold:.2f}, margin {margin:.2f})"

    def _housekeeping(self) -> None:
        if self.p["retention_days"] > 0 and not self.p["persist_gallery"]:
            if not self._said_retention_off:
                self._said_retention_off = True
                self.get_logger().warning("retention_days is set but persist_gallery is "
                                          "false: who was seen is not written, so retention "
                                          "is off")
            return
        self.gallery.housekeeping(self.p["retention_days"])

    def _on_reload(self, _request, response):
        response.success, response.message = self.gallery.reload()
        return response

    def _on_forget(self, request, response):
        response.success = False
        try:
            validate_name(request.name)
        except GalleryError as exc:
            response.message = f"refused: {exc}"
            self.get_logger().warning(response.message)
            return response
        try:
            removed, where = self.gallery.forget(request.name)
        except ErasurePending as exc:  # forgotten; the bytes are not overwritten yet
            response.success, response.embeddings_removed = True, exc.removed
            response.storage = self.gallery.location
            response.message = (f"forgot {request.name.strip()!r}: {exc.removed} embedding(s) "
                                f"erased from {response.storage}; tombstone kept; but {exc}")
            self.get_logger().warning(response.message)
            return response
        except (GalleryError, OSError) as exc:
            response.message = (f"not stored: {exc} (dropped from this node's memory only; "
                                f"ask again when the gallery can be written)")
            self.get_logger().error(response.message)
            return response
        response.success, response.embeddings_removed, response.storage = True, removed, where
        response.message = (f"forgot {request.name.strip()!r}: {removed} embedding(s) erased "
                            f"from {where}; tombstone kept")
        self.get_logger().info(response.message)
        return response

    def _on_enroll(self, request, response):
        response.success = False
        try:
            validate_name(request.name)  # refuse a bad name before running the models
        except GalleryError as exc:
            response.message = f"refused: {exc}"
            self.get_logger().warning(response.message)
            return response
        try:
            image, faces_seen = self._latest.for_enrolment(request.stream, self.streams)
        except EnrolRefused as exc:
            response.message = str(exc)
            return response
        try:
            detection, embedding = self.faces.embed_largest_face(image)
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
    def _run(self) -> None:
        while not self._stop.is_set():
            with self._wake:
                streams = self.streams
                while (not self._stop.is_set()
                       and not any(s.waiting for s in streams.values())):
                    self._wake.wait(0.5)
                    streams = self.streams
                frames = {name: frame for name, s in streams.items()
                          if (frame := s.take()) is not None}
            with self._busy:
                if not frames or not self._active.is_set():
                    continue
                try:
                    self._process(streams, frames)
                except Exception as exc:  # the shared models failed: every stream's images
                    for name in frames:
                        streams[name].failed(exc)

    def _process(self, streams: dict[str, ImageStream], frames: dict) -> None:
        """The newest image of each stream that has one, through the pipeline together."""
        images = {}
        for name, frame in frames.items():
            rgb = streams[name].decode(frame)
            if rgb is not None:
                images[name] = (rgb, "rgb", ImageStream.stamp_of(frame))
        if not images:
            return
        results = self.faces.process(images)
        for name, faces in results.items():
            stream = streams[name]
            if isinstance(faces, Exception):  # this stream's image only
                stream.failed(faces)
                continue
            self._latest.processed(name, images[name][0], len(faces))
            self.gallery.seen(f.name for f in faces if f.name not in ("", UNKNOWN))
            if not self._active.is_set():
                return  # deactivated while these images were processed: say nothing
            try:
                msg = stream.publish(frames[name], faces, self.p["fov_deg"])
                if self.frames is not None:
                    self.frames.publish(msg, name, stream.image_topic)
            except Exception as exc:  # this stream's message only
                stream.failed(exc)
                continue
            stream.published(frames[name], self.faces[name].last_times)

    # ------------------------------------------------------------------ diagnostics
    def _publish_diagnostics(self) -> None:
        diag = DiagnosticArray()
        diag.header.stamp = self.get_clock().now().to_msg()
        diag.status = [
            perception_status(stream.stats, self.faces,
                              self.faces.streams.get(name) if self.faces is not None else None,
                              self._state, self.p, self.load_seconds,
                              node_name=self.get_name(), stream=name,
                              image_topic=stream.image_topic,
                              intrinsics=stream.intrinsics)
            for name, stream in self.streams.items()]
        self.diag_pub.publish(diag)

    def destroy_node(self) -> None:
        if hasattr(self, "streams"):  # absent when start-up failed before it: nothing ran
            self._stop_worker()
            if self.gallery is not None:
                self.gallery.close()
            for name, stream in self.streams.items():
                log_final(self, (f"{name}: " if name else "") + stream.stats.summary())
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    # The inference thread gives up the GIL inside every torch/OpenCV call and must win it
    # back from the executor threads, which run Python for each incoming image; with
    # Python's default 5 ms switch interval each of MTCNN's hundreds of small calls per
    # frame can wait that long. Measured on 2 cores, 640x480 images at 120 Hz: 11 outputs
    # in 6 s at 5 ms, 66 at 0.5 ms (at 30 Hz: 40 and 76).
    sys.setswitchinterval(0.0005)
    return run_node(PerceptionNode, args, "perception")
