"""Open-set identification figures (recognition/openset.py) on crafted scores, with the
numbers worked out by hand; and the naming rule checked against Gallery.match."""

from __future__ import annotations

import numpy as np
import pytest

from fer_ros.pipeline.recognition.gallery import Gallery
from fer_ros.pipeline.recognition.openset import (
    OpenSetScores,
    accepted,
    equal_error_rate,
    gap,
    scores_from_similarities,
    summary,
    tar_far,
    threshold_at_far,
)
from fer_ros.pipeline.types import UNKNOWN


def scores(genuine: list[tuple[float, float, bool]],
           strangers: list[tuple[float, float]]) -> OpenSetScores:
    """From (best, second, correct) per genuine attempt and (best, second) per stranger."""
    g = np.array(genuine, dtype=object).reshape(-1, 3)
    s = np.array(strangers, dtype=float).reshape(-1, 2)
    return OpenSetScores(g[:, 0].astype(float), g[:, 1].astype(float), g[:, 2].astype(bool),
                         s[:, 0], s[:, 1])


# Four right genuine attempts, one wrong; four strangers. Overlapping.
OVERLAP = scores([(0.9, 0.2, True), (0.8, 0.78, True), (0.6, 0.1, True), (0.4, 0.0, True),
                  (0.7, 0.3, False)],
                 [(0.7, 0.6), (0.5, 0.1), (0.3, 0.2), (0.2, 0.1)])


def test_figures_at_the_threshold_in_effect() -> None:
    fig = summary(OVERLAP, threshold=0.5, margin=0.05)
    assert fig["counts"] == {"genuine": 5, "strangers": 4}
    assert fig["top1_correct"] == 4 and fig["top1"] == 0.8  # the wrong one, whatever its score
    # Named: 0.9 (margin 0.7) and 0.6; 0.8 loses on the margin (0.02), 0.4 on the threshold,
    # and the wrong 0.7 does not count as right.
    assert fig["named_correct_count"] == 2 and fig["named_correct"] == 0.4
    # Strangers: 0.7 is named (margin 0.1), 0.5 too (>=: the threshold itself is accepted).
    assert fig["false_accepts"] == 2 and fig["false_accept_rate"] == 0.5
    assert fig["strangers_unknown"] == 0.5
    assert (fig["threshold"], fig["margin"]) == (0.5, 0.05)
    # Margin 0: the 0.8 attempt is named as well.
    assert summary(OVERLAP, 0.5, 0.0)["named_correct_count"] == 3
    # A stricter margin (0.15) turns the 0.7 stranger away.
    assert summary(OVERLAP, 0.5, 0.15)["false_accepts"] == 1


def test_naming_rule_is_gallery_match() -> None:
    """accepted() and scores_from_similarities() name exactly the faces Gallery.match
    names, at the edges too (a score equal to the threshold, a gap equal to the margin)."""
    gallery = Gallery("test-model", 2)
    angles = {"ada": 0.0, "bob": 0.5, "cy": 1.3}
    for name, angle in angles.items():
        gallery.add(name, np.array([[np.cos(angle), np.sin(angle)]]))
    faces = np.array([[np.cos(a), np.sin(a)] for a in np.linspace(-0.5, 2.0, 61)])
    per_person, names = gallery.similarities(faces)
    labels = ["ada"] * len(faces)
    got = scores_from_similarities(per_person, names, labels)
    for threshold, margin in [(0.9, 0.0), (0.95, 0.02), (0.99, 0.1), (-1.0, 0.0)]:
        matches = gallery.match(faces, threshold, margin)
        named = accepted(got.genuine_best, got.genuine_second, threshold, margin)
        assert list(named) == [m.name != UNKNOWN for m in matches]
        assert list(got.genuine_correct) == [m.best == "ada" for m in matches]
    # Edges: threshold exactly a face's best score, margin exactly its lead.
    i = 20
    best, second = got.genuine_best[i], got.genuine_second[i]
    assert accepted(best, second, best, best - second)
    assert not accepted(best, second, np.nextafter(best, 2.0), 0.0)
    assert gallery.match(faces[i:i + 1], float(best), float(best - second))[0].name != UNKNOWN


