"""Draw faces, names and emotions onto an image (used by overlay_node and the demo)."""

from __future__ import annotations

import cv2
import numpy as np

# BGR colours per emotion; anything else (user-trained labels) gets a stable grey-blue.
EMOTION_COLOURS = {
    "angry": (40, 40, 230), "disgust": (40, 140, 40), "fear": (160, 60, 160),
    "happy": (40, 200, 240), "sad": (200, 120, 40), "surprise": (40, 160, 255),
    "neutral": (200, 200, 200),
}
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _label(image: np.ndarray, text: str, x: int, y: int, colour: tuple, above: bool) -> None:
    scale = max(0.45, min(image.shape[1] / 1000.0, 1.2))
    (w, h), base = cv2.getTextSize(text, _FONT, scale, 1)
    top = y - h - base - 4 if above else y
    top = int(np.clip(top, 0, max(image.shape[0] - h - base - 4, 0)))
    cv2.rectangle(image, (x, top), (x + w + 6, top + h + base + 4), colour, -1)
    text_colour = (0, 0, 0) if sum(colour) > 400 else (255, 255, 255)
    cv2.putText(image, text, (x + 3, top + h + 2), _FONT, scale, text_colour, 1, cv2.LINE_AA)


def draw_faces(image_bgr: np.ndarray, faces) -> np.ndarray:
    """Annotate a copy of ``image_bgr`` with fer_ros/msg/FaceEmotion entries."""
    out = image_bgr.copy()
    for face in faces:
        x, y, w, h = face.box.x_offset, face.box.y_offset, face.box.width, face.box.height
        colour = EMOTION_COLOURS.get(face.emotion, (180, 140, 100))
        cv2.rectangle(out, (x, y), (x + w, y + h), colour, 2)
        for point in face.landmarks:
            cv2.circle(out, (int(point.x), int(point.y)), 2, (0, 255, 0), -1)
        who = face.name or "face"
        if face.name and face.name != "unknown":
            who += f" {face.name_similarity:.2f}"
        if face.track_id:
            who = f"#{face.track_id} {who}"
        _label(out, who, x, y, colour, above=True)
        if face.emotion:
            _label(out, f"{face.emotion} {face.emotion_score:.0%}", x, y + h + 2, colour,
                   above=False)
    return out
