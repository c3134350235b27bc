"""Run-time emotion classification of face boxes with a fer_ros.emotion/1 model."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from fer_ros.assets import FETCH_HINT, AssetError, sha256_of
from fer_ros.pipeline import ort_backend
from fer_ros.pipeline.device import check_half
from fer_ros.pipeline.emotion.io import (
    default_model_path,
    default_onnx_path,
    load_emotion_model,
)
from fer_ros.pipeline.emotion.model import NORMALISATIONS
from fer_ros.pipeline.images import check_image


class EmotionClassifier:
    """Classify the expression of face boxes in RGB images.

    ``backend`` as for FaceEmbedder: ``torch``, ``onnxruntime`` or ``auto`` (ONNX Runtime
    for the default model on the CPU, about 5x faster here; ``backend_warning`` says why
    it fell back to PyTorch). The PyTorch model (57 k parameters) is loaded either way:
    it carries the labels and preprocessing, and the ONNX file must match it.
    """

    def __init__(self, weights: str | Path | None = None, device: str = "cpu",
                 backend: str = ort_backend.TORCH, threads: int | None = None,
                 half: bool = False) -> None:
        path = Path(weights) if weights else default_model_path()
        if not path.is_file():
            raise AssetError(f"emotion model {path} is missing; run `{FETCH_HINT}` first"
                             if weights is None else f"emotion model {path} does not exist")
        self.device = torch.device(device)
        self.dtype = check_half(half, self.device)
        self.model, self.spec = load_emotion_model(path, self.device)
        self.model.to(self.dtype)
        self.labels: tuple[str, ...] = self.spec.labels
        self.path = path
        self._normalise = NORMALISATIONS[self.spec.normalisation]
        default = not weights
        self.session, self.backend_warning = ort_backend.select_session(
            backend, self.device.type, "emotion model", default_onnx_path() if default else None,
            sha256_of(path) if default else None, threads)
        self.backend = ort_backend.ORT if self.session is not None else ort_backend.TORCH

    def crop_boxes(self, image_rgb: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """(N, S, S, C) uint8 crops as the model sees them (before normalisation)."""
        check_image(image_rgb)
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        size, margin = self.spec.input_size, self.spec.crop_margin
        source = (cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY)[..., None]
                  if self.spec.channels == 1 else image_rgb)
        height, width = source.shape[:2]
        crops = np.empty((len(boxes), size, size, self.spec.channels), np.uint8)
        for i, (x1, y1, x2, y2) in enumerate(boxes.tolist()):
            side = max(x2 - x1, y2 - y1, 1.0) * (1.0 + 2.0 * margin)
            cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
            left, top = round(cx - side / 2), round(cy - side / 2)
            n = max(round(side), 1)
            right, bottom = left + n, top + n
            inner = source[max(top, 0):min(bottom, height), max(left, 0):min(right, width)]
            if inner.size == 0:
                raise ValueError(f"box {boxes[i].tolist()} lies outside the "
                                 f"{width}x{height} image")
            pad = (max(-top, 0), max(bottom - height, 0), max(-left, 0), max(right - width, 0))
            if any(pad):
                inner = cv2.copyMakeBorder(inner, *pad, cv2.BORDER_REPLICATE)
            resized = cv2.resize(inner, (size, size), interpolation=cv2.INTER_AREA
                                 if n > size else cv2.INTER_LINEAR)
            crops[i] = resized.reshape(size, size, self.spec.channels)
        return crops

    def inputs(self, image_rgb: np.ndarray, boxes: np.ndarray,
               landmarks: np.ndarray | None = None) -> np.ndarray:
        """(N, C, S, S) float32 model input (numpy) for the boxes (x1, y1, x2, y2 pixels);
        ``landmarks`` are not used (trained on box crops)."""
        crops = self.crop_boxes(image_rgb, boxes).astype(np.float32)
        x = self._normalise(crops).astype(np.float32)
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))

    def preprocess(self, image_rgb: np.ndarray, boxes: np.ndarray) -> torch.Tensor:
        """(N, C, S, S) float32 model input for the boxes, as a tensor on the device."""
        return torch.from_numpy(self.inputs(image_rgb, boxes)).to(self.device)

    def predict(self, image_rgb: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """(N, K) float32 probabilities over ``labels``; one batched forward pass."""
        return self.predict_inputs(self.inputs(image_rgb, boxes))

    def predict_inputs(self, x: np.ndarray) -> np.ndarray:
        """(N, K) probabilities for (N, C, S, S) inputs from :meth:`inputs` (of one image
        or, concatenated, of several: one forward pass for all)."""
        if x.shape[0] == 0:
            return np.zeros((0, len(self.labels)), np.float32)
        if self.session is not None:  # the exported graph ends in the softmax
            return self.session.run(None, {"input": x})[0].astype(np.float32, copy=False)
        x = torch.from_numpy(x).to(self.device, self.dtype)
        with torch.inference_mode():
            probs = torch.softmax(self.model(x).float(), dim=1)
        return probs.cpu().numpy()

    # The two steps every face model offers (engine/models.py: FaceModel).
    prepare = inputs
    run = predict_inputs
