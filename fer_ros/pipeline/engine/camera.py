"""CameraState: what the pipeline remembers of one camera between its images.

Its tracks and track ids, idle gate, background search, re-embedding thread, gallery and
stage times; never the models, which every camera shares (engine/models.py). The batch
(engine/batch.py) calls its public steps in order for each image:

1. ``begin``: idle gate and detection (this camera's own work);
2. ``plan``: track the faces and choose which to embed now;
3. the shared models run on the faces of every camera at once (batch.py);
4. ``apply``: names (matched and voted along tracks) and emotions (smoothed);
5. ``finish``: the stage times.

One thread at a time feeds a camera its images; ``configure``, ``set_gallery`` and the
background threads may come from others (``self._lock`` guards the state they share).
"""

from __future__ import annotations

import math
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fer_ros.pipeline.config import RUNTIME_SETTINGS, PipelineConfig
from fer_ros.pipeline.detection.idle import IdleGate
from fer_ros.pipeline.detection.search import BackgroundSearch
from fer_ros.pipeline.engine.models import PipelineModels
from fer_ros.pipeline.images import face_patch, to_rgb
from fer_ros.pipeline.recognition.gallery import Gallery, Match
from fer_ros.pipeline.tracking.tracker import FaceTracker, Track
from fer_ros.pipeline.types import UNKNOWN, Detection, FaceResult, StageTimes


@dataclass
class FrameJob:
    """One image of one camera on its way through the steps (see the module docstring)."""

    rgb: np.ndarray
    stamp: float
    t0: float  # perf_counter at the start
    results: list[FaceResult]
    times: StageTimes
    gallery: Gallery | None = None
    tracks: list[Track] = field(default_factory=list)
    patches: list[np.ndarray] = field(default_factory=list)
    to_embed: list[int] = field(default_factory=list)
    voted: list[tuple[str, float]] = field(default_factory=list)  # each track's name at plan()

    @property
    def embed_boxes(self) -> np.ndarray:
        return np.array([self.results[i].box for i in self.to_embed], np.float32).reshape(-1, 4)

    @property
    def embed_landmarks(self) -> np.ndarray:
        """(N, 5, 2) landmarks of the faces to embed (NaN where the detector gave none)."""
        return np.array([_landmarks_of(self.results[i].detection) for i in self.to_embed],
                        np.float32).reshape(-1, 5, 2)

    @property
    def boxes(self) -> np.ndarray:
        return np.array([r.box for r in self.results], np.float32).reshape(-1, 4)