def test_one_person_gallery_second_is_minus_one() -> None:
    """With one person enrolled there is no runner-up: -1, as Gallery.match has it, so
    the margin rejects nobody."""
    got = scores_from_similarities(np.array([[0.3], [0.9]]), ["ada"], ["ada", None])
    assert list(got.genuine_second) == [-1.0] and list(got.stranger_second) == [-1.0]
    assert list(got.genuine_correct) == [True]
    assert summary(got, 0.2, 0.5)["named_correct_count"] == 1


def test_scores_split_by_label() -> None:
    per_person = np.array([[0.9, 0.1], [0.2, 0.7], [0.4, 0.45]], np.float32)
    got = scores_from_similarities(per_person, ["ada", "bob"], ["ada", "ada", None])
    assert got.genuine == 2 and got.strangers == 1
    assert list(got.genuine_correct) == [True, False]  # the second photo looks like bob
    np.testing.assert_allclose(got.genuine_best, [0.9, 0.7], rtol=1e-6)
    np.testing.assert_allclose(got.genuine_second, [0.1, 0.2], rtol=1e-6)
    np.testing.assert_allclose(got.stranger_best, [0.45], rtol=1e-6)
    np.testing.assert_allclose(got.stranger_second, [0.4], rtol=1e-6)


def test_threshold_at_far() -> None:
    # 100 strangers 0.00, 0.01, ..., 0.99; genuine all right at 0.985 and 0.995.
    strangers = [(i / 100, 0.0) for i in range(100)]
    got = scores([(0.985, 0.0, True), (0.995, 0.0, True)], strangers)
    # FAR 1%: one stranger may be accepted (0.99); the threshold sits just above the
    # second highest, 0.98, so 0.98 itself is refused.
    point = threshold_at_far(got, 0.01)
    assert point.threshold == np.nextafter(0.98, 1.0)
    assert (point.far, point.tar, point.allowed, point.strangers) == (0.01, 1.0, 1, 100)
    assert tar_far(got, point.threshold) == (1.0, 0.01)
    assert tar_far(got, 0.98) == (1.0, 0.02)  # at the stranger's score: one too many
    # FAR 0.1% of 100 strangers: none may be accepted; just above the highest, 0.99,
    # which leaves only the genuine 0.995.
    point = threshold_at_far(got, 0.001)
    assert point.threshold == np.nextafter(0.99, 1.0)
    assert (point.far, point.tar, point.allowed) == (0.0, 0.5, 0)
    # 29% of 100 is 28.999999999999996 in floats: still 29 strangers allowed.
    assert threshold_at_far(got, 0.29).threshold == np.nextafter(0.70, 1.0)
    assert threshold_at_far(got, 0.29).far == 0.29


def test_tar_counts_only_the_right_person() -> None:
    """A genuine attempt whose best person is someone else is never a true accept,
    however high its score (OVERLAP's 0.7)."""
    assert tar_far(OVERLAP, 0.65) == (0.4, 0.25)
    point = threshold_at_far(OVERLAP, 0.25)  # one of four strangers: just above 0.5
    assert point.threshold == np.nextafter(0.5, 1.0)
    assert (point.tar, point.far) == (0.6, 0.25)


def test_threshold_at_far_with_tied_strangers() -> None:
    """Strangers at the same score are accepted or refused together: FAR 25% of four
    strangers where the top two tie cannot accept one, so it accepts none."""
    got = scores([(0.8, 0.0, True), (0.65, 0.0, True)],
                 [(0.7, 0.0), (0.7, 0.0), (0.6, 0.0), (0.1, 0.0)])
    point = threshold_at_far(got, 0.25)
    assert point.threshold == np.nextafter(0.7, 1.0)
    assert (point.far, point.tar) == (0.0, 0.5)
    point = threshold_at_far(got, 0.5)  # two may be: just above 0.6
    assert point.threshold == np.nextafter(0.6, 1.0)
    assert (point.far, point.tar) == (0.5, 1.0)


