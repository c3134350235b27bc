"""train-emotion: learns synthetic classes from a FER2013 CSV and from an image folder,
resumes from a checkpoint exactly, fine-tunes from the shipped weights, exports ONNX
that agrees with PyTorch, and the model plugs into the pipeline with its own labels."""

from __future__ import annotations

import csv
import json
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import data_path

from fer_ros import cli
from fer_ros.paths import models_dir, node_executable
from fer_ros.pipeline import emotion
from fer_ros.pipeline.emotion import (
    ARCHITECTURES,
    FER2013_LABELS,
    EmotionClassifier,
    EmotionModelSpec,
    build_model,
    head_keys,
    load_emotion_model,
    save_emotion_model,
)
from fer_ros.pipeline.training import (
    CHECKPOINT_FORMAT,
    FaceAugment,
    TrainConfig,
    TrainError,
    assign_splits,
    init_from,
    load_checkpoint,
    read_fer2013_csv,
    train,
)

LABELS = ("stripes_h", "stripes_v", "blob")


@pytest.fixture(autouse=True)
def one_thread() -> None:
    # Two cores shared with other jobs: training in tests stays single-threaded.
    torch.set_num_threads(1)


def pattern(kind: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """A grayscale image whose class survives flips, small rotations and brightness
    changes: horizontal stripes, vertical stripes, or a bright disc, with noise."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    period = size / rng.uniform(4.0, 6.0)
    phase = rng.uniform(0, 2 * np.pi)
    if kind == 0:
        image = 0.5 + 0.4 * np.sin(2 * np.pi * yy / period + phase)
    elif kind == 1:
        image = 0.5 + 0.4 * np.sin(2 * np.pi * xx / period + phase)
    else:
        cy, cx = size / 2 + rng.uniform(-3, 3, 2)
        radius = size * rng.uniform(0.2, 0.3)
        image = np.where((yy - cy) ** 2 + (xx - cx) ** 2 < radius ** 2, 0.85, 0.25)
    image = image * rng.uniform(0.7, 1.1) + rng.normal(0, 0.06, image.shape)
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)


def write_csv(path: Path, per_class: dict[str, int], seed: int = 0,
              codes: tuple[int, ...] = (0, 1, 2)) -> Path:
    """FER2013 layout: emotion,pixels,Usage with 48x48 images."""
    rng = np.random.default_rng(seed)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["emotion", "pixels", "Usage"])
        for usage, n in per_class.items():
            for i in range(n * len(codes)):
                kind = i % len(codes)
                pixels = " ".join(map(str, pattern(kind, 48, rng).ravel()))
                writer.writerow([codes[kind], pixels, usage])
    return path


def write_folder(root: Path, n: int, seed: int = 1, size: int = 56) -> Path:
    """One sub-folder per class of RGB PNGs (gray pattern tinted per image)."""
    rng = np.random.default_rng(seed)
    for kind, label in enumerate(LABELS):
        (root / label).mkdir(parents=True)
        for i in range(n):
            gray = pattern(kind, size, rng).astype(np.float64)
            tint = rng.uniform(0.8, 1.0, 3)
            bgr = np.clip(gray[..., None] * tint, 0, 255).astype(np.uint8)
            cv2.imwrite(str(root / label / f"{i:03d}.png"), bgr)
    (root / LABELS[0] / "broken.png").write_bytes(b"not an image")
    return root


def quick_config(tmp: Path, data: Path, **overrides) -> TrainConfig:
    values = dict(data=str(data), out=str(tmp / "model.pt"), input_size=32, epochs=4,
                  batch_size=16, lr=3e-3, patience=10, device="cpu", seed=0)
    values.update(overrides)
    return TrainConfig(**values)


@pytest.fixture(scope="module")
def csv_run(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("csv")
    data = write_csv(tmp / "fer.csv", {"Training": 40, "PublicTest": 10, "PrivateTest": 10})
    code = cli.main(["train-emotion", "--data", str(data), "--out", str(tmp / "model.pt"),
                     "--labels", ",".join(LABELS), "--input-size", "32", "--epochs", "5",
                     "--batch-size", "16", "--lr", "3e-3", "--device", "cpu",
                     "--onnx", str(tmp / "model.onnx"), "--no-progress"])
    assert code == 0
    return tmp


def test_csv_training_learns_and_reports(csv_run: Path) -> None:
    _, spec = load_emotion_model(csv_run / "model.pt")
    assert spec.labels == LABELS and spec.input_size == 32 and spec.channels == 1
    assert spec.architecture == "mini_xception"
    report = json.loads((csv_run / "model.report.json").read_text())
    history = report["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4, 5]
    assert history[-1]["train_loss"] < 0.8 * history[0]["train_loss"]
    # PrivateTest rows (held out from training and model selection) are well above chance.
    assert report["split"] == "test" and report["samples"] == 30
    assert report["accuracy"] >= 0.7, report
    assert set(report["per_class"]) == set(LABELS)
    assert sum(m["support"] for m in report["per_class"].values()) == 30
    assert np.asarray(report["confusion"]).sum() == 30
    training = report["training"]
    assert training["data"]["kind"] == "fer2013_csv"
    assert training["data"]["counts"]["train"] == dict.fromkeys(LABELS, 40)
    assert training["data"]["counts"]["val"] == dict.fromkeys(LABELS, 10)
    png = cv2.imread(str(csv_run / "model.confusion.png"))
    assert png is not None and png.shape[0] > 100
    # The metadata travels inside the model file, as save_emotion_model writes it.
    payload = torch.load(csv_run / "model.pt", weights_only=True)
    assert payload["format"] == emotion.MODEL_FORMAT
    assert payload["training"]["evaluation"]["accuracy"] == report["accuracy"]


def test_onnx_matches_pytorch(csv_run: Path) -> None:
    import onnx
    import onnxruntime

    module, spec = load_emotion_model(csv_run / "model.pt")
    meta = {p.key: p.value for p in onnx.load(str(csv_run / "model.onnx")).metadata_props}
    assert EmotionModelSpec.from_dict(json.loads(meta["fer_ros.spec"])) == spec
    rng = np.random.default_rng(5)
    x = np.stack([pattern(k % 3, 32, rng) for k in range(5)])[:, None].astype(np.float32)
    x = emotion.NORMALISATIONS[spec.normalisation](x).astype(np.float32)
    session = onnxruntime.InferenceSession(str(csv_run / "model.onnx"),
                                           providers=["CPUExecutionProvider"])
    (onnx_probs,) = session.run(["probs"], {"input": x})
    with torch.inference_mode():
        torch_probs = torch.softmax(module(torch.from_numpy(x)), 1).numpy()
    assert onnx_probs.shape == (5, 3)
    np.testing.assert_allclose(onnx_probs, torch_probs, atol=1e-5)


def test_image_folder_training_and_classifier(tmp_path: Path) -> None:
    data = write_folder(tmp_path / "faces", n=30)
    config = quick_config(tmp_path, data, architecture="resnet_fer", val_fraction=0.2,
                          test_fraction=0.2, epochs=4, lr=2e-3, batch_size=8)
    logs: list[str] = []
    result = train(config, progress=False, log=logs.append)
    assert any("skipped 1 unreadable" in line for line in logs)
    assert result.spec.labels == tuple(sorted(LABELS))  # sorted folder names
    assert result.spec.architecture == "resnet_fer"
    assert result.report["split"] == "test" and result.report["samples"] == 18
    assert result.report["accuracy"] >= 0.6, result.report
    # The trained model in the runtime classifier: its labels, and the right answers
    # for fresh samples drawn as RGB frames with a box around the pattern.
    classifier = EmotionClassifier(result.model_path, device="cpu")
    assert classifier.labels == tuple(sorted(LABELS))
    rng = np.random.default_rng(99)
    correct = 0
    for kind in (0, 1, 2) * 4:
        frame = np.full((120, 160, 3), 90, np.uint8)
        frame[30:86, 50:106] = pattern(kind, 56, rng)[..., None]
        probs = classifier.predict(frame, np.array([[55.0, 35.0, 101.0, 81.0]]))
        assert probs.shape == (1, 3) and abs(float(probs.sum()) - 1.0) < 1e-5
        correct += int(classifier.labels[int(probs[0].argmax())] == LABELS[kind])
    assert correct >= 8, correct


def test_resume_continues_exactly(tmp_path: Path) -> None:
    data = write_csv(tmp_path / "fer.csv", {"Training": 12, "PublicTest": 4}, seed=3)
    common = dict(labels=LABELS, batch_size=8)
    full = train(quick_config(tmp_path / "full", data, epochs=3, **common), progress=False,
                 log=lambda _: None)
    train(quick_config(tmp_path / "part", data, epochs=2, **common), progress=False,
          log=lambda _: None)
    checkpoint = tmp_path / "part" / "model.pt.ckpt"
    saved = load_checkpoint(checkpoint)
    assert saved["format"] == CHECKPOINT_FORMAT and saved["epoch"] == 2
    logs: list[str] = []
    resumed = train(quick_config(tmp_path / "part", data, epochs=3,
                                 resume=str(checkpoint), **common),
                    progress=False, log=logs.append)
    assert any("resumed" in line and "after epoch 2" in line for line in logs)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    assert resumed.history[:2] == saved["history"]
    # Model, optimiser and random streams were all restored: same as never stopping.
    for got, want in zip(resumed.history, full.history, strict=True):
        assert got == pytest.approx(want, rel=1e-5)
    a, _ = load_emotion_model(full.model_path)
    b, _ = load_emotion_model(resumed.model_path)
    for (key, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6, msg=key)
    assert load_checkpoint(checkpoint)["epoch"] == 3
    # Other data cannot continue this checkpoint.
    other = write_csv(tmp_path / "other.csv", {"Training": 12, "PublicTest": 4}, seed=4)
    with pytest.raises(TrainError, match="other data"):
        train(quick_config(tmp_path / "part", other, epochs=4, resume=str(checkpoint),
                           **common), progress=False, log=lambda _: None)
    # A finished model is not a checkpoint.
    with pytest.raises(TrainError, match="finished model"):
        load_checkpoint(resumed.model_path)


def test_augment_keeps_shape_range_and_is_reproducible() -> None:
    x = torch.from_numpy(np.stack([pattern(0, 32, np.random.default_rng(0))])[:, None]
                         .astype(np.float32)).repeat(6, 1, 1, 1)
    a = FaceAugment()(x, torch.Generator().manual_seed(1))
    b = FaceAugment()(x, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and float(a.min()) >= 0 and float(a.max()) <= 255
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a[0], a[1])  # each image gets its own draw
    # With every change off it is the identity (sampling grid exact at pixel centres).
    still = FaceAugment(flip=False, rotation=0, scale=0, translate=0, brightness=0,
                        contrast=0)(x, torch.Generator().manual_seed(1))
    torch.testing.assert_close(still, x, atol=1e-3, rtol=0)


def test_splits_and_data_errors(tmp_path: Path) -> None:
    data = read_fer2013_csv(write_csv(tmp_path / "a.csv", {"": 10}), 48, 1, LABELS)
    assert set(data.split) == {""}
    assign_splits(data, 0.2, 0.1, seed=0)
    counts = data.counts()
    assert counts["train"] == dict.fromkeys(LABELS, 7)
    assert counts["val"] == dict.fromkeys(LABELS, 2)
    assert counts["test"] == dict.fromkeys(LABELS, 1)
    # FER2013 codes by default; codes outside 0..6 need --labels.
    default = read_fer2013_csv(tmp_path / "a.csv", 48, 1)
    assert default.labels == FER2013_LABELS
    with pytest.raises(TrainError, match="no training images"):
        assign_splits(default, 0.2, 0.0, seed=0)
    write_csv(tmp_path / "b.csv", {"Training": 2}, codes=(0, 1, 9))
    with pytest.raises(TrainError, match="--labels"):
        read_fer2013_csv(tmp_path / "b.csv", 48, 1)
    (tmp_path / "c.csv").write_text("label,image\n1,0 0 0 0\n")
    with pytest.raises(TrainError, match="emotion,pixels"):
        read_fer2013_csv(tmp_path / "c.csv", 48, 1)
    (tmp_path / "d.csv").write_text("emotion,pixels\n1,0 0 0\n")
    with pytest.raises(TrainError, match="not a square"):
        read_fer2013_csv(tmp_path / "d.csv", 48, 1)
    with pytest.raises(TrainError, match="no such file"):
        train(quick_config(tmp_path, tmp_path / "missing.csv"), progress=False)
    # The command line reports the same problems without a traceback.
    assert cli.main(["train-emotion", "--data", str(tmp_path / "c.csv"),
                     "--out", str(tmp_path / "m.pt"), "--no-progress"]) == 1


def test_init_from_fer2013_weights(tmp_path: Path) -> None:
    if not (models_dir() / emotion.DEFAULT_MODEL_FILE).is_file():
        pytest.fail("the FER2013 model is missing: run `fer-ros models fetch`")
    source, fer_spec = load_emotion_model(models_dir() / emotion.DEFAULT_MODEL_FILE)
    src = source.state_dict()
    # Same seven labels: every weight, head included, is the shipped model's.
    same = build_model(fer_spec)
    info = init_from(same, fer_spec, "fer2013")
    assert info["head"] == "kept"
    for key, value in same.state_dict().items():
        torch.testing.assert_close(value, src[key], msg=key)
    # Three labels, two of them FER2013's: body copied, head rows carried by name.
    labels = ("happy", "calm", "angry")
    spec = EmotionModelSpec("mini_xception", labels, 64, 1, "minus_one_to_one")
    model = build_model(spec)
    info = init_from(model, spec, "fer2013")
    assert info["head"] == "new" and info["head_rows_carried"] == ["happy", "angry"]
    state = model.state_dict()
    torch.testing.assert_close(state["blocks.2.sep1.pointwise.weight"],
                               src["blocks.2.sep1.pointwise.weight"])
    torch.testing.assert_close(state["head.weight"][0], src["head.weight"][3])
    torch.testing.assert_close(state["head.weight"][2], src["head.weight"][0])
    assert not torch.allclose(state["head.weight"][1], src["head.weight"][6])
    # The stronger architecture has no FER2013 weights to start from.
    data = write_csv(tmp_path / "a.csv", {"Training": 4, "PublicTest": 2})
    with pytest.raises(TrainError, match="cannot initialise 'resnet_fer'"):
        train(quick_config(tmp_path, data, architecture="resnet_fer", input_size=None,
                           init="fer2013"), progress=False)
    # A short fine-tune takes the source's input size and normalisation.
    result = train(quick_config(tmp_path, data, input_size=None, init="fer2013", epochs=1,
                                labels=("angry", "disgust", "fear")),
                   progress=False, log=lambda _: None)
    assert result.spec.input_size == 64 and result.spec.normalisation == "minus_one_to_one"
    assert result.spec.labels == ("angry", "disgust", "fear")


def test_every_architecture_names_its_output_layer() -> None:
    # --init carries output rows over by label: each architecture declares its head in
    # the registry (emotion/model.py), one row per label.
    for name in ARCHITECTURES:
        state = build_model(EmotionModelSpec(name, LABELS, 32, 1, "minus_one_to_one")).state_dict()
        keys = head_keys(name)
        assert keys and set(keys) <= set(state), name
        assert all(state[k].shape[0] == len(LABELS) for k in keys), name


def test_bad_models_are_refused_by_classifier(tmp_path: Path, csv_run: Path) -> None:
    module, spec = load_emotion_model(csv_run / "model.pt")
    payload = torch.load(csv_run / "model.pt", weights_only=True)
    # Four labels for three output units.
    bad = dict(payload, spec=dict(payload["spec"], labels=[*LABELS, "extra"]))
    torch.save(bad, tmp_path / "labels.pt")
    with pytest.raises(ValueError, match="weights do not fit"):
        EmotionClassifier(tmp_path / "labels.pt", device="cpu")
    # No metadata at all: a bare state dict.
    torch.save(module.state_dict(), tmp_path / "bare.pt")
    with pytest.raises(ValueError, match="format"):
        EmotionClassifier(tmp_path / "bare.pt", device="cpu")
    # Spec without labels.
    no_labels = dict(payload, spec={k: v for k, v in payload["spec"].items() if k != "labels"})
    torch.save(no_labels, tmp_path / "nolabels.pt")
    with pytest.raises(ValueError, match="missing \\['labels'\\]"):
        EmotionClassifier(tmp_path / "nolabels.pt", device="cpu")
    # The training checkpoint is not a model either.
    with pytest.raises(ValueError, match=r"fer_ros\.emotion_checkpoint/1"):
        EmotionClassifier(csv_run / "model.pt.ckpt", device="cpu")
    # Weights saved under another architecture's name.
    wrong = EmotionModelSpec("resnet_fer", LABELS, 32, 1, "minus_one_to_one")
    save_emotion_model(tmp_path / "arch.pt", module, spec)
    arch = torch.load(tmp_path / "arch.pt", weights_only=True)
    arch["spec"]["architecture"] = wrong.architecture
    torch.save(arch, tmp_path / "arch.pt")
    with pytest.raises(ValueError, match="do not fit 'resnet_fer'"):
        EmotionClassifier(tmp_path / "arch.pt", device="cpu")


def test_custom_labels_reach_pipeline_and_identify(csv_run: Path, capsys) -> None:
    """A 3-class model decides the labels the pipeline (and so the node) publishes."""
    from fer_ros.pipeline import FacePipeline, PipelineConfig

    image = cv2.cvtColor(cv2.imread(str(data_path("pyfeat", "single_face.jpg"))),
                         cv2.COLOR_BGR2RGB)
    pipeline = FacePipeline(PipelineConfig(device="cpu", recognition=False, tracking=False,
                                           emotion_weights=str(csv_run / "model.pt")))
    assert pipeline.emotion_labels == LABELS
    (face,) = pipeline.process(image)
    assert face.emotion_labels == LABELS and face.emotion in LABELS
    assert face.emotion_scores.shape == (3,)
    assert abs(float(face.emotion_scores.sum()) - 1.0) < 1e-5
    capsys.readouterr()
    code = cli.main(["identify", str(data_path("pyfeat", "single_face.jpg")), "--device", "cpu",
                     "--emotion-weights", str(csv_run / "model.pt")])
    assert code == 0
    (line,) = capsys.readouterr().out.strip().splitlines()
    assert json.loads(line)["emotion"] in LABELS


def test_perception_node_publishes_the_models_labels(csv_run: Path, tmp_path: Path) -> None:
    """Over DDS: the node's emotion_weights parameter loads the 3-class model, and the
    published emotion_labels are its labels, not FER2013's."""
    from conftest import Proc, wait_for
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rosutil import TestNode, frame_bgr, handshake
    from sensor_msgs.msg import Image

    from fer_ros.msg import FaceEmotionArray
    from fer_ros.ros.image_codec import image_to_msg

    exe = str(node_executable("perception_node"))
    proc = Proc([exe, "--ros-args", "-r", "__node:=trained_perception",
                 "-r", "image:=/trained/image_raw", "-r", "faces/emotions:=/trained/emotions",
                 "-p", f"emotion_weights:={csv_run / 'model.pt'}", "-p", "qos:=reliable",
                 "-p", "device:=cpu", "-p", "enable_recognition:=false"],
                tmp_path / "perception.log")
    client = TestNode("trained_perception_client")
    try:
        outputs: list[FaceEmotionArray] = []
        lock = threading.Lock()

        def on_output(msg: FaceEmotionArray) -> None:
            with lock:
                outputs.append(msg)

        node = client.node
        node.create_subscription(FaceEmotionArray, "/trained/emotions", on_output, 10)
        publisher = node.create_publisher(
            Image, "/trained/image_raw", QoSProfile(depth=10,
                                                    reliability=ReliabilityPolicy.RELIABLE))
        assert wait_for(lambda: "models loaded" in proc.output(), 120), proc.output()
        assert "stripes_h/stripes_v/blob" in proc.output()
        # The same image until it is answered: only an answer proves both sides have
        # matched (rosutil.handshake).
        image = image_to_msg(frame_bgr(data_path("pyfeat", "single_face.jpg")), "bgr8")
        handshake(lambda _: publisher.publish(image), lambda: bool(outputs), 60)
        (face,) = outputs[0].faces
        assert list(face.emotion_labels) == list(LABELS)
        assert face.emotion in LABELS and len(face.emotion_scores) == 3
        assert face.name == ""  # recognition off
    finally:
        client.close()
        assert proc.interrupt() == 0, proc.output()[-2000:]
