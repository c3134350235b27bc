"""The embedding spaces fer_ros ships a model for, by the name galleries record.

Kept apart from the models (no torch, no onnxruntime) so that a gallery can say which
``embedding_model`` made it without loading either."""

from __future__ import annotations

SFACE = "sface-opencv-zoo-2021dec-int8bq"
FACENET = "facenet-casia-webface-20180408-102900"
# embedding_model choice -> the space its default weights embed into
BY_CHOICE = {"sface": SFACE, "facenet": FACENET}


def embedding_model_of(space: str) -> str:
    """The embedding_model choice whose default weights embed into ``space`` ("" for
    another model, such as a user's own FaceNet weights)."""
    for choice, name in BY_CHOICE.items():
        if space == name:
            return choice
    return ""
