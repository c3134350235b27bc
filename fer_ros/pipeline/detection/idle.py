"""IdleGate: skip the whole-image face search while nobody is there and nothing changes.

With no face tracked, every image would get MTCNN's whole-image search: the most
expensive step, spent on finding nothing. The gate decides per image, from whether a
face is tracked, the time since the last search and a cheap scene difference, whether
the search runs:

* a face is tracked: always search (the pipeline runs at full rate);
* nobody tracked, and the scene differs from the last searched image (a tiny grey
  thumbnail, compared cell by cell) by more than ``change_threshold`` grey levels:
  search at once, if the idle budget allows;
* nobody tracked and the scene unchanged: skip, except once every ``refresh_period``
  seconds (a safety net for a face the last search missed);
* the idle budget is a token bucket: ``rate_hz`` searches per second on average, and up
  to ``burst`` at once after a quiet spell, so a person walking into a still scene is
  searched on every image while they come in, but a scene that never stops changing
  (a moving robot, a screen) costs at most ``rate_hz`` searches per second.

Time is the images' stamps (seconds), so a replayed bag behaves as it did live. The
thumbnail averages 20x20 pixel cells of a 640x480 image: sensor noise of sigma 15
grey levels moves a cell by at most about 5 levels, a 2-pixel camera shake at a hard
edge by about 8, a face of 40 pixels appearing by 60 or more.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fer_ros.pipeline.images import scene_thumbnail

# Searches that may run back to back after a quiet spell (see the module docstring).
IDLE_BURST = 10


def scene_change(a: np.ndarray, b: np.ndarray) -> float:
    """Largest per-cell grey difference between two thumbnails (inf if shapes differ)."""
    if a.shape != b.shape:
        return float("inf")
    return float(np.abs(a - b).max())


@dataclass(frozen=True)
class IdleDecision:
    search: bool
    # search: "off", "tracking", "first", "changed", "refresh";
    # skip: "unchanged" (static scene), "rate" (idle budget spent)
    reason: str


@dataclass(frozen=True)
class _Reference:
    thumb: np.ndarray  # scene_thumbnail of the last searched image
    size: tuple[int, ...]  # its height and width
    stamp: float  # and when it was searched


class IdleGate:
    """Per-image search/skip decision while no face is tracked (see the module docstring).

    ``rate_hz`` 0 turns the gate off (every image is searched). ``change_threshold`` 0
    makes every image count as changed (only the rate limits the searches).
    ``refresh_period`` 0 never searches an unchanged scene again.
    """

    def __init__(self, rate_hz: float, change_threshold: float, refresh_period: float,
                 burst: int = IDLE_BURST) -> None:
        # No defaults: the pipeline's (PipelineConfig.idle_*) are the only ones.
        self.configure(rate_hz, change_threshold, refresh_period)
        self.burst = burst
        self.searched = 0  # idle searches run (nobody tracked)
        self.skipped = 0  # images not searched
        self.reset()

    def configure(self, rate_hz: float, change_threshold: float, refresh_period: float) -> None:
        """New settings; they apply from the next image on."""
        self.rate_hz = rate_hz
        self.change_threshold = change_threshold
        self.refresh_period = refresh_period

    def reset(self) -> None:
        """Forget the reference scene and refill the budget."""
        self._ref: _Reference | None = None  # the last searched image
        self._last_stamp: float | None = None
        self._tokens = float(self.burst)

    def decide(self, image: np.ndarray, stamp: float, tracking: bool) -> IdleDecision:
        """Whether to search this image; ``tracking``: a face is tracked now."""
        if self.rate_hz <= 0:
            return IdleDecision(True, "off")
        if self._last_stamp is not None and stamp < self._last_stamp:
            self.reset()  # time went backwards: a bag restarted, another clip
        elapsed = 0.0 if self._last_stamp is None else stamp - self._last_stamp
        self._last_stamp = stamp
        if tracking:
            # The next idle image is searched afresh, with a full budget.
            self._ref = None
            self._tokens = float(self.burst)
            return IdleDecision(True, "tracking")
        self._tokens = min(float(self.burst), self._tokens + elapsed * self.rate_hz)
        thumb = scene_thumbnail(image, sampled=True)
        ref = self._ref
        if ref is None:
            reason = "first"
        elif (image.shape[:2] != ref.size  # new resolution: boxes would differ
                or scene_change(thumb, ref.thumb) > self.change_threshold):
            reason = "changed"
        elif self.refresh_period > 0 and stamp - ref.stamp >= self.refresh_period:
            reason = "refresh"
        else:
            self.skipped += 1
            return IdleDecision(False, "unchanged")
        if self._tokens < 1.0:
            self.skipped += 1
            return IdleDecision(False, "rate")
        self._tokens -= 1.0
        self._ref = _Reference(thumb, image.shape[:2], stamp)
        self.searched += 1
        return IdleDecision(True, reason)
