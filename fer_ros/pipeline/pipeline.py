"""FacePipeline: detect every face, track it, name it and classify its emotion.

One call per frame: ``process(image, color="rgb"|"bgr", stamp=seconds)``. All faces
of a frame go through the embedding and emotion models as one batch. With tracking
on, a face is embedded only when its track is new, every ``reembed_interval``
frames, or when it has grown markedly (a closer, better view); its name is the vote
over the track's recent embeddings, and its emotion probabilities are smoothed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch

from fer_ros.pipeline.batch import Frame, process_frames
from fer_ros.pipeline.detector import FaceDetector
from fer_ros.pipeline.emotion import EmotionClassifier
from fer_ros.pipeline.facenet import FaceEmbedder
from fer_ros.pipeline.gallery import UNKNOWN, Gallery, GalleryError
from fer_ros.pipeline.idle import IdleGate
from fer_ros.pipeline.search import BackgroundSearch
from fer_ros.pipeline.tracker import FaceTracker, thumbnail
from fer_ros.pipeline.types import Detection, FaceResult, StageTimes


def resolve_device(device: str) -> str:
    """auto -> cuda when available, else cpu; cuda without a GPU is a clear error."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available "
                         f"(use 'auto' or 'cpu')")
    if device != "cpu" and not device.startswith("cuda"):
        raise ValueError(f"device must be auto, cpu or cuda[:N], not {device!r}")
    return device


@dataclass
class PipelineConfig:
    device: str = "auto"
    # FaceNet and emotion runtime: auto (ONNX Runtime on a CPU for the default models
    # when their checked ONNX files exist, else PyTorch), torch or onnxruntime.
    backend: str = "auto"
    # float16 FaceNet and emotion model on CUDA (embeddings within cosine 0.999 of
    # float32 on the test faces: test/pipeline/test_cuda.py); MTCNN stays float32.
    half_precision: bool = False
    # detection
    min_face_size: int = 40
    detection_thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    detection_min_score: float = 0.9
    downscale: float = 1.0
    # stages
    recognition: bool = True
    emotion: bool = True
    # recognition
    facenet_weights: str = ""  # "" = the converted CASIA-WebFace model from the cache
    recognition_threshold: float = 0.5
    recognition_margin: float = 0.05
    # emotion
    emotion_weights: str = ""  # "" = the converted FER2013 mini-Xception from the cache
    emotion_smoothing: float = 0.5  # EMA weight of the past, 0 = per-frame only
    # tracking
    tracking: bool = True
    # Search the whole image every N frames; in between only refine the tracked faces
    # (see FacePipeline._detect). 1 = search every frame.
    full_detection_interval: int = 1
    # That search on a worker thread while tracked faces are refined every frame; its new
    # faces join when it is done (fer_ros/pipeline/search.py). Needs tracking.
    async_detection: bool = False
    # With async_detection: when a thumbnail cell outside the tracked faces changed by more
    # than this many grey levels since the last searched image (someone may have come in),
    # search at once instead of at the interval (fer_ros/pipeline/search.py). 0 = off.
    search_change_threshold: float = 0.0
    iou_threshold: float = 0.3
    track_max_age: float = 1.0  # seconds unseen before a track is dropped
    reembed_interval: int = 10  # a tracked face is embedded again every N frames
    # Start a new track when the face's appearance changes this much (correlation of
    # tiny grey patches): see _split_changed_tracks.
    appearance_change: float = 0.6
    # Frames further apart than this (seconds) are searched in full: too far apart for
    # tracked boxes to be trusted.
    max_refine_gap: float = 0.5
    vote_window: int = 5  # embeddings a track's name is voted over
    # Periodic re-embeddings of tracks that already have a name run on a background
    # thread, so no frame waits for one (an embedding costs more than a detection on a
    # CPU); new and split tracks are still embedded before their frame is returned.
    async_reembed: bool = False
    # While no face is tracked, search at most this often (Hz, on average) and only when
    # the scene changed by change_threshold grey levels or refresh_period s have passed
    # (see fer_ros/pipeline/idle.py). 0 = search every image.
    idle_detection_rate: float = 0.0
    idle_change_threshold: float = 12.0
    idle_refresh_period: float = 5.0

    def __post_init__(self) -> None:
        self.detection_thresholds = tuple(float(v) for v in self.detection_thresholds)

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> PipelineConfig:
        """A config from a flat mapping such as a node's parameters (other keys ignored)."""
        names = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in names})


