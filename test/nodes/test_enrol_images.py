"""Which image the enroll service enrols from (fer_ros/nodes/perception/enrol_images.py),
in-process: the node tests (test_multistream.py) show the same over DDS."""

from __future__ import annotations

import numpy as np
import pytest

from fer_ros.nodes.perception.enrol_images import EnrolRefused, LatestImages

SERVED = ["a", "b"]


def image(value: int) -> np.ndarray:
    return np.full((2, 2, 3), value, np.uint8)


def refusal(latest: LatestImages, requested: str, served: list[str] = SERVED) -> str:
    with pytest.raises(EnrolRefused) as caught:
        latest.for_enrolment(requested, served)
    return str(caught.value)


def test_nothing_processed_yet_is_refused() -> None:
    latest = LatestImages()
    assert refusal(latest, "") == "refused: no image received yet"
    assert refusal(latest, "a") == "refused: no image received yet on stream 'a'"


def test_the_requested_stream_wins_over_the_one_answered_last() -> None:
    latest = LatestImages()
    latest.processed("a", image(1), 1)
    latest.processed("b", image(2), 3)
    got, faces = latest.for_enrolment("a", SERVED)
    assert got[0, 0, 0] == 1 and faces == 1
    got, faces = latest.for_enrolment("b", SERVED)
    assert got[0, 0, 0] == 2 and faces == 3
    # No stream named: the one answered last.
    got, faces = latest.for_enrolment("", SERVED)
    assert got[0, 0, 0] == 2 and faces == 3
    latest.processed("a", image(4), 2)
    got, faces = latest.for_enrolment("", SERVED)
    assert got[0, 0, 0] == 4 and faces == 2


def test_a_newer_image_replaces_the_older_one_of_its_stream_only() -> None:
    latest = LatestImages()
    latest.processed("a", image(1), 1)
    latest.processed("b", image(2), 1)
    latest.processed("a", image(3), 0)
    assert latest.for_enrolment("a", SERVED)[0][0, 0, 0] == 3
    assert latest.for_enrolment("b", SERVED)[0][0, 0, 0] == 2


def test_a_stream_that_is_not_served_is_refused_naming_the_served_ones() -> None:
    latest = LatestImages()
    latest.processed("a", image(1), 1)
    assert refusal(latest, "c") == "refused: no stream 'c' (streams: 'a', 'b')"
    # Its old image is kept, but the stream is not served any more.
    assert refusal(latest, "a", ["b"]) == "refused: no stream 'a' (streams: 'b')"
    assert refusal(latest, "", ["b"]) == "refused: no stream 'a' (streams: 'b')"


def test_a_served_stream_without_an_image_is_refused_even_when_another_has_one() -> None:
    latest = LatestImages()
    latest.processed("a", image(1), 1)
    assert refusal(latest, "b") == "refused: no image received yet on stream 'b'"


def test_a_removed_stream_is_forgotten_and_never_stands_in() -> None:
    latest = LatestImages()
    latest.processed("a", image(1), 1)
    latest.processed("b", image(2), 1)
    latest.forget("a")  # not the last one: the last stays
    assert refusal(latest, "a") == "refused: no image received yet on stream 'a'"
    assert latest.for_enrolment("", SERVED)[0][0, 0, 0] == 2
    latest.forget("b")  # the last one: nothing is "last" any more
    assert refusal(latest, "") == "refused: no image received yet"
    assert refusal(latest, "b") == "refused: no image received yet on stream 'b'"
    latest.forget("c")  # never seen: nothing happens


def test_clear_forgets_every_image() -> None:
    latest = LatestImages()
    latest.processed("a", image(1), 1)
    latest.processed("b", image(2), 1)
    latest.clear()
    assert refusal(latest, "") == "refused: no image received yet"
    assert refusal(latest, "a") == "refused: no image received yet on stream 'a'"
    assert refusal(latest, "b") == "refused: no image received yet on stream 'b'"
