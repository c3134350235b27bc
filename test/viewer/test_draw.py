"""draw_faces, the overlay's drawing: the box where the message says in the emotion's
colour, landmark dots, a "#track name similarity" label above and "emotion score" below,
on a copy of the image."""

from __future__ import annotations

import numpy as np
import pytest
from geometry_msgs.msg import Point32
from sensor_msgs.msg import RegionOfInterest

from fer_ros.msg import FaceEmotion
from fer_ros.viewer.draw import draw_faces

WIDTH, HEIGHT = 400, 300
BOX = (120, 100, 80, 90)  # x, y, width, height
GREY = 60
# Written here, not imported: the documented look of each emotion (BGR).
COLOURS = {"sad": (200, 120, 40), "happy": (40, 200, 240), "angry": (40, 40, 230),
           "neutral": (200, 200, 200), "bored": (180, 140, 100)}  # bored: not in the model


def image() -> np.ndarray:
    return np.full((HEIGHT, WIDTH, 3), GREY, np.uint8)


def face(name: str = "ada", emotion: str = "sad", similarity: float = 0.9,
         score: float = 0.8, track_id: int = 3,
         box: tuple[int, int, int, int] = BOX) -> FaceEmotion:
    x, y, w, h = box
    out = FaceEmotion(track_id=track_id, name=name, name_similarity=similarity,
                      emotion=emotion, emotion_score=score)
    out.box = RegionOfInterest(x_offset=x, y_offset=y, width=w, height=h)
    return out


def rows_changed(drawn: np.ndarray, raw: np.ndarray) -> np.ndarray:
    return np.flatnonzero((drawn != raw).any(axis=(1, 2)))


def above(drawn: np.ndarray) -> np.ndarray:
    """The label band above the box."""
    x, y, _, _ = BOX
    return drawn[y - 30:y - 1, x:]


def below(drawn: np.ndarray) -> np.ndarray:
    """The label band below the box."""
    x, y, _, h = BOX
    return drawn[y + h + 3:y + h + 33, x:]


def band_width(region: np.ndarray, colour: tuple[int, int, int]) -> int:
    """How far right the label's coloured band reaches (its widest row)."""
    columns = np.flatnonzero((region == np.array(colour)).all(axis=2).any(axis=0))
    return int(columns.max()) + 1 if columns.size else 0


@pytest.mark.parametrize("emotion", sorted(COLOURS))
def test_box_in_the_emotion_colour_where_the_message_says(emotion: str) -> None:
    raw = image()
    drawn = draw_faces(raw, [face(emotion=emotion)])
    assert (raw == GREY).all(), "the input image was drawn on"
    x, y, w, h = BOX
    colour = np.array(COLOURS[emotion])
    for row, col in ((y, x + w // 2), (y + h, x + w // 2), (y + h // 2, x),
                     (y + h // 2, x + w), (y + h // 2, x + w + 1)):
        assert (drawn[row, col] == colour).all(), (row, col, drawn[row, col])
    inside = drawn[y + 3:y + h - 2, x + 3:x + w - 2]
    assert (inside == GREY).all(), "drawn inside the box"
    assert (drawn[y + h // 2, x + w + 3] == GREY).all(), "the box line is too thick"
    # Nothing left of the box, right of it beyond the labels, or far above or below it.
    changed = (drawn != raw).any(axis=2)
    assert not changed[:, :x - 1].any() and not changed[:, x + 160:].any()
    assert not changed[:y - 40].any() and not changed[y + h + 45:].any()
    # Both labels sit on bands of the same colour.
    assert band_width(above(drawn), COLOURS[emotion]) > w // 2
    assert band_width(below(drawn), COLOURS[emotion]) > w // 4


@pytest.mark.parametrize("emotion, text_is_dark", [("sad", False), ("angry", False),
                                                   ("neutral", True), ("happy", True)])
def test_label_text_contrasts_with_its_band(emotion: str, text_is_dark: bool) -> None:
    label = above(draw_faces(image(), [face(emotion=emotion)]))
    band = (label == np.array(COLOURS[emotion])).all(axis=2)
    text = (label < 40).all(axis=2) if text_is_dark else (label > 215).all(axis=2)
    assert band.sum() > 100 and text.sum() > 15, (emotion, band.sum(), text.sum())


def test_labels_say_who_and_how() -> None:
    def draw(**kwargs) -> np.ndarray:
        return draw_faces(image(), [face(**kwargs)])

    base = draw()
    # The name label changes with the name, the similarity (of a known person) and the
    # track id; the emotion label with the emotion's score.
    assert (above(draw(name="bob")) != above(base)).any()
    assert (above(draw(similarity=0.5)) != above(base)).any()
    assert (above(draw(track_id=4)) != above(base)).any()
    assert (below(draw(score=0.3)) != below(base)).any()
    assert (above(draw(score=0.3)) == above(base)).all()
    assert (below(draw(name="bob")) == below(base)).all()
    # "unknown" shows no similarity; a longer name makes a wider band; untracked faces
    # have no "#id"; no name still gets a label ("face").
    assert (above(draw(name="unknown", similarity=0.2))
            == above(draw(name="unknown", similarity=0.7))).all()
    sad = COLOURS["sad"]
    assert band_width(above(draw(name="alexandra_ocasio")), sad) > band_width(above(base), sad)
    assert band_width(above(draw(track_id=0)), sad) < band_width(above(base), sad)
    assert band_width(above(draw(name="", track_id=0)), sad) > 20
    # The score is a whole percentage: 8% is one digit shorter than 80%, 100% one longer,
    # and 80.1% reads as 80%.
    assert band_width(below(draw(score=0.08)), sad) < band_width(below(base), sad)
    assert band_width(below(draw(score=1.0)), sad) > band_width(below(base), sad)
    assert (below(draw(score=0.801)) == below(base)).all()
    # No emotion (classification off): no label below the box, and the box is drawn in
    # the colour of unknown labels.
    no_emotion = draw(emotion="")
    assert band_width(below(no_emotion), COLOURS["bored"]) == 0
    assert (below(no_emotion)[:, :70] == GREY).all()
    assert (no_emotion[BOX[1] + 20, BOX[0]] == np.array(COLOURS["bored"])).all()


def test_landmarks_are_green_dots_at_their_pixels() -> None:
    points = [(140.0, 130.0), (180.0, 131.0), (160.0, 150.0), (145.0, 170.0), (175.0, 171.0)]
    marked = face()
    marked.landmarks = [Point32(x=px, y=py) for px, py in points]
    drawn = draw_faces(image(), [marked])
    for px, py in points:
        assert (drawn[int(py), int(px)] == (0, 255, 0)).all(), (px, py)
    green = (drawn == (0, 255, 0)).all(axis=2)
    assert green.sum() <= 5 * 13  # five dots of radius 2, nothing else green


def test_every_face_is_drawn_and_no_face_leaves_the_image_as_it_was() -> None:
    raw = image()
    assert (draw_faces(raw, []) == raw).all()
    second_box = (300, 180, 60, 60)
    drawn = draw_faces(raw, [face(), face(emotion="happy", box=second_box)])
    assert (drawn[BOX[1], BOX[0] + 10] == COLOURS["sad"]).all()
    assert (drawn[second_box[1] + 30, second_box[0]] == COLOURS["happy"]).all()
    # A face touching the image's edge: its labels stay inside the image.
    edge = draw_faces(raw, [face(box=(0, 0, 50, 50))])
    assert (edge[:10, :30] != GREY).any()
    assert rows_changed(edge, raw).max() < 50 + 45
