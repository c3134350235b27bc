"""FaceNet on one CPU thread: PyTorch vs frozen TorchScript vs ONNX Runtime.

Usage: fer-ros bench --backends   (or python -m fer_ros.bench.backends; after
`fer-ros models fetch`; onnxruntime comes with requirements/dev.txt).
Prints the median time of a batch of 1 and of 5 face crops for each backend and the
largest difference of ONNX Runtime's embeddings from PyTorch's.
"""

from __future__ import annotations

import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from fer_ros.pipeline.facenet import FaceEmbedder


def median_ms(call: Callable[[], object], repeats: int = 8) -> float:
    call()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e3


def main() -> int:
    torch.set_num_threads(1)
    model = FaceEmbedder().model.eval()
    crops = torch.randn(5, 3, 160, 160, generator=torch.Generator().manual_seed(0))
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation notices
        onnx_path = Path(tmp) / "facenet.onnx"
        torch.onnx.export(model, crops[:1], str(onnx_path), input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "n"}}, opset_version=17,
                          dynamo=False)
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(onnx_path), options,
                                       providers=["CPUExecutionProvider"])
        scripted = torch.jit.freeze(torch.jit.trace(model, crops[:1]).eval())
        for batch in (1, 5):
            x = crops[:batch]
            with torch.inference_mode():
                t_torch = median_ms(lambda x=x: model(x))
                t_script = median_ms(lambda x=x: scripted(x))
                reference = model(x).numpy()
            t_ort = median_ms(lambda x=x: session.run(None, {"x": x.numpy()}))
            diff = np.abs(session.run(None, {"x": x.numpy()})[0] - reference).max()
            print(f"FaceNet batch {batch}: torch {t_torch:.1f} ms, torchscript (frozen) "
                  f"{t_script:.1f} ms, onnxruntime {t_ort:.1f} ms, max diff {diff:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
