"""The pipeline on CUDA: the same faces, names and emotions as on the CPU, and half
precision within cosine 0.999 of float32 with the same emotion arg-max, on the test faces.

Marked ``cuda``; each test skips with the reason on a machine without a GPU (run them
where there is one: scripts/gpu_check.sh). Without a GPU, ``device: cuda`` must still
fail at start-up with a clear error: that is tested everywhere.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from conftest import data_path
from rosutil import frame_bgr

from fer_ros.pipeline import FacePipeline, FaceStreams, PipelineConfig
from fer_ros.pipeline.emotion import EmotionClassifier
from fer_ros.pipeline.recognition.facenet import FaceEmbedder

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="no CUDA device on this machine")
PEOPLE = ("ben_afflek", "elton_john", "jerry_seinfeld", "madonna", "mindy_kaling")


def faces() -> list[np.ndarray]:
    """One validation photo of each of the five people, letterboxed to 640x480 RGB."""
    out = []
    for person in PEOPLE:
        path = sorted(data_path("celebrity", "val", person).glob("*.jpg"))[0]
        out.append(cv2.cvtColor(frame_bgr(path), cv2.COLOR_BGR2RGB))
    return out


def test_cuda_without_a_gpu_is_a_clear_error() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match="CUDA is not available"):
        FacePipeline(PipelineConfig(device="cuda"))
    with pytest.raises(ValueError, match="half precision needs a CUDA device"):
        FaceEmbedder(device="cpu", half=True)


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize(("model", "embedder_runtime"), [("facenet", "torch"),
                                                         ("sface", "onnxruntime")])
def test_cuda_finds_and_names_what_the_cpu_does(model: str, embedder_runtime: str) -> None:
    """FaceNet runs on the GPU; SFace (ONNX Runtime, CPU) beside the GPU's other models."""
    cpu = FacePipeline(PipelineConfig(device="cpu", backend="torch", tracking=False,
                                      embedding_model=model))
    gpu = FacePipeline(PipelineConfig(device="cuda", backend="torch", tracking=False,
                                      embedding_model=model))
    assert gpu.device.startswith("cuda") and gpu.backends == {"embedder": embedder_runtime,
                                                              "emotion": "torch"}
    for image in faces():
        a, b = cpu.process(image, stamp=1.0), gpu.process(image, stamp=1.0)
        assert len(a) == len(b) == 1
        assert np.abs(a[0].box - b[0].box).max() < 2.0
        cosine = float(a[0].embedding @ b[0].embedding)
        assert cosine > 0.999, cosine
        assert a[0].emotion == b[0].emotion


@pytest.mark.cuda
@needs_cuda
def test_half_precision_keeps_embeddings_and_emotions() -> None:
    full = FaceEmbedder(device="cuda", backend="torch")
    half = FaceEmbedder(device="cuda", backend="torch", half=True)
    feel_full = EmotionClassifier(device="cuda", backend="torch")
    feel_half = EmotionClassifier(device="cuda", backend="torch", half=True)
    detector = FacePipeline(PipelineConfig(device="cuda", recognition=False,
                                           emotion=False)).detector
    for image in faces():
        boxes = np.stack([d.box for d in detector.detect(image)])
        e32, e16 = full.embed(image, boxes), half.embed(image, boxes)
        assert e16.dtype == np.float32
        cosine = np.sum(e32 * e16, axis=1)
        assert cosine.min() > 0.999, cosine
        p32, p16 = feel_full.predict(image, boxes), feel_half.predict(image, boxes)
        assert (p32.argmax(axis=1) == p16.argmax(axis=1)).all(), (p32, p16)


@pytest.mark.cuda
@needs_cuda
def test_streams_batch_on_the_gpu() -> None:
    streams = FaceStreams(PipelineConfig(device="cuda", backend="torch", half_precision=True),
                          names=[f"cam{k}" for k in range(len(PEOPLE))])
    images = faces()
    out = streams.process({f"cam{k}": (img, "rgb", 1.0) for k, img in enumerate(images)})
    assert all(len(v) == 1 and v[0].emotion for v in out.values()), out
    assert streams["cam0"].last_times.embedded == 1
