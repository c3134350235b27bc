"""ONNX Runtime (CPU) as an inference backend beside PyTorch.

PyTorch stays the reference: conversion checks, training and CUDA use it. On a CPU, ONNX
Runtime runs the same graphs faster (FaceNet about 2x, the emotion CNN about 5x on one
thread here; ``fer-ros bench --backends``) with outputs equal to about 1e-7.

Each ONNX file is exported from the cached PyTorch model by ``fer-ros models fetch`` and
carries, in its metadata, the SHA-256 of the ``.pt`` it was exported from and the output
PyTorch gave for a fixed probe input; a ``.sha256`` sidecar is written last. A session is
made only from a file that passes all three checks (:func:`open_session`), so a corrupt,
truncated or stale file is refused with the reason rather than giving wrong outputs.

Backends: ``torch``; ``onnxruntime`` (an error, naming the fix, when it cannot run);
``auto`` (ONNX Runtime on the CPU for the default models when the checked file is there,
else PyTorch; a missing or failing file gives a warning, see :func:`select_session`).
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import torch

from fer_ros.assets import FETCH_HINT, AssetError, sha256_of

try:
    import onnxruntime as ort
except ImportError:  # a run-time requirement, but `auto` still runs PyTorch without it
    ort = None

AUTO, TORCH, ORT = "auto", "torch", "onnxruntime"
BACKENDS = (AUTO, TORCH, ORT)
# Largest |ONNX Runtime - PyTorch| accepted on the probe input (measured about 1e-7).
PROBE_TOLERANCE = 1e-5
_SOURCE_KEY, _PROBE_KEY = "fer_ros.source_sha256", "fer_ros.probe_output"


def available() -> bool:
    return ort is not None


def check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")


def sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def probe_input(shape: tuple[int, ...]) -> np.ndarray:
    """The fixed float32 input whose PyTorch output each ONNX file records."""
    return np.random.default_rng(0).standard_normal(shape).astype(np.float32)


def export(module: torch.nn.Module, target: Path, shape: tuple[int, ...], source_sha256: str,
           input_name: str = "input", output_name: str = "output") -> Path:
    """Export ``module`` (eval, CPU) with a dynamic batch axis to ``target``, sealed."""
    module = module.eval().cpu()
    probe = torch.from_numpy(probe_input((1, *shape)))
    fd, tmp = tempfile.mkstemp(prefix=target.name + ".", suffix=".part", dir=target.parent)
    os.close(fd)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the legacy exporter's deprecation notices
            # dynamo=False: the TorchScript exporter needs only `onnx`, not onnxscript.
            torch.onnx.export(module, (probe,), tmp, input_names=[input_name],
                              output_names=[output_name], opset_version=17, dynamo=False,
                              dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}})
        return seal(Path(tmp), target, module, source_sha256)
    finally:
        Path(tmp).unlink(missing_ok=True)


def seal(exported: Path, target: Path,
         reference: torch.nn.Module | Callable[[np.ndarray], np.ndarray],
         source_sha256: str) -> Path:
    """Record provenance and the probe output in ``exported``'s metadata, check that ONNX
    Runtime reproduces ``reference`` on the probe, then move it to ``target`` (atomically)
    and write its sidecar. ``reference`` (a torch module, or a function of a numpy batch)
    must compute what the ONNX graph computes."""
    model = onnx.load(str(exported))
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim][1:]
    probe = probe_input((1, *shape))
    if isinstance(reference, torch.nn.Module):
        with torch.inference_mode():
            expected = reference.eval().cpu()(torch.from_numpy(probe)).numpy()[0]
    else:
        expected = np.asarray(reference(probe), np.float32)[0]
    for key, value in ((_SOURCE_KEY, source_sha256),
                       (_PROBE_KEY, json.dumps([float(v) for v in expected.ravel()]))):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    onnx.save(model, str(exported))
    open_session(exported, source_sha256, threads=1, check_sidecar=False)
    target.unlink(missing_ok=True)
    sidecar(target).unlink(missing_ok=True)  # no window where an old sidecar blesses new bytes
    os.chmod(exported, 0o644)
    os.replace(exported, target)
    sidecar(target).write_text(f"{sha256_of(target)}  {target.name}\n")
    return target


def _session_options(threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Idle pool threads would spin for work and take CPU from the camera and DDS on a
    # small machine; sleeping costs a little latency only when threads > 1.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def open_session(path: Path, source_sha256: str, threads: int | None = None,
                 check_sidecar: bool = True) -> ort.InferenceSession:
    """A CPU session for ``path`` after its checks (sidecar, provenance, probe output).

    AssetError, naming ``fer-ros models fetch``, when any check fails.
    """
    if ort is None:
        raise AssetError("onnxruntime is not installed (pip install onnxruntime==1.32.0)")
    if not path.is_file():
        raise AssetError(f"{path} is missing; run `{FETCH_HINT}`")
    if check_sidecar:
        side = sidecar(path)
        if not side.is_file() or side.read_text().split()[:1] != [sha256_of(path)]:
            raise AssetError(f"{path} is corrupt or unfinished (checksum mismatch); run "
                             f"`{FETCH_HINT} --force`")
    try:
        session = ort.InferenceSession(
            str(path), _session_options(threads or torch.get_num_threads()),
            providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
        raise AssetError(f"{path} cannot be loaded by onnxruntime: {str(exc)[:200]}; run "
                         f"`{FETCH_HINT} --force`") from exc
    meta = session.get_modelmeta().custom_metadata_map
    if meta.get(_SOURCE_KEY) != source_sha256:
        raise AssetError(f"{path} was exported from another model file than the cached one "
                         f"(stale); run `{FETCH_HINT} --force`")
    expected = np.asarray(json.loads(meta.get(_PROBE_KEY, "[]")), np.float32)
    shape = session.get_inputs()[0].shape[1:]
    got = session.run(None, {session.get_inputs()[0].name: probe_input((1, *shape))})[0][0]
    if got.size != expected.size or not np.abs(got.ravel() - expected).max() <= PROBE_TOLERANCE:
        raise AssetError(f"{path} does not reproduce its reference model's output on the "
                         f"probe input; run `{FETCH_HINT} --force`")
    return session


def is_current(path: Path, source_sha256: str) -> bool:
    """Whether ``path`` passes :func:`open_session`'s checks for ``source_sha256`` (an export
    that is missing, damaged or stale is not)."""
    try:
        open_session(path, source_sha256, threads=1)
    except AssetError:
        return False
    return True


def select_session(backend: str, device: str, what: str, path: Path | None,
                   source_sha256: str | None, threads: int | None = None,
                   ) -> tuple[ort.InferenceSession | None, str | None]:
    """(session or None for PyTorch, warning for the log or None).

    ``path`` is None when the model is not the default one (a user's weights), which
    has no checked ONNX file. ``onnxruntime`` raises AssetError/ValueError where it cannot
    run; ``auto`` then runs PyTorch: silently on CUDA and for a user's weights (by
    design), with a warning when onnxruntime is absent or the ONNX file fails a check.
    """
    check_backend(backend)
    if backend == TORCH:
        return None, None
    if device != "cpu":
        if backend == ORT:
            raise ValueError(f"{what}: backend onnxruntime runs on the CPU only; with device "
                             f"{device} use backend auto or torch")
        return None, None
    if path is None or source_sha256 is None:
        if backend == ORT:
            raise ValueError(f"{what}: backend onnxruntime serves the default model from "
                             f"`{FETCH_HINT}`; other weights run with backend auto or torch")
        return None, None
    try:
        return open_session(path, source_sha256, threads), None
    except AssetError as exc:
        if backend == ORT:
            raise
        return None, f"{what}: {exc}; running it on PyTorch instead"
