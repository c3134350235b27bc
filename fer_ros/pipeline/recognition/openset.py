"""Open-set identification figures from match scores: how a gallery and a threshold do on
labelled photos of enrolled people ("genuine" attempts) and of people who are not
enrolled ("strangers"). Pure numpy; `fer-ros evaluate` feeds it.

Each attempt is described by the scores the gallery's naming rule looks at
(`Gallery.match`): ``best``, the highest similarity over all enrolled people, and
``second``, the best similarity of any *other* person (-1 when the gallery holds one
person, as `Gallery.match` has it, so the margin never rejects anyone there); a genuine
attempt also says whether its best person is the labelled one (``correct``). A face is
named when ``best >= threshold`` and ``best - second >= margin``, else it is "unknown".

Two kinds of figures:

* at the threshold and margin in effect: top-1 (best person right, no threshold), named
  correctly, strangers called unknown, false accepts;
* over thresholds, ROC style, on ``best`` alone (margin 0): FAR(t) = share of strangers
  with best >= t, TAR(t) = share of genuine attempts whose best person is right and
  best >= t; the threshold that gives a false-accept rate, the TAR there, the equal error
  rate, and the gap between the lowest right genuine score and the highest stranger score.

A FAR figure rests on the strangers it was measured on: with 17 strangers, "FAR 0.1%"
can only mean "no stranger accepted"; `summary` says how many were allowed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fer_ros.pipeline.recognition.gallery import _top_two

DECIMALS = 4  # floats in `summary`: enough for a threshold, short enough to read
FAR_TARGETS = (0.01, 0.001)


@dataclass
class OpenSetScores:
    """Scores of labelled attempts against a gallery (float64 arrays, one entry each)."""

    genuine_best: np.ndarray  # (G,) best similarity of each enrolled person's photo
    genuine_second: np.ndarray  # (G,) best similarity of any other person than the best
    genuine_correct: np.ndarray  # (G,) bool: the best person is the labelled one
    stranger_best: np.ndarray  # (S,) best similarity of each stranger's photo
    stranger_second: np.ndarray  # (S,)

    def __post_init__(self) -> None:
        self.genuine_best = np.asarray(self.genuine_best, np.float64).reshape(-1)
        self.genuine_second = np.asarray(self.genuine_second, np.float64).reshape(-1)
        self.genuine_correct = np.asarray(self.genuine_correct, bool).reshape(-1)
        self.stranger_best = np.asarray(self.stranger_best, np.float64).reshape(-1)
        self.stranger_second = np.asarray(self.stranger_second, np.float64).reshape(-1)
        if not (len(self.genuine_best) == len(self.genuine_second)
                == len(self.genuine_correct)):
            raise ValueError("genuine best, second and correct must have one entry each")
        if len(self.stranger_best) != len(self.stranger_second):
            raise ValueError("stranger best and second must have one entry each")

    @property
    def genuine(self) -> int:
        return len(self.genuine_best)

    @property
    def strangers(self) -> int:
        return len(self.stranger_best)

    @property
    def correct_best(self) -> np.ndarray:
        """Best scores of the genuine attempts whose best person is right."""
        return self.genuine_best[self.genuine_correct]


@dataclass
class FarPoint:
    """The threshold that keeps the false-accept rate at or below ``target``."""

    target: float
    threshold: float  # smallest t with FAR(t) <= target
    far: float  # FAR at that threshold (at most target)
    tar: float | None  # TAR at that threshold (None: no genuine attempts)
    strangers: int  # how many strangers the FAR rests on
    allowed: int  # how many of them may be accepted at ``target`` (0: none)


def scores_from_similarities(per_person: np.ndarray, names: Sequence[str],
                             labels: Sequence[str | None]) -> OpenSetScores:
    """Scores from `Gallery.similarities` output: ``per_person`` (N, P) and the people's
    ``names``; ``labels[i]`` names photo i's person, None for a stranger."""
    per_person = np.asarray(per_person, np.float32).reshape(len(labels), len(names))
    if not names:
        raise ValueError("the gallery is empty: nobody to match against")
    # The gallery's own top-two helper: best person and runner-up exactly as match has them.
    tops = _top_two(per_person, list(names)) if len(labels) else []
    genuine = [(best, second, best_name == label)
               for (best_name, best, second), label in zip(tops, labels, strict=True)
               if label is not None]
    strangers = [(best, second) for (_, best, second), label in zip(tops, labels, strict=True)
                 if label is None]
    g_best, g_second, g_correct = (list(col) for col in zip(*genuine, strict=True)) \
        if genuine else ([], [], [])
    s_best, s_second = (list(col) for col in zip(*strangers, strict=True)) \
        if strangers else ([], [])
    return OpenSetScores(g_best, g_second, g_correct, s_best, s_second)


def accepted(best: np.ndarray, second: np.ndarray, threshold: float,
             margin: float) -> np.ndarray:
    """Which faces are named (not "unknown"): `Gallery.match`'s rule, elementwise."""
    best = np.asarray(best, np.float64)
    return (best >= threshold) & (best - np.asarray(second, np.float64) >= margin)


def tar_far(scores: OpenSetScores, threshold: float) -> tuple[float | None, float | None]:
    """(TAR, FAR) at ``threshold`` on best scores alone (margin 0); None where the set
    they are shares of is empty."""
    tar = float(np.mean(scores.genuine_correct & (scores.genuine_best >= threshold))) \
        if scores.genuine else None
    far = float(np.mean(scores.stranger_best >= threshold)) if scores.strangers else None
    return tar, far


