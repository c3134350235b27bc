"""FaceNet and the emotion CNN on one CPU thread: PyTorch vs ONNX Runtime (and frozen
TorchScript for FaceNet).

Usage: fer-ros bench --backends   (or python -m fer_ros.bench.backends; after
`fer-ros models fetch`, which also makes the ONNX files the onnxruntime backend runs).
Prints the median time of a batch of 1 and of 5 faces for each backend and the largest
difference of ONNX Runtime's outputs from PyTorch's.
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch

from fer_ros.pipeline.emotion import EmotionClassifier
from fer_ros.pipeline.recognition.facenet import FaceEmbedder


def median_ms(call: Callable[[], object], repeats: int = 8) -> float:
    call()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e3


def facenet_rows() -> list[str]:
    """The models the pipeline runs (the checked ONNX file from the cache), on crops."""
    torch_embedder = FaceEmbedder(backend="torch")
    ort_embedder = FaceEmbedder(backend="onnxruntime", threads=1)
    crops = np.random.default_rng(0).integers(0, 256, (5, 160, 160, 3), dtype=np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notices
        probe = torch.zeros(1, 3, 160, 160)
        scripted = torch.jit.freeze(torch.jit.trace(torch_embedder.model, probe).eval())
    rows = []
    for batch in (1, 5):
        x = crops[:batch]
        tensor = torch.from_numpy(x).permute(0, 3, 1, 2).float().sub(127.5).div(128.0)
        with torch.inference_mode():
            t_script = median_ms(lambda t=tensor: scripted(t))
        t_torch = median_ms(lambda x=x: torch_embedder.embed_crops(x), 12)
        t_ort = median_ms(lambda x=x: ort_embedder.embed_crops(x), 12)
        diff = np.abs(ort_embedder.embed_crops(x) - torch_embedder.embed_crops(x)).max()
        rows.append(f"FaceNet batch {batch}: torch {t_torch:.1f} ms, torchscript (frozen) "
                    f"{t_script:.1f} ms, onnxruntime {t_ort:.1f} ms, max diff {diff:.1e}")
    return rows


def emotion_rows() -> list[str]:
    torch_clf = EmotionClassifier(backend="torch")
    ort_clf = EmotionClassifier(backend="onnxruntime", threads=1)
    image = np.random.default_rng(1).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    boxes = np.array([[40 + 110 * i, 100, 140 + 110 * i, 220] for i in range(5)], float)
    rows = []
    for batch in (1, 5):
        b = boxes[:batch]
        t_torch = median_ms(lambda b=b: torch_clf.predict(image, b), 30)
        t_ort = median_ms(lambda b=b: ort_clf.predict(image, b), 30)
        diff = np.abs(ort_clf.predict(image, b) - torch_clf.predict(image, b)).max()
        rows.append(f"emotion batch {batch} (crops included): torch {t_torch:.2f} ms, "
                    f"onnxruntime {t_ort:.2f} ms, max diff {diff:.1e}")
    return rows


def main() -> int:
    torch.set_num_threads(1)
    for row in facenet_rows() + emotion_rows():
        print(row, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
