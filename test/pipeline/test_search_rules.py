"""BackgroundSearch's rules on made-up images and a stand-in detector: when a change counts,
which found faces join the tracks, when an early search may start, what is counted.

test_search.py runs the real detector on real faces; here every number is exact.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from fer_ros.pipeline.detection.search import COVERED_IOU, BackgroundSearch
from fer_ros.pipeline.types import Detection

pytestmark = pytest.mark.pipeline

W, H = 640, 480  # 32 x 24 thumbnail cells of 20 px


def det(x1: float, y1: float, x2: float, y2: float) -> Detection:
    return Detection(np.array([x1, y1, x2, y2], np.float32), 0.99)


class StandIn:
    """Finds what it is told; refine returns the boxes it is given (or `refined`)."""

    def __init__(self, found: list[Detection] | None = None, error: Exception | None = None,
                 refined: list[Detection] | None = None) -> None:
        self.found, self.error, self.refined = found or [], error, refined
        self.release = threading.Event()
        self.release.set()
        self.finished = False
        self.known: list = []  # what each search was told is known already
        self.threads: list[str] = []

    def detect(self, rgb: np.ndarray, known: np.ndarray | None,
               enlarge: bool = True) -> list[Detection]:
        self.known.append(None if known is None else known.tolist())
        self.threads.append(threading.current_thread().name)
        self.release.wait(30)
        self.finished = True
        if self.error is not None:
            raise self.error
        return self.found

    def refine(self, rgb: np.ndarray, boxes: np.ndarray) -> list[Detection]:
        if self.refined is not None:
            return self.refined
        return [Detection(np.asarray(b, np.float32), 0.99) for b in boxes]


def grey(level: float = 100.0) -> np.ndarray:
    return np.full((H, W, 3), level, np.uint8)


def with_patch(image: np.ndarray, x: int, y: int, level: int, size: int = 20) -> np.ndarray:
    out = image.copy()
    out[y:y + size, x:x + size] = level
    return out


def searched(threshold: float, image: np.ndarray, faces=()) -> BackgroundSearch:
    search = BackgroundSearch(StandIn(), threshold)
    search.searched(image, list(faces))
    return search


def finished(search: BackgroundSearch, tracked: list[Detection]) -> list[Detection]:
    assert search.start(grey(), tracked)
    search._job.exception(30)  # done (failed or not)
    return search.merge(grey(), tracked)


# ------------------------------------------------------------------ changed
def test_no_change_is_seen_before_a_search_or_when_off() -> None:
    assert not BackgroundSearch(StandIn(), 40.0).changed(grey(200), [])
    off = searched(0.0, grey())
    assert not off.changed(grey(200), [])


def test_a_change_of_exactly_the_threshold_is_none() -> None:
    search = searched(40.0, grey(100))
    assert not search.changed(grey(140), [])
    assert search.changed(grey(141), [])
    small = searched(0.5, grey(100))  # a threshold under one grey level still works
    assert not small.changed(grey(100), []) and small.changed(grey(101), [])


def test_another_size_is_a_change() -> None:
    search = searched(40.0, grey())
    assert search.changed(np.full((480, 480, 3), 100, np.uint8), [])  # 32 x 32 cells


def test_the_outer_ring_of_cells_is_not_looked_at() -> None:
    """A moving camera shows a new edge: not a newcomer. One cell further in is."""
    search = searched(40.0, grey())
    for x, y in ((0, 200), (W - 20, 200), (300, 0), (300, H - 20)):
        assert not search.changed(with_patch(grey(), x, y, 250), []), (x, y)
    for x, y in ((20, 200), (W - 40, 200), (300, 20), (300, H - 40)):
        assert search.changed(with_patch(grey(), x, y, 250), []), (x, y)


def test_a_darker_patch_is_a_change_next_to_brighter_cells() -> None:
    """Measured against the cells around it, not against the darkest cell anywhere."""
    reference = with_patch(grey(100), 40, 40, 0)  # a dark corner far away
    search = searched(40.0, reference)
    assert search.changed(with_patch(reference, 300, 200, 50), [])


def test_a_drift_of_one_cell_is_no_change() -> None:
    reference = with_patch(grey(100), 300, 200, 250)
    search = searched(40.0, reference)
    assert not search.changed(with_patch(grey(100), 320, 220, 250), [])
    assert search.changed(with_patch(grey(100), 360, 260, 250), [])


@pytest.mark.parametrize("where", ["tracked", "reference"])
def test_changes_in_and_around_known_faces_do_not_count(where: str) -> None:
    """A face box of 60 px grows by 30% (18 px) on each side; changes there are the
    face itself (a turn, a nod). The box may be tracked now or known when searched."""
    face = det(200, 200, 260, 260)
    search = searched(40.0, grey(), [face] if where == "reference" else [])
    tracked = [face] if where == "tracked" else []
    # Cell x 9 (180-200 px) is in the grown box, not in the box itself.
    assert not search.changed(with_patch(grey(), 180, 220, 250), tracked)
    # Cell x 14 (280-300 px) and row 14 (280-300 px) are beyond it.
    assert search.changed(with_patch(grey(), 280, 220, 250), tracked)
    assert search.changed(with_patch(grey(), 220, 280, 250), tracked)
    # Where the face was, nothing counts, not even a small threshold's worth.
    small = searched(0.5, grey(), [face] if where == "reference" else [])
    assert not small.changed(with_patch(grey(), 220, 220, 250), tracked)


def test_the_margin_follows_each_side_of_a_tall_face() -> None:
    """A 60 x 100 px face at (110, 210) grows by 18 px left and right, 30 px up and down:
    columns 4-9 and rows 9-16 of the 20-px cells are its own."""
    face = det(110, 210, 170, 310)
    search = searched(40.0, grey())
    assert not search.changed(with_patch(grey(), 80, 250, 250), [face])  # column 4
    assert not search.changed(with_patch(grey(), 180, 250, 250), [face])  # column 9
    assert search.changed(with_patch(grey(), 200, 250, 250), [face])  # column 10
    assert not search.changed(with_patch(grey(), 130, 180, 250), [face])  # row 9
    assert not search.changed(with_patch(grey(), 130, 320, 250), [face])  # row 16
    assert search.changed(with_patch(grey(), 130, 340, 250), [face])  # row 17


def test_a_face_low_in_a_wide_image_is_placed_by_rows() -> None:
    """Boxes map to cells by width / columns and height / rows (not one for both)."""
    face = det(300, 400, 340, 440)
    search = searched(40.0, grey(), [face])
    assert not search.changed(with_patch(grey(), 300, 400, 250, size=40), [])


# ------------------------------------------------------------------ merge
def test_found_faces_join_unless_a_track_covers_them() -> None:
    tracked = [det(0, 0, 10, 10)]
    covered = det(0, 0, 3.5, 10)  # IoU 0.35
    edge = det(0, 0, 3, 10)  # IoU 0.3 exactly: still joins
    new = det(100, 100, 150, 150)
    search = BackgroundSearch(StandIn([covered, new, edge]), 0.0)
    merged = finished(search, tracked)
    assert [d.box.tolist() for d in merged] == [tracked[0].box.tolist(), new.box.tolist(),
                                                edge.box.tolist()]
    assert search.merged == 2
    assert COVERED_IOU == 0.3


def test_with_nothing_tracked_every_found_face_joins_and_counts_add_up() -> None:
    faces = [det(0, 0, 50, 50), det(100, 0, 150, 50)]
    search = BackgroundSearch(StandIn(faces), 0.0)
    assert search.merged == 0
    assert len(finished(search, [])) == 2 and search.merged == 2
    assert len(finished(search, [])) == 2 and search.merged == 4


def test_a_face_refined_onto_a_track_does_not_join() -> None:
    tracked = [det(0, 0, 10, 10)]
    onto = det(0, 0, 9, 10)  # refinement moved it onto the tracked face
    kept = det(0, 0, 3, 10)  # IoU 0.3 exactly
    search = BackgroundSearch(StandIn([det(100, 100, 150, 150)], refined=[onto, kept]), 0.0)
    assert [d.box.tolist() for d in finished(search, tracked)[1:]] == [kept.box.tolist()]
    assert search.merged == 1


def test_a_failed_search_is_counted_and_changes_nothing() -> None:
    search = BackgroundSearch(StandIn(error=RuntimeError("broken")), 0.0)
    tracked = [det(0, 0, 10, 10)]
    assert finished(search, tracked) == tracked and search.errors == 1
    assert finished(search, tracked) == tracked and search.errors == 2
    assert search.merged == 0


# ------------------------------------------------------------------ timing rules
def test_an_early_search_needs_2_images_and_a_non_early_last_search() -> None:
    detector = StandIn()
    search = BackgroundSearch(detector, 40.0)
    assert not search.last_was_early and search.may_start_early(2)
    assert not search.may_start_early(1)
    detector.release.clear()
    assert search.start(grey(), [], early=True)
    assert search.busy and not search.may_start_early(5)  # one at a time
    assert not search.start(grey(), [])
    detector.release.set()
    search._job.exception(30)  # done (failed or not)
    search.merge(grey(), [])
    assert not search.busy and search.last_was_early and search.early == 1
    assert not search.may_start_early(5)  # the last one was early
    assert search.start(grey(), [])
    search._job.exception(30)  # done (failed or not)
    search.merge(grey(), [])
    assert search.may_start_early(2) and search.early == 1
    search.searched(grey(), [])  # a search in the frame's own time is not early either
    assert not search.last_was_early


def test_the_search_is_told_the_tracked_faces_and_runs_on_its_thread() -> None:
    detector = StandIn()
    search = BackgroundSearch(detector, 0.0)
    tracked = [det(0, 0, 10, 10), det(20, 0, 30, 10)]
    finished(search, tracked)
    finished(search, [])
    assert detector.known == [[[0, 0, 10, 10], [20, 0, 30, 10]], None]
    assert all(name.startswith("face-search") for name in detector.threads)


def test_close_waits_for_the_running_search() -> None:
    detector = StandIn()
    detector.release.clear()
    search = BackgroundSearch(detector, 0.0)
    assert search.start(grey(), [])
    threading.Timer(0.2, detector.release.set).start()
    search.close()
    assert detector.finished and not search.busy
