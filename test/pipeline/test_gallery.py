"""Gallery files: our format, the original system's JSON, bad input, atomic saves."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import fer_ros
from fer_ros.pipeline.recognition.gallery import UNKNOWN, Gallery, GalleryError

DIM = 8


def unit(seed: int, n: int = 1) -> np.ndarray:
    vecs = np.random.default_rng(seed).normal(size=(n, DIM))
    return vecs / np.linalg.norm(vecs, axis=1, keepdims=True)


def sample_gallery() -> Gallery:
    gallery = Gallery("model-a", DIM)
    gallery.add("ada", unit(1, 2))
    gallery.add("bob", unit(2))
    return gallery


def test_save_and_load_round_trip_with_mode_0600(tmp_path: Path) -> None:
    path = sample_gallery().save(tmp_path / "g.json")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = Gallery.load(path)
    assert loaded.names() == ["ada", "bob"] and loaded.model == "model-a"
    assert loaded.num_embeddings("ada") == 2
    assert np.allclose(loaded.people["ada"].embeddings, unit(1, 2), atol=1e-6)


def test_match_threshold_and_margin() -> None:
    gallery = sample_gallery()
    ada = unit(1)[0]
    noisy_ada = ada + 0.05 * unit(9)[0]
    stranger = unit(42)[0]
    matches = gallery.match(np.stack([noisy_ada, stranger]), threshold=0.8)
    assert matches[0].name == "ada" and matches[0].similarity > 0.9
    assert matches[1].name == UNKNOWN
    # An ambiguous face (equally close to two people) is unknown under a margin.
    twin = Gallery("model-a", DIM)
    twin.add("x", ada[None])
    twin.add("y", ada[None])
    assert twin.match(ada[None], threshold=0.5, margin=0.05)[0].name == UNKNOWN
    assert twin.match(ada[None], threshold=0.5, margin=0.0)[0].name in {"x", "y"}


def test_empty_gallery_matches_unknown() -> None:
    assert Gallery("m", DIM).match(unit(3), 0.5)[0].name == UNKNOWN


def test_legacy_face_embeddings_pytorch_json(tmp_path: Path) -> None:
    path = tmp_path / "face_embeddings_pytorch.json"
    path.write_text(json.dumps({"ada": unit(1)[0].tolist(), "bob": unit(2, 2).tolist()}))
    gallery = Gallery.load(path)
    assert gallery.names() == ["ada", "bob"] and gallery.num_embeddings("bob") == 2
    assert gallery.model == "facenet-pytorch-vggface2"
    assert gallery.dim == DIM and gallery.source_format == "face_embeddings_pytorch.json"
    assert gallery.people["bob"].sources == ["legacy:face_embeddings_pytorch.json"] * 2
    assert np.allclose(gallery.people["ada"].embeddings, unit(1))
    path.write_text(json.dumps({"embeddings": unit(4, 3).tolist(),
                                "labels": ["ada", "ada", "cy"]}))
    grouped = Gallery.load(path, legacy_model="other-model")
    assert grouped.names() == ["ada", "cy"] and grouped.model == "other-model"
    assert np.allclose(grouped.people["ada"].embeddings, unit(4, 3)[:2])
    assert np.allclose(grouped.people["cy"].embeddings, unit(4, 3)[2:])
    path.write_text(json.dumps({"embeddings": unit(5, 2).tolist(), "names": ["dee", 7]}))
    assert Gallery.load(path).names() == ["7", "dee"]  # names are strings


@pytest.mark.parametrize(("content", "problem"), [
    ({"embeddings": [[1.0, 0.0]], "labels": "ada"}, "'labels' must list one name per embedding"),
    ({"embeddings": [[1.0, 0.0]], "labels": ["ada", "bob"]},
     "'labels' must list one name per embedding"),
    ({"format": "other", "people": {}}, "unknown gallery format 'other'"),
    ({"schema_version": 2, "people": {}}, "unknown gallery format None"),
    ({}, "holds no embeddings"),
    ({"ada": [1.0, 0.0], "bob": [[1.0, 0.0, 0.0]]}, "embeddings of different lengths [2, 3]"),
])
def test_legacy_files_that_cannot_be_read(tmp_path: Path, content: dict, problem: str) -> None:
    path = tmp_path / "face_embeddings_pytorch.json"
    path.write_text(json.dumps(content))
    with pytest.raises(GalleryError) as info:
        Gallery.load(path)
    assert str(info.value).endswith(problem), str(info.value)


def test_mixing_embedding_spaces_is_refused(tmp_path: Path) -> None:
    gallery = sample_gallery()
    with pytest.raises(GalleryError, match="mixing embedding spaces"):
        gallery.check_model("model-b")


@pytest.mark.parametrize("content, problem", [
    ('{"format": "fer_ros.gallery", "schema_version": 1, "model": "m", "embed', "not valid JSON"),
    ("[1, 2]", "JSON object"),
    ('{"format": "fer_ros.gallery", "schema_version": 99, "model": "m", "embedding_dim": 8, '
     '"people": {}}', "schema_version 99"),
    ('{"format": "fer_ros.gallery", "schema_version": 1, "model": "m", "embedding_dim": 8, '
     '"people": {"ada": {"embeddings": [[1, 2, 3]]}}}', "embedding length 3, expected 8"),
    ('{"ada": [NaN, 1.0, 2.0]}', "NaN or infinite"),
    ('{"ada": [Infinity, 1.0, 2.0]}', "NaN or infinite"),
    ('{"ada": [1.0, 2.0], "bob": [1.0, 2.0, 3.0]}', "different lengths"),
    ('{"format": "fer_ros.gallery", "schema_version": 1, "model": "m", "embedding_dim": 2, '
     '"people": {"ada": {"embeddings": [[1, 2], [1]]}}}', "embeddings of different lengths (1, 2)"),
    ('{"ada": "abc"}', "non-empty list"),
    ("", "not valid JSON"),
])
def test_bad_files_give_a_clear_error_naming_the_file(tmp_path: Path, content: str,
                                                      problem: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(GalleryError) as info:
        Gallery.load(path)
    assert str(path) in str(info.value) and problem in str(info.value)


@pytest.mark.parametrize("name", ["", "   ", "unknown", "x" * 65, "a\nb"])
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(GalleryError):
        sample_gallery().add(name, unit(5))


def test_bad_embeddings_leave_the_gallery_as_it_was() -> None:
    gallery = sample_gallery()
    with pytest.raises(GalleryError):
        gallery.add("ada", np.full((1, DIM), np.nan))
    with pytest.raises(GalleryError):
        gallery.add("ada", unit(5)[:, :4])
    with pytest.raises(GalleryError, match="already enrolled"):
        gallery.add("ada", unit(5), on_existing="refuse")
    assert gallery.num_embeddings("ada") == 2


def test_failed_save_keeps_the_previous_file(tmp_path: Path, monkeypatch) -> None:
    path = sample_gallery().save(tmp_path / "g.json")
    before = path.read_bytes()
    gallery = Gallery.load(path)
    gallery.add("cy", unit(7))

    def broken_replace(*_args, **_kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        gallery.save()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["g.json"]  # no temp file left behind


def test_kill_during_save_never_leaves_a_partial_gallery(tmp_path: Path) -> None:
    """SIGKILL a process that saves a large gallery over and over; the file stays whole."""
    path = tmp_path / "g.json"
    script = textwrap.dedent(f"""
        import numpy as np, sys
        from fer_ros.pipeline.recognition.gallery import Gallery
        g = Gallery("m", 512)
        for i in range(40):
            g.add(f"p{{i}}", np.random.default_rng(i).normal(size=(5, 512)))
        g.save({str(path)!r})
        print("saved", sys.modules["fer_ros"].__file__, flush=True)
        while True:
            g.save({str(path)!r})
    """)
    for delay in (0.3, 0.55, 0.8):
        # Started outside the checkout: `python -c` puts its working folder first on the
        # path, and from the checkout's root it would import the source tree instead of
        # the installed package under test (the one this test process imports).
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                                cwd=tmp_path)
        assert proc.stdout.readline().decode().split() == ["saved", fer_ros.__file__]
        try:
            proc.wait(delay)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        gallery = Gallery.load(path)  # raises if truncated or corrupt
        assert len(gallery) == 40