# Settings that may change between frames; the others choose or load models.
RUNTIME_SETTINGS = frozenset({
    "recognition_threshold", "recognition_margin", "emotion_smoothing",
    "full_detection_interval", "reembed_interval", "track_max_age", "detection_min_score",
    "idle_detection_rate", "idle_change_threshold", "idle_refresh_period",
    "search_change_threshold"})


class FacePipeline:
    def __init__(self, config: PipelineConfig | None = None, gallery: Gallery | None = None,
                 models: tuple | None = None) -> None:
        """Load the models once. ``models`` = (detector, embedder, classifier) to share them."""
        self.config = config or PipelineConfig()
        self.device = resolve_device(self.config.device)
        if models is not None:
            self.detector, self.embedder, self.classifier = models
        else:
            self.detector, self.embedder, self.classifier = self._load_models()
        self._gallery: Gallery | None = None
        self._lock = threading.Lock()  # guards tracker state between process() calls
        self.tracker = FaceTracker(self.config.iou_threshold, self.config.track_max_age,
                                   self.config.vote_window)
        self.last_times = StageTimes()
        self._frames_since_full = 0
        self._last_stamp: float | None = None
        self.idle = IdleGate(self.config.idle_detection_rate, self.config.idle_change_threshold,
                             self.config.idle_refresh_period)
        self._faces_seen = False  # the last searched image had faces (for tracking off)
        self.search = BackgroundSearch(self.detector, self.config.search_change_threshold)
        self._reembed_pool = None  # ThreadPoolExecutor(1), made on first use
        self._reembed_job = None  # the Future of the re-embedding in flight
        self.reembed_errors = 0
        if gallery is not None:
            self.set_gallery(gallery)

    def _load_models(self) -> tuple:
        cfg = self.config
        detector = FaceDetector(min_face_size=cfg.min_face_size,
                                thresholds=tuple(cfg.detection_thresholds),
                                downscale=cfg.downscale, device=self.device,
                                min_score=cfg.detection_min_score)
        embedder = classifier = None
        if cfg.recognition:
            embedder = FaceEmbedder(cfg.facenet_weights or None, device=self.device,
                                    backend=cfg.backend, half=cfg.half_precision)
        if cfg.emotion:
            classifier = EmotionClassifier(cfg.emotion_weights or None, device=self.device,
                                           backend=cfg.backend, half=cfg.half_precision)
        return detector, embedder, classifier

    def close(self) -> None:
        """End the background search and re-embedding threads (the models stay)."""
        self.search.close()
        if self._reembed_pool is not None:
            self._reembed_pool.shutdown(wait=True, cancel_futures=True)
            self._reembed_pool, self._reembed_job = None, None

    @property
    def backends(self) -> dict[str, str]:
        """The runtime of each model, e.g. {"embedder": "onnxruntime", "emotion": "torch"}."""
        models = (("embedder", self.embedder), ("emotion", self.classifier))
        return {name: getattr(m, "backend", "torch") for name, m in models if m is not None}

    def configure(self, **changes: Any) -> None:
        """Change RUNTIME_SETTINGS; they apply from the next frame on."""
        fixed = set(changes) - RUNTIME_SETTINGS
        if fixed:
            raise ValueError(f"{', '.join(sorted(fixed))} cannot change while running: "
                             f"they choose the models (make a new FacePipeline)")
        with self._lock:
            for name, value in changes.items():
                setattr(self.config, name, value)
            self.tracker.max_age = self.config.track_max_age
            self.detector.min_score = self.config.detection_min_score
            self.idle.configure(self.config.idle_detection_rate,
                                self.config.idle_change_threshold, self.config.idle_refresh_period)
            self.search.change_threshold = self.config.search_change_threshold

    # ------------------------------------------------------------------ gallery
    @property
    def model_name(self) -> str:
        return self.embedder.model_name if self.embedder is not None else ""

    @property
    def emotion_labels(self) -> tuple[str, ...]:
        return tuple(self.classifier.labels) if self.classifier is not None else ()

    @property
    def gallery(self) -> Gallery | None:
        return self._gallery

    def set_gallery(self, gallery: Gallery | None) -> None:
        """Swap the gallery in one assignment, so a frame never sees half of an edit."""
        if gallery is not None and self.embedder is not None:
            gallery.check_model(self.embedder.model_name)
            if gallery.dim != self.embedder.dim:
                raise GalleryError(f"gallery embeddings have {gallery.dim} values, the model "
                                   f"gives {self.embedder.dim}")
        if gallery is not None:
            gallery.prepare()  # a large gallery's index is built here, not in a frame
        with self._lock:
            self._gallery = gallery
            # Names voted under the old gallery may be wrong now: vote afresh.
            for track in self.tracker.tracks.values():
                track.votes.clear()
                track.frames_since_embedding = 1 << 30

    def new_gallery(self) -> Gallery:
        if self.embedder is None:
            raise GalleryError("recognition is disabled: no embedding model")
        return Gallery(self.embedder.model_name, self.embedder.dim)

    # ------------------------------------------------------------------ frames
    @staticmethod
    def to_rgb(image: np.ndarray, color: str) -> np.ndarray:
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
            raise ValueError("image must be a numpy uint8 array")
        if image.ndim == 2:
            return np.repeat(image[:, :, None], 3, axis=2)
        if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] == 0 or image.shape[1] == 0:
            raise ValueError(f"image must be HxWx3 (or HxW gray), got shape {image.shape}")
        if color == "rgb":
            return image
        if color == "bgr":
            return np.ascontiguousarray(image[:, :, ::-1])
        raise ValueError(f"color must be 'rgb' or 'bgr', not {color!r}")

    def _detect(self, rgb: np.ndarray, stamp: float) -> tuple[list[Detection], bool]:
        """A full detection, or, between full ones, only the tracked faces refined.

        The whole-image search (MTCNN's pyramid) is most of a frame's cost; faces seen
        in the previous frame are followed in between by refining their boxes. New
        faces are found at the next full detection, at most ``full_detection_interval``
        frames later. A gap in time (tracking cannot bridge it) or a tracked face that
        refinement loses (it left, or the scene cut) triggers a full detection at once.
        With ``async_detection`` the periodic search runs in the background instead
        (BackgroundSearch) and this frame is refined only; a loss still searches at once.
        """
        cfg = self.config
        with self._lock:
            previous = self._last_stamp
            self._last_stamp = stamp
            recent = [t.box for t in self.tracker.tracks.values() if t.last_seen == previous]
            due = self._frames_since_full + 1 >= cfg.full_detection_interval
            full = (not cfg.tracking or not recent or previous is None
                    or not 0.0 <= stamp - previous <= cfg.max_refine_gap
                    or (due and not cfg.async_detection))
            self._frames_since_full = 0 if full else self._frames_since_full + 1
        if not full:
            refined = self.detector.refine(rgb, np.stack(recent))
            if cfg.async_detection and len(refined) >= len(recent):
                detections = self.search.merge(rgb, refined)
                early = not due and self._may_search_early() and self.search.changed(rgb, refined)
                if (due or early) and self.search.start(rgb, refined, early):
                    with self._lock:
                        self._frames_since_full = 0
                return detections, False
            if len(refined) >= len(recent):
                return refined, False
            with self._lock:
                self._frames_since_full = 0
        detections = self.detector.detect(rgb)
        if cfg.async_detection:
            self.search.searched(rgb, detections)
        return detections, True

    def _may_search_early(self) -> bool:
        """An early search (a change outside the tracked faces) may start: 2 images or more
        after the last search began, and that one was not early itself. So a scene that
        never stops changing (a moving camera) costs at most 2 searches per interval."""
        return (not self.search.busy and self._frames_since_full >= 2
                and not self.search.last_was_early)

    def embed_largest_face(self, image: np.ndarray, color: str = "rgb",
                           require_single: bool = False) -> tuple[Detection, np.ndarray]:
        """Detect, then embed the largest face (enrolment). Raises ValueError if none."""
        if self.embedder is None:
            raise ValueError("recognition is disabled: no embedding model")
        rgb = self.to_rgb(image, color)
        detections = self.detector.detect(rgb)
        if not detections:
            raise ValueError("no face found")
        if require_single and len(detections) > 1:
            raise ValueError(f"{len(detections)} faces found, expected exactly one")
        largest = max(detections, key=lambda d: d.area)
        return largest, self.embedder.embed(rgb, largest.box[None, :])[0]

    def process(self, image: np.ndarray, color: str = "rgb",
                stamp: float | None = None) -> list[FaceResult]:
        """All faces in one frame. ``stamp`` (seconds) drives track ageing.

        With ``idle_detection_rate`` set, an image seen while nobody is tracked may not be
        searched (IdleGate): it gives [] and ``last_times.extra["searched"]`` is False.
        """
        result = process_frames([(self, image, color, stamp)])[0]
        if isinstance(result, Exception):
            raise result
        return result

    def _begin(self, image: np.ndarray, color: str, stamp: float | None) -> Frame:
        """Idle gate and detection: the part of a frame that is this stream's alone."""
        cfg = self.config
        t0 = time.perf_counter()
        rgb = self.to_rgb(image, color)
        stamp = time.monotonic() if stamp is None else stamp
        with self._lock:
            tracking = bool(self.tracker.tracks) if cfg.tracking else self._faces_seen
            searched = self.idle.decide(rgb, stamp, tracking).search
        if not searched:  # nobody there and nothing new: the empty answer costs nothing
            return Frame(rgb, stamp, t0, [], StageTimes(
                extra={"full_detection": False, "searched": False}))
        detections, full = self._detect(rgb, stamp)
        self._faces_seen = bool(detections)
        times = StageTimes(faces=len(detections),
                           extra={"full_detection": full, "searched": True})
        times.detect = (time.perf_counter() - t0) * 1e3
        return Frame(rgb, stamp, t0, [FaceResult(detection=d) for d in detections], times)

    def _plan(self, frame: Frame) -> None:
        """Track the frame's faces and choose which to embed now. Called with
        ``self._lock`` held, which stays held until the frame's names and emotions are
        set: votes cast with one gallery never land in tracks just reset for another."""
        frame.gallery = self._gallery
        if self.config.tracking:
            frame.tracks = self.tracker.update([r.detection for r in frame.results],
                                               frame.stamp)
        frame.thumbs = self._split_changed_tracks(frame.rgb, frame.results, frame.tracks)
        if self.embedder is not None and frame.results:
            frame.to_embed = self._to_embed(frame)

    def _end(self, frame: Frame) -> list[FaceResult]:
        frame.times.total = (time.perf_counter() - frame.t0) * 1e3
        self.last_times = frame.times
        return frame.results

    def _split_changed_tracks(self, rgb: np.ndarray, results: list[FaceResult],
                              tracks: list) -> list[np.ndarray]:
        """Give a track a new id when its face looks like someone else now.

        Box overlap alone keeps the id across a cut or when one person steps in
        front of another; a tiny grey patch compared with the track's reference
        catches that. The reference is refreshed at each embedding (or every frame
        without recognition), so slow changes of pose and light do not split tracks.
        """
        cfg = self.config
        thumbs = [thumbnail(rgb, r.box) for r in results] if tracks else []
        for result, track, thumb in zip(results, tracks, thumbs, strict=False):
            if (track.ref_thumb is not None
                    and float(thumb @ track.ref_thumb) < cfg.appearance_change):
                self.tracker.restart(track)
            result.track_id = track.track_id
            if self.embedder is None:
                track.ref_thumb = thumb
        return thumbs

    def _to_embed(self, frame: Frame) -> list[int]:
        """Indices of the faces to embed in this frame: new tracks and tracks without a
        name now; periodic re-embeddings too, unless they go to the background."""
        cfg = self.config
        results, tracks = frame.results, frame.tracks
        if not tracks:
            return list(range(len(results)))
        todo, later = [], []
        for i, (r, t) in enumerate(zip(results, tracks, strict=True)):
            t.frames_since_embedding += 1
            if t.frames == 1 or not t.votes:
                todo.append(i)
            elif (t.frames_since_embedding >= cfg.reembed_interval
                    or r.detection.area > 1.5 * t.embedded_area):
                (later if cfg.async_reembed else todo).append(i)
        if later:
            self._reembed_in_background(frame.rgb, results, tracks, frame.thumbs,
                                        frame.gallery, later, frame.times)
        return todo

    def _name(self, frame: Frame, embeddings: np.ndarray) -> None:
        """Match the embeddings of ``frame.to_embed`` and vote each face's name."""
        cfg = self.config
        results, tracks, gallery = frame.results, frame.tracks, frame.gallery
        frame.times.embedded = len(frame.to_embed)
        matches = (gallery.match(embeddings, cfg.recognition_threshold,
                                 cfg.recognition_margin)
                   if gallery is not None and len(gallery) and len(embeddings) else None)
        for k, i in enumerate(frame.to_embed):
            results[i].embedding = embeddings[k]
            name, sim = (matches[k].name, matches[k].similarity) if matches else (UNKNOWN, 0.0)
            results[i].name, results[i].similarity = name, sim
            if tracks:
                tracks[i].votes.append((name, sim))
                tracks[i].frames_since_embedding = 0
                tracks[i].embedded_area = results[i].detection.area
                tracks[i].ref_thumb = frame.thumbs[i]
        for result, track in zip(results, tracks, strict=False):
            result.name, result.similarity = track.vote()

    def _reembed_in_background(self, rgb: np.ndarray, results: list[FaceResult],
                               tracks: list, thumbs: list[np.ndarray],
                               gallery: Gallery | None, todo: list[int],
                               times: StageTimes) -> None:
        """Start re-embedding these tracks unless a re-embedding is still running (then
        they are due again on the next frame). Called with ``self._lock`` held."""
        if self._reembed_job is not None and not self._reembed_job.done():
            return
        if self._reembed_pool is None:
            self._reembed_pool = ThreadPoolExecutor(1, thread_name_prefix="reembed")
        boxes = np.stack([results[i].box for i in todo])
        jobs = [(tracks[i], tracks[i].track_id, thumbs[i], results[i].detection.area)
                for i in todo]
        times.extra["reembed_background"] = len(todo)
        self._reembed_job = self._reembed_pool.submit(self._reembed, rgb, boxes, jobs,
                                                      gallery)

    def _reembed(self, rgb: np.ndarray, boxes: np.ndarray, jobs: list,
                 gallery: Gallery | None) -> None:
        cfg = self.config
        try:
            embeddings = self.embedder.embed(rgb, boxes)
            matches = (gallery.match(embeddings, cfg.recognition_threshold,
                                     cfg.recognition_margin)
                       if gallery is not None and len(gallery) else None)
        except Exception:
            self.reembed_errors += 1
            return
        with self._lock:
            if self._gallery is not gallery:  # swapped meanwhile: these votes are stale
                return
            for k, (track, track_id, thumb, area) in enumerate(jobs):
                if track.track_id != track_id or self.tracker.tracks.get(track_id) is not track:
                    continue  # ended, or split into a new track (restart), meanwhile
                track.votes.append((matches[k].name, matches[k].similarity)
                                   if matches else (UNKNOWN, 0.0))
                track.frames_since_embedding = 0
                track.embedded_area = area
                track.ref_thumb = thumb

    def _feel(self, frame: Frame, probs: np.ndarray) -> None:
        """Set each face's emotion from its probabilities, smoothed along its track."""
        labels = tuple(self.classifier.labels)
        for i, result in enumerate(frame.results):
            raw = probs[i].astype(np.float32)
            smooth = (frame.tracks[i].smooth_emotion(raw, self.config.emotion_smoothing)
                      if frame.tracks else raw)
            best = int(np.argmax(smooth))
            result.emotion_labels = labels
            result.emotion_scores_raw = raw
            result.emotion_scores = smooth
            result.emotion = labels[best]
            result.emotion_score = float(smooth[best])
