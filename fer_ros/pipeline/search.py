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
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from fer_ros.pipeline.detector import FaceDetector
from fer_ros.pipeline.tracker import iou_matrix
from fer_ros.pipeline.types import Detection

# A found face overlapping a tracked one by more than this is that face.
COVERED_IOU = 0.3


class BackgroundSearch:
    """One whole-image search at a time on a worker thread; see the module docstring."""

    def __init__(self, detector: FaceDetector) -> None:
        self.detector = detector
        self._pool: ThreadPoolExecutor | None = None  # made on first use
        self._job: Future | None = None
        self.errors = 0
        self.merged = 0  # faces that joined the tracks from a background search

    @property
    def busy(self) -> bool:
        return self._job is not None and not self._job.done()

    def start(self, rgb: np.ndarray, tracked: list[Detection]) -> bool:
        """Search ``rgb`` for faces other than ``tracked`` in the background, unless a
        search runs; True when started."""
        if self._job is not None:  # running, or finished and not merged yet
            return False
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="face-search")
        known = np.stack([d.box for d in tracked]) if tracked else None
        self._job = self._pool.submit(self.detector.detect, rgb.copy(), known)
        return True

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