def test_summary_far_threshold_rounds_up() -> None:
    """The JSON threshold is rounded up, so the stranger just below it stays out, and
    TAR and FAR are those at the rounded threshold."""
    got = scores([(0.51234, 0.0, True), (0.9, 0.0, True)],
                 [(0.51233, 0.0), (0.2, 0.0)])
    point = summary(got, 0.5, 0.0, far_targets=(0.4,))["tar_at_far"][0]
    assert point == {"far_target": 0.4, "threshold": 0.5124, "tar": 0.5, "far": 0.0,
                     "strangers": 2, "strangers_allowed": 0}
    # Rounded to nearest it would be 0.5123 and accept the 0.51233 stranger.
    assert tar_far(got, 0.5123)[1] == 0.5


def test_equal_error_rate() -> None:
    # Separable: no error at any threshold between 0.5 and 0.7; the middle of that gap.
    separable = scores([(0.9, 0.0, True), (0.8, 0.0, True), (0.7, 0.0, True)],
                       [(0.3, 0.0), (0.2, 0.0), (0.5, 0.0)])
    rate, threshold = equal_error_rate(separable)
    assert rate == 0.0
    assert threshold == pytest.approx(0.6)
    assert gap(separable) == pytest.approx(0.2)
    # Overlapping, right genuine 0.9 0.8 0.6 0.4 and strangers 0.7 0.5 0.3 0.2, plus one
    # wrong genuine attempt (always a false reject): at t in (0.4, 0.5] FAR = 2/4 and
    # FRR = 2/5 (0.4 and the wrong one); at t in (0.5, 0.6] FAR = 1/4, FRR = 2/5. The
    # closest is the first, |0.5 - 0.4| = 0.1 < 0.15: rate (0.5 + 0.4) / 2.
    rate, threshold = equal_error_rate(OVERLAP)
    assert rate == pytest.approx(0.45)
    assert threshold == pytest.approx(0.45)
    assert gap(OVERLAP) == pytest.approx(0.4 - 0.7)
    # Exact crossing: FAR = FRR = 1/4 at t in (0.5, 0.6].
    crossing = scores([(0.9, 0.0, True), (0.8, 0.0, True), (0.6, 0.0, True), (0.4, 0.0, True)],
                      [(0.7, 0.0), (0.5, 0.0), (0.3, 0.0), (0.2, 0.0)])
    rate, threshold = equal_error_rate(crossing)
    assert rate == 0.25 and threshold == pytest.approx(0.55)
    fig = summary(crossing, 0.5, 0.0)
    assert fig["eer"] == {"rate": 0.25, "threshold": 0.55}


def test_without_strangers_or_genuine_the_far_figures_are_none() -> None:
    only_genuine = scores([(0.9, 0.1, True), (0.3, 0.2, False)], [])
    assert threshold_at_far(only_genuine, 0.01) is None
    assert equal_error_rate(only_genuine) is None and gap(only_genuine) is None
    fig = summary(only_genuine, 0.5, 0.0)
    assert fig["counts"] == {"genuine": 2, "strangers": 0}
    assert fig["top1"] == 0.5 and fig["named_correct"] == 0.5
    assert fig["strangers_unknown"] is None and fig["false_accept_rate"] is None
    assert fig["eer"] is None and fig["gap"] is None
    assert [p["threshold"] for p in fig["tar_at_far"]] == [None, None]
    assert [p["far_target"] for p in fig["tar_at_far"]] == [0.01, 0.001]

    only_strangers = scores([], [(0.4, 0.1), (0.6, 0.5)])
    fig = summary(only_strangers, 0.5, 0.0)
    assert fig["top1"] is None and fig["named_correct"] is None
    assert fig["strangers_unknown"] == 0.5 and fig["eer"] is None and fig["gap"] is None
    point = threshold_at_far(only_strangers, 0.01)
    assert point.tar is None and point.threshold == np.nextafter(0.6, 1.0)


def test_bad_far_target() -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        threshold_at_far(OVERLAP, 1.0)
    with pytest.raises(ValueError, match="between 0 and 1"):
        threshold_at_far(OVERLAP, 0.0)