class CameraState:
    def __init__(self, config: PipelineConfig, models: PipelineModels,
                 gallery: Gallery | None = None) -> None:
        self.config = config
        self.models = models
        self._lock = threading.Lock()
        self._gallery = gallery
        self.tracker = FaceTracker(config.iou_threshold, config.track_max_age,
                                   config.vote_window, config.track_reid_window)
        self.idle = IdleGate(config.idle_detection_rate, config.idle_change_threshold,
                             config.idle_refresh_period)
        self.search = BackgroundSearch(models.detector, config.search_change_threshold)
        self.last_times = StageTimes()
        self.reembed_errors = 0
        self._frames_since_full = 0
        self._last_stamp: float | None = None  # of the last image detected in
        self._last_image: float | None = None  # of the last image, searched or not
        self._faces_seen = False  # the last searched image had faces (for tracking off)
        self._searching_idle = False  # nobody tracked: searches run in the background
        self._idle_reason = ""  # why the idle gate let the last image be searched
        self._reembed_pool: ThreadPoolExecutor | None = None  # made on first use
        self._reembed_job: Future | None = None

    # ------------------------------------------------------------------ settings
    def configure(self, **changes: Any) -> None:
        """Change RUNTIME_SETTINGS; they apply from the next image on."""
        fixed = set(changes) - RUNTIME_SETTINGS
        if fixed:
            raise ValueError(f"{', '.join(sorted(fixed))} cannot change while running: "
                             f"they choose the models (make a new FacePipeline)")
        with self._lock:
            for name, value in changes.items():
                setattr(self.config, name, value)
            cfg = self.config
            self.tracker.max_age = cfg.track_max_age
            self.tracker.reid_window = cfg.track_reid_window
            self.models.detector.min_score = cfg.detection_min_score
            self.idle.configure(cfg.idle_detection_rate, cfg.idle_change_threshold,
                                cfg.idle_refresh_period)
            self.search.change_threshold = cfg.search_change_threshold

    @property
    def searches_skipped(self) -> int:
        """Images the idle gate answered without a search."""
        return self.idle.skipped

    @property
    def gallery(self) -> Gallery | None:
        return self._gallery

    def set_gallery(self, gallery: Gallery | None) -> None:
        """Swap the gallery in one assignment. Not checked here: FaceStreams.set_gallery
        checks it against the model and builds its index first, for every camera."""
        with self._lock:
            self._gallery = gallery
            # Names voted under the old gallery may be wrong now: vote afresh.
            for track in (*self.tracker.tracks.values(), *self.tracker.ended.values()):
                track.votes.clear()
                track.frames_since_embedding = 1 << 30

    def close(self) -> None:
        """End the background search and re-embedding threads."""
        self.search.close()
        if self._reembed_pool is not None:
            self._reembed_pool.shutdown(wait=True, cancel_futures=True)
            self._reembed_pool, self._reembed_job = None, None

    # ------------------------------------------------------------------ 1. begin
    def begin(self, image: np.ndarray, color: str, stamp: float | None) -> FrameJob:
        """Idle gate and detection: the part of an image that is this camera's alone."""
        cfg = self.config
        t0 = time.perf_counter()
        rgb = to_rgb(image, color)
        stamp = time.monotonic() if stamp is None else stamp
        with self._lock:
            # Time since the previous image, searched or not: the camera's period.
            last = self._last_image
            # Time running backwards (a bag restarted) is a gap tracking cannot bridge.
            period = None if last is None else stamp - last if stamp >= last else math.inf
            self._last_image = stamp
            tracking = bool(self.tracker.tracks) if cfg.tracking else self._faces_seen
            # A search of nobody-in-view running in the background (_detect) stands for
            # the images that arrive meanwhile; its faces join the first one after it.
            pending = self._searching_idle and self.search.busy
            decision = None if pending else self.idle.decide(rgb, stamp, tracking)
            searched = decision is not None and decision.search
            if decision is not None:
                self._idle_reason = decision.reason
        if not searched and not (self._searching_idle and self.search.ready):
            # Nobody there and nothing new: the empty answer costs nothing.
            return FrameJob(rgb, stamp, t0, [], StageTimes(searched=False))
        detections, full = self._detect(rgb, stamp, searched, period)
        self._faces_seen = bool(detections)
        times = StageTimes(faces=len(detections), full_detection=full,
                           detect=(time.perf_counter() - t0) * 1e3)
        return FrameJob(rgb, stamp, t0, [FaceResult(detection=d) for d in detections], times)

    def _detect(self, rgb: np.ndarray, stamp: float, searched: bool = True,
                period: float | None = None) -> tuple[list[Detection], bool]:
        """A full detection, or, between full ones, only the tracked faces refined.

        The whole-image search (MTCNN's pyramid) is most of an image's cost; faces seen
        in the previous image are followed in between by refining their boxes. New
        faces are found at the next full detection, at most ``full_detection_interval``
        images later. A gap in time (tracking cannot bridge it) or a tracked face that
        refinement loses (it left, or the scene cut) triggers a full detection at once.
        With ``async_detection`` the periodic search runs in the background instead
        (BackgroundSearch) and this image is refined only. In images wider than
        ``blocking_search_max_width`` that come faster than the last search took (720p
        and above at a camera's rate: a search there would drop the images arriving
        meanwhile) so do the search a loss starts at once (the tracks refined still
        answer this image) and, with nobody tracked, the one the idle gate asks for
        (``searched``; the image is answered with the faces of a search finished
        meanwhile). ``period``: seconds since the previous image (None: the first; inf:
        time ran backwards).
        """
        cfg, detector = self.config, self.models.detector
        with self._lock:
            previous = self._last_stamp
            self._last_stamp = stamp
            recent = [t.box for t in self.tracker.tracks.values() if t.last_seen == previous]
            due = self._frames_since_full + 1 >= cfg.full_detection_interval
            full = (not cfg.tracking or not recent or previous is None
                    or not 0.0 <= stamp - previous <= cfg.max_refine_gap
                    or (due and not cfg.async_detection))
            self._frames_since_full = 0 if full else self._frames_since_full + 1
            # Images too wide to wait for a search (blocking_search_max_width) that come
            # faster than the last search took: with nobody tracked, or a face lost, the
            # search runs in the background too. Images further apart (photos sent one by
            # one, a slow camera) still wait and are answered with their faces.
            background = (cfg.async_detection and period is not None
                          and rgb.shape[1] > cfg.blocking_search_max_width
                          and period < self.search.last_seconds)
            self._searching_idle = background and cfg.tracking and not recent
        if self._searching_idle:
            detections = self.search.merge(rgb, [])
            if searched and not detections:
                self.search.start(rgb, [], enlarge=self._small_faces(False))
            return detections, False
        if not full:
            refined = detector.refine(rgb, np.stack(recent))
            lost = len(refined) < len(recent)  # gone, or moved faster than refined
            if cfg.async_detection and (background or not lost):
                detections = self.search.merge(rgb, refined)
                early = lost or (not due and self.search.may_start_early(
                    self._frames_since_full) and self.search.changed(rgb, refined))
                if (due or early) and self.search.start_taking_turns(rgb, refined, early):
                    with self._lock:
                        self._frames_since_full = 0
                return detections, False
            if not lost:
                return refined, False
            with self._lock:
                self._frames_since_full = 0
        started = time.perf_counter()
        # Images further apart than tracking bridges (photos sent one by one): each is a
        # photo of its own (not the gap since the last search: an idle camera skips images).
        apart = period is not None and period > cfg.max_refine_gap
        detections = detector.detect(rgb, enlarge=self._small_faces(bool(recent), apart))
        self.search.last_seconds = time.perf_counter() - started
        if cfg.async_detection:
            self.search.searched(rgb, detections)
        return detections, True

    def _small_faces(self, following: bool, apart: bool = False) -> bool:
        """Whether a whole-image search looks for the smallest faces too (YuNet on an
        enlarged copy, FaceDetector.detect's ``enlarge``; otherwise it costs about two
        thirds and still finds most faces of 20 px). ``following``: faces of the previous
        image are tracked in this one; ``apart``: the image is too far from the previous
        one for tracking to bridge (searched as a photo of its own).

        * every search without tracking or of an image apart (a photo gets one chance);
        * the periodic background search while following faces takes turns
          (BackgroundSearch.start_taking_turns);
        * with nobody followed, the idle gate's first and refresh searches (with the gate
          off every image is searched, as it is);
        * not the searches in the image's own time while following faces (a face lost, or
          every image with ``async_detection`` off: the same search each time, so the boxes
          of the faces followed do not change with the turn), nor those of a changing empty
          scene or of faces just lost (every image is searched until their tracks end),
          which come often.
        """
        if not self.config.tracking or apart:
            return True
        if following:
            return False
        return self._idle_reason in ("first", "refresh")

    # ------------------------------------------------------------------ 2. plan
    def plan(self, job: FrameJob) -> None:
        """Track the image's faces and choose which to embed now (``job.to_embed``)."""
        with self._lock:
            job.gallery = self._gallery
            if self.config.tracking:
                job.tracks = self.tracker.update([r.detection for r in job.results], job.stamp)
            job.patches = self._split_changed_tracks(job)
            if self.models.embedder is not None and job.results:
                job.to_embed = self._to_embed(job)
            job.voted = [track.vote() for track in job.tracks]

    def _split_changed_tracks(self, job: FrameJob) -> list[np.ndarray]:
        """Suspect (or, without recognition, split) a track whose face looks different.

        Box overlap alone keeps the id across a cut or when one person steps in
        front of another; a tiny grey patch compared with the track's reference
        notices the change. But a hand over the mouth, tears or a turn change the patch
        as much, so with recognition the track is only suspected here: its face is
        embedded in this image and FaceTracker.continue_identity keeps or restarts it.
        The reference is refreshed at each embedding (or every image without
        recognition), so slow changes of pose and light are not even suspected.
        """
        patches = [face_patch(job.rgb, r.box) for r in job.results] if job.tracks else []
        recognising = self.models.embedder is not None
        for result, track, patch in zip(job.results, job.tracks, patches, strict=False):
            if (track.ref_thumb is not None
                    and float(patch @ track.ref_thumb) < self.config.appearance_change):
                if recognising and track.embeddings:
                    track.suspect = True
                else:
                    self.tracker.restart(track)
            result.track_id = track.track_id
            if not recognising:
                track.ref_thumb = patch
        return patches

    def _to_embed(self, job: FrameJob) -> list[int]:
        """Indices of the faces to embed in this image: new tracks and tracks without a
        name now; periodic re-embeddings too, unless they go to the background."""
        cfg = self.config
        if not job.tracks:
            return list(range(len(job.results)))
        todo, later = [], []
        for i, (result, track) in enumerate(zip(job.results, job.tracks, strict=True)):
            track.frames_since_embedding += 1
            if track.frames == 1 or not track.votes or track.suspect:
                todo.append(i)
            elif (track.frames_since_embedding >= cfg.reembed_interval
                    or result.detection.area > 1.5 * track.embedded_area):
                (later if cfg.async_reembed else todo).append(i)
        if later:
            self._reembed_in_background(job, later)
        return todo

    # ------------------------------------------------------------------ 4. apply
    def apply(self, job: FrameJob, embeddings: np.ndarray | None,
              probabilities: np.ndarray | None) -> None:
        """Names from the embeddings of ``job.to_embed`` and emotions from the
        probabilities of every face (None: that model is off)."""
        matches = self._match(embeddings, job.gallery) if embeddings is not None else None
        with self._lock:
            if embeddings is not None:
                self._name(job, embeddings, matches)
            if probabilities is not None:
                self._feel(job, probabilities)

    def _match(self, embeddings: np.ndarray, gallery: Gallery | None) -> list[Match] | None:
        if gallery is None or not len(gallery) or not len(embeddings):
            return None
        return gallery.match(embeddings, *self.models.decision(self.config))

    def _name(self, job: FrameJob, embeddings: np.ndarray, matches: list[Match] | None) -> None:
        """Each embedded face's match, voted along its track."""
        job.times.embedded = len(job.to_embed)
        # A gallery swapped since plan() cleared the tracks' votes: this image's matches
        # answer for this image only and are not cast into them.
        current = job.gallery is self._gallery
        for k, i in enumerate(job.to_embed):
            result = job.results[i]
            result.embedding = embeddings[k]
            result.name, result.similarity = _vote_of(matches, k)
            if job.tracks:
                self.tracker.continue_identity(job.tracks[i], embeddings[k],
                                               self.models.same_person(self.config))
                result.track_id = job.tracks[i].track_id
                if current:
                    _record_embedding(job.tracks[i], result.name, result.similarity,
                                      job.patches[i], result.detection.area, embeddings[k])
        embedded = set(job.to_embed)
        for i, (result, track) in enumerate(zip(job.results, job.tracks, strict=False)):
            if current:
                result.name, result.similarity = track.vote()
            elif i not in embedded:  # the swap cleared its votes: the name it had
                result.name, result.similarity = job.voted[i]

    def _feel(self, job: FrameJob, probabilities: np.ndarray) -> None:
        """Each face's emotion from its probabilities, smoothed along its track."""
        labels = self.models.emotion_labels
        for i, result in enumerate(job.results):
            raw = probabilities[i].astype(np.float32)
            smooth = (job.tracks[i].smooth_emotion(raw, self.config.emotion_smoothing)
                      if job.tracks else raw)
            best = int(np.argmax(smooth))
            result.emotion_labels = labels
            result.emotion_scores_raw = raw
            result.emotion_scores = smooth
            result.emotion = labels[best]
            result.emotion_score = float(smooth[best])

    # ------------------------------------------------------------------ 5. finish
    def finish(self, job: FrameJob) -> list[FaceResult]:
        job.times.total = (time.perf_counter() - job.t0) * 1e3
        self.last_times = job.times
        return job.results

    # ------------------------------------------------------------------ background
    def _reembed_in_background(self, job: FrameJob, todo: list[int]) -> None:
        """Start re-embedding these tracks unless a re-embedding is still running (then
        they are due again on the next image). Called with ``self._lock`` held."""
        if self._reembed_job is not None and not self._reembed_job.done():
            return
        if self._reembed_pool is None:
            self._reembed_pool = ThreadPoolExecutor(1, thread_name_prefix="reembed")
        boxes = np.stack([job.results[i].box for i in todo])
        landmarks = np.stack([_landmarks_of(job.results[i].detection) for i in todo])
        faces = [(job.tracks[i], job.tracks[i].track_id, job.patches[i],
                  job.results[i].detection.area) for i in todo]
        job.times.reembed_background = len(todo)
        self._reembed_job = self._reembed_pool.submit(self._reembed, job.rgb, boxes, landmarks,
                                                      faces, job.gallery)

    def _reembed(self, rgb: np.ndarray, boxes: np.ndarray, landmarks: np.ndarray,
                 faces: list, gallery: Gallery | None) -> None:
        embedder = self.models.embedder
        try:
            embeddings = embedder.run(embedder.prepare(rgb, boxes, landmarks))
            matches = self._match(embeddings, gallery)
        except Exception:
            self.reembed_errors += 1
            return
        with self._lock:
            if self._gallery is not gallery:  # swapped meanwhile: these votes are stale
                return
            for k, (track, track_id, patch, area) in enumerate(faces):
                if track.track_id != track_id or self.tracker.tracks.get(track_id) is not track:
                    continue  # ended, or split into a new track (restart), meanwhile
                name, similarity = _vote_of(matches, k)
                _record_embedding(track, name, similarity, patch, area, embeddings[k])


def _landmarks_of(detection: Detection) -> np.ndarray:
    """A detection's (5, 2) landmarks, NaN where it has none (the embedder then uses
    its box)."""
    if detection.landmarks is None:
        return np.full((5, 2), np.nan, np.float32)
    return np.asarray(detection.landmarks, np.float32).reshape(5, 2)


def _vote_of(matches: list[Match] | None, k: int) -> tuple[str, float]:
    return (matches[k].name, matches[k].similarity) if matches else (UNKNOWN, 0.0)


def _record_embedding(track: Track, name: str, similarity: float, patch: np.ndarray,
                      area: float, embedding: np.ndarray) -> None:
    """A track was embedded: its vote, its view for FaceTracker.continue_identity, and the
    view its next re-embedding is judged by."""
    track.votes.append((name, similarity))
    track.remember(embedding)
    track.frames_since_embedding = 0
    track.embedded_area = area
    track.ref_thumb = patch
