"""The whole-image face search on a worker thread, off the frame path.

With faces tracked, a frame only needs its tracked faces refined (O-Net on each box,
about a millisecond a face); the whole-image search (MTCNN's pyramid, about 100 ms with
five faces on one core) is there only to find faces that are new. Run on the frame path
it delays every ``full_detection_interval``-th frame by its whole time and the frames
that arrive meanwhile are dropped. Here it runs on a worker thread on a copy of a recent
frame, told the faces already tracked there (R- and O-Net then skip them, most of their
work), and when its result is ready the faces it found that no track covers are refined
on the current frame (so their boxes are where the faces are now) and join the tracks,
to be embedded and named in that frame like any new face.

The search runs every ``full_detection_interval`` images, and also early: when the image
differs from the last searched one, outside the tracked faces, by more than
``search_change_threshold`` grey levels in a cell of a tiny grey thumbnail (32 cells
across), beyond what a drift of up to one cell explains. Someone stepping in beside tracked
people is then searched for in the first image that shows them, not up to an interval
later. Measured on the bench's bags: a newcomer moves a cell by 170 levels, the bags' drift
of about a pixel per image by up to 26 over two images (hence the node's default of 40),
and no early search ran in 150 images of the 3faces and 5faces bags.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from fer_ros.pipeline.detection.detector import FaceDetector
from fer_ros.pipeline.images import scene_thumbnail
from fer_ros.pipeline.types import Detection, iou_matrix

# A found face overlapping a tracked one by more than this is that face.
COVERED_IOU = 0.3
# A tracked face's box, grown by this share of its size on each side, is not looked at for
# changes (a head that turns or moves within it is no newcomer).
FACE_MARGIN = 0.3


class BackgroundSearch:
    """One whole-image search at a time on a worker thread; see the module docstring."""

    def __init__(self, detector: FaceDetector, change_threshold: float) -> None:
        self.detector = detector
        self.change_threshold = change_threshold
        self._pool: ThreadPoolExecutor | None = None  # made on first use
        self._job: Future | None = None
        # Thumbnail of the image last searched and the boxes of the faces known in it.
        self._reference: tuple[np.ndarray, list[np.ndarray]] | None = None
        self.last_was_early = False
        self.errors = 0
        self.merged = 0  # faces that joined the tracks from a background search
        self.early = 0  # searches started by a change rather than by the interval
        # Seconds the last whole-image search took, here or in an image's own time.
        self.last_seconds = 0.0
        self._enlarge_turn = True  # the next start_taking_turns enlarges

    @property
    def busy(self) -> bool:
        return self._job is not None and not self._job.done()

    @property
    def ready(self) -> bool:
        """A search has finished and ``merge`` has not taken its faces yet."""
        return self._job is not None and self._job.done()

    def start_taking_turns(self, rgb: np.ndarray, tracked: list[Detection],
                           early: bool = False) -> bool:
        """``start`` for the periodic search while faces are followed: every other one
        started looks for the smallest faces too (``enlarge``). Someone far away moves
        slowly and is found a search later; the others cost about two thirds."""
        started = self.start(rgb, tracked, early, enlarge=self._enlarge_turn)
        if started:
            self._enlarge_turn = not self._enlarge_turn
        return started

    def start(self, rgb: np.ndarray, tracked: list[Detection], early: bool = False,
              enlarge: bool = False) -> bool:
        """Search ``rgb`` for faces other than ``tracked`` in the background, unless a
        search runs; True when started. ``early``: started by a change (``changed``);
        ``enlarge``: FaceDetector.detect's."""
        if self._job is not None:  # running, or finished and not merged yet
            return False
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="face-search")
        known = np.stack([d.box for d in tracked]) if tracked else None
        self._job = self._pool.submit(self._detect, rgb.copy(), known, enlarge)
        self.searched(rgb, tracked)
        self.last_was_early = early
        self.early += early
        return True

    def _detect(self, rgb: np.ndarray, known: np.ndarray | None,
                enlarge: bool) -> list[Detection]:
        started = time.perf_counter()
        found = self.detector.detect(rgb, known, enlarge)
        self.last_seconds = time.perf_counter() - started
        return found

    def searched(self, rgb: np.ndarray, faces: list[Detection]) -> None:
        """``rgb`` is searched (here or in the frame's own time), ``faces`` in it known:
        the reference for ``changed``."""
        if self.change_threshold > 0:
            self._reference = scene_thumbnail(rgb), [d.box for d in faces]
        self.last_was_early = False

    def may_start_early(self, images_since_search: int) -> bool:
        """An early search (a change outside the tracked faces) may start: 2 images or more
        after the last search began, and that one was not early itself. So a scene that
        never stops changing (a moving camera) costs at most 2 searches per interval."""
        return not self.busy and images_since_search >= 2 and not self.last_was_early

    def changed(self, rgb: np.ndarray, tracked: list[Detection]) -> bool:
        """Whether ``rgb`` differs from the image last searched, outside the faces tracked
        in either (grown by FACE_MARGIN), by more than ``change_threshold`` grey levels in
        some thumbnail cell. False when off (threshold 0) or before the first search."""
        if self.change_threshold <= 0 or self._reference is None:
            return False
        reference, reference_boxes = self._reference
        thumb = scene_thumbnail(rgb)
        if thumb.shape != reference.shape:
            return True
        # How far each cell is outside the range of the reference's cells around it: a
        # scene that drifts, or a camera that shakes, by up to a cell (20 pixels at
        # 640x480) mixes neighbouring cells, which stays within their range.
        h, w = thumb.shape
        padded = np.pad(reference, 1, mode="edge")
        around = np.stack([padded[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)])
        diff = np.maximum(thumb - around.max(axis=0), around.min(axis=0) - thumb)
        diff[[0, -1], :] = diff[:, [0, -1]] = 0.0  # a moving camera's new edge, not a newcomer
        boxes = [d.box for d in tracked] + reference_boxes
        if boxes:
            grown = np.asarray(boxes, np.float64)
            size = grown[:, 2:] - grown[:, :2]
            grown = np.concatenate([grown[:, :2] - FACE_MARGIN * size,
                                    grown[:, 2:] + FACE_MARGIN * size], axis=1)
            cells = grown / np.tile([rgb.shape[1] / thumb.shape[1],
                                     rgb.shape[0] / thumb.shape[0]], 2)
            for x1, y1, x2, y2 in cells:
                diff[max(0, int(y1)):max(0, int(np.ceil(y2))),
                     max(0, int(x1)):max(0, int(np.ceil(x2)))] = 0.0
        return float(diff.max(initial=0.0)) > self.change_threshold

    def merge(self, rgb: np.ndarray, tracked: list[Detection]) -> list[Detection]:
        """``tracked`` plus the new faces of a finished search, refined on ``rgb``."""
        if self._job is None or not self._job.done():
            return tracked
        job, self._job = self._job, None
        try:
            found = job.result()
        except Exception:  # counted, shown in diagnostics; the next search may succeed
            self.errors += 1
            return tracked
        if not found:
            return tracked
        boxes = np.stack([d.box for d in found])
        if tracked:
            overlap = iou_matrix(boxes, np.stack([d.box for d in tracked])).max(axis=1)
            boxes = boxes[overlap <= COVERED_IOU]
        if not len(boxes):
            return tracked
        new = self.detector.refine(rgb, boxes)
        if tracked and new:  # refinement may move a box onto a tracked face
            overlap = iou_matrix(np.stack([d.box for d in new]),
                                 np.stack([d.box for d in tracked])).max(axis=1)
            new = [d for d, o in zip(new, overlap, strict=True) if o <= COVERED_IOU]
        self.merged += len(new)
        return tracked + new

    def close(self) -> None:
        """Let a running search finish and end the worker thread."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._pool, self._job = None, None
