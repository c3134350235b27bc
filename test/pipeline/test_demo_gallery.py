"""`fer-ros demo`'s gallery: one of another embedding model is set aside, not refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fer_ros.cli.demo import set_aside_other_model
from fer_ros.pipeline import Gallery
from fer_ros.pipeline.recognition import gallery_file, spaces


def test_a_demo_gallery_of_another_model_is_set_aside(tmp_path: Path, capsys) -> None:
    path = tmp_path / "gallery.json"
    set_aside_other_model(path)  # none yet: nothing to do
    assert list(tmp_path.iterdir()) == []
    old = Gallery(spaces.FACENET, 4)
    old.add("ada", np.eye(4, dtype=np.float32)[:1])
    gallery_file.save(old, path)
    content = path.read_bytes()
    set_aside_other_model(path)
    aside = tmp_path / f"gallery.{spaces.FACENET}.json"
    assert not path.exists() and aside.read_bytes() == content
    assert f"kept as {aside}" in capsys.readouterr().out
    current = Gallery(spaces.SFACE, 4)
    current.add("bob", np.eye(4, dtype=np.float32)[:1])
    gallery_file.save(current, path)
    set_aside_other_model(path)  # the default model's own: kept where it is
    assert path.exists()