def threshold_at_far(scores: OpenSetScores, target: float) -> FarPoint | None:
    """The smallest threshold whose FAR is at most ``target`` (0 < target < 1), and the
    TAR there; None without strangers."""
    if not 0.0 < target < 1.0:
        raise ValueError(f"a false-accept rate must lie between 0 and 1, not {target}")
    strangers = np.sort(scores.stranger_best)[::-1]
    if not len(strangers):
        return None
    # At most ``allowed`` strangers may score >= t; any t at or below the (allowed+1)-th
    # highest lets in one more, so the answer is the next float above that score. The
    # epsilon keeps 0.29 * 100 = 28.999999999999996 from allowing 28 instead of 29.
    allowed = min(math.floor(target * len(strangers) + 1e-9), len(strangers) - 1)
    threshold = float(np.nextafter(strangers[allowed], np.inf))
    tar, far = tar_far(scores, threshold)
    return FarPoint(target, threshold, float(far), tar, len(strangers), allowed)


def equal_error_rate(scores: OpenSetScores) -> tuple[float, float] | None:
    """(rate, threshold) where the false-accept rate meets the false-reject rate
    (1 - TAR), swept over the observed scores; None without genuine attempts or
    strangers.

    Candidates are the scores that can change an outcome (right genuine and stranger
    best scores) and one just above the highest, which rejects everyone. Where the two
    rates do not meet exactly the rate is their mean at the closest candidate. The
    threshold is the middle of the range of thresholds giving that outcome: between the
    candidate below and this one (for a separable set, the middle of the gap).
    """
    if not scores.genuine or not scores.strangers:
        return None
    observed = np.unique(np.concatenate([scores.correct_best, scores.stranger_best]))
    candidates = np.append(observed, np.nextafter(observed[-1], np.inf))
    far = (scores.stranger_best[None, :] >= candidates[:, None]).mean(axis=1)
    tar = (scores.correct_best[None, :] >= candidates[:, None]).sum(axis=1) / scores.genuine
    frr = 1.0 - tar
    # Closest first, then the lower mean: lexsort's last key is the primary one.
    best = int(np.lexsort((far + frr, np.abs(far - frr)))[0])
    rate = float((far[best] + frr[best]) / 2.0)
    low = candidates[best - 1] if best > 0 else candidates[best]
    return rate, float((low + candidates[best]) / 2.0)


def gap(scores: OpenSetScores) -> float | None:
    """Lowest right genuine best score minus highest stranger best score: positive when
    one threshold names every rightly matched person and no stranger."""
    correct = scores.correct_best
    if not len(correct) or not scores.strangers:
        return None
    return float(correct.min() - scores.stranger_best.max())


def _share(count: int, total: int) -> float | None:
    return count / total if total else None


def _rounded(value: float | None, up: bool = False) -> float | None:
    if value is None:
        return None
    if up:
        # A threshold printed rounded down could let in the stranger it was placed
        # just above: round thresholds up, so the printed one keeps its FAR.
        return round(math.ceil(value * 10**DECIMALS) / 10**DECIMALS, DECIMALS)
    return round(value, DECIMALS)


def far_point_dict(scores: OpenSetScores, target: float) -> dict:
    """The threshold for FAR ``target`` as JSON values: rounded up (see `_rounded`), with
    TAR and FAR measured at the threshold as shown, the one a user would type in."""
    point = threshold_at_far(scores, target)
    if point is None:
        return {"far_target": target, "threshold": None, "tar": None, "far": None,
                "strangers": 0, "strangers_allowed": 0}
    shown = _rounded(point.threshold, up=True)
    tar, far = tar_far(scores, shown)
    return {"far_target": target, "threshold": shown, "tar": _rounded(tar),
            "far": _rounded(far), "strangers": point.strangers,
            "strangers_allowed": point.allowed}


def summary(scores: OpenSetScores, threshold: float, margin: float,
            far_targets: Sequence[float] = FAR_TARGETS) -> dict:
    """Every figure as plain JSON values (floats rounded to 4 decimals, thresholds from a
    FAR rounded up; None where the photos needed are missing)."""
    named = accepted(scores.genuine_best, scores.genuine_second, threshold, margin)
    named_correct = int(np.sum(named & scores.genuine_correct))
    stranger_named = accepted(scores.stranger_best, scores.stranger_second, threshold, margin)
    false_accepts = int(np.sum(stranger_named))
    top1 = int(np.sum(scores.genuine_correct))
    eer = equal_error_rate(scores)
    return {
        "counts": {"genuine": scores.genuine, "strangers": scores.strangers},
        "threshold": _rounded(threshold), "margin": _rounded(margin),
        "top1": _rounded(_share(top1, scores.genuine)), "top1_correct": top1,
        "named_correct": _rounded(_share(named_correct, scores.genuine)),
        "named_correct_count": named_correct,
        "strangers_unknown": _rounded(_share(scores.strangers - false_accepts,
                                             scores.strangers)),
        "false_accepts": false_accepts,
        "false_accept_rate": _rounded(_share(false_accepts, scores.strangers)),
        "tar_at_far": [far_point_dict(scores, target) for target in dict.fromkeys(far_targets)],
        "eer": None if eer is None else {"rate": _rounded(eer[0]),
                                         "threshold": _rounded(eer[1])},
        "gap": _rounded(gap(scores)),
    }
