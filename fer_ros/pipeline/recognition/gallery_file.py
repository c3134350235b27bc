"""A gallery as a JSON file (the JSON storage kind, `fer-ros gallery export`).

Two file formats are read:

* ours (``"format": "fer_ros.gallery"``, ``schema_version`` 1): several embeddings per
  person, the embedding model's name (the embedding space), creation/update times;
* the original system's ``face_embeddings_pytorch.json``: a JSON object of saved
  embeddings with their labels, in any of the shapes ``{"name": [512 floats]}``,
  ``{"name": [[512 floats], ...]}`` or ``{"embeddings": [[...]], "labels": [...]}``
  (``names`` accepted for ``labels``). It carries no model name, so it is taken to be in
  the space of ``legacy_model`` (the original system used facenet-pytorch's VGGFace2
  weights).

Only our format is written, atomically (temporary file in the same folder, fsync,
rename) with mode 0600, because embeddings are biometric data. Any problem in a file
raises GalleryError naming the file.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from fer_ros.pipeline.recognition.gallery import Gallery, GalleryError, checked_embeddings

FORMAT = "fer_ros.gallery"
SCHEMA_VERSION = 1
LEGACY_MODEL = "facenet-pytorch-vggface2"


def to_json(gallery: Gallery) -> dict:
    out = {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "model": gallery.model,
        "embedding_dim": gallery.dim,
        "created": gallery.created,
        "updated": gallery.updated,
        "people": {
            name: {
                "embeddings": [[round(float(v), 7) for v in row] for row in p.embeddings],
                "added": p.added,
                "sources": p.sources,
            }
            for name, p in sorted(gallery.people.items())
        },
    }
    # Written only when there are any, so galleries without them stay byte for byte as
    # before. Tombstones of forgotten people: a name and a date, nothing biometric.
    if gallery.forgotten:
        out["forgotten"] = dict(sorted(gallery.forgotten.items()))
    if gallery.last_seen:
        out["last_seen"] = dict(sorted(gallery.last_seen.items()))
    if gallery.retention_since:
        out["retention_since"] = gallery.retention_since
    return out


def save(gallery: Gallery, path: str | Path | None = None, shred: bool = False) -> Path:
    """Write ``gallery`` to ``path`` (default: where it was read from) atomically with
    mode 0600; the previous file stays intact on any failure. The gallery's path becomes
    ``path``. ``shred``: the previous file's bytes are overwritten with zeros once the new
    one is in place (a forgotten person's embeddings must not stay on the disk in a file
    that is merely unlinked); a crash in between leaves the new gallery, whole."""
    target = Path(path) if path is not None else gallery.path
    if target is None:
        raise GalleryError("no path to save the gallery to")
    target = target.expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    payload = json.dumps(to_json(gallery), indent=1).encode()
    # Held open across the rename: the old file, unlinked by it, can still be overwritten.
    old = _open_existing(target) if shred else None
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp",
                                    dir=target.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        if old is not None:
            os.close(old)
        raise
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)
    if old is not None:
        _zero_and_close(old)
    gallery.path = target
    return target


def _open_existing(path: Path) -> int | None:
    try:
        return os.open(path, os.O_WRONLY)
    except FileNotFoundError:
        return None


def _zero_and_close(fd: int) -> None:
    try:
        size = os.fstat(fd).st_size
        os.lseek(fd, 0, os.SEEK_SET)
        block = bytes(min(size, 1 << 20))
        written = 0
        while written < size:
            written += os.write(fd, block[:size - written])
        os.fsync(fd)
    finally:
        os.close(fd)


def load(path: str | Path, legacy_model: str = LEGACY_MODEL) -> Gallery:
    """Read a gallery file of either format."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise GalleryError(f"gallery {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise GalleryError(f"gallery {path} cannot be read: {exc}") from None
    try:
        data = json.loads(text)  # NaN and Infinity load as floats: refused below
    except json.JSONDecodeError as exc:
        raise GalleryError(f"gallery {path} is not valid JSON (truncated or corrupt?): "
                           f"{exc}") from None
    if not isinstance(data, dict):
        raise GalleryError(f"gallery {path}: expected a JSON object at the top level")
    try:
        if data.get("format") == FORMAT:
            gallery = _from_ours(data)
        else:
            gallery = _from_legacy(data, path, legacy_model)
    except GalleryError as exc:
        raise GalleryError(f"gallery {path}: {exc}") from None
    gallery.path = path
    return gallery


def _from_ours(data: dict) -> Gallery:
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise GalleryError(f"schema_version {version!r} is not supported "
                           f"(this fer_ros reads {SCHEMA_VERSION})")
    model, dim, people = data.get("model"), data.get("embedding_dim"), data.get("people")
    if not isinstance(model, str) or not model:
        raise GalleryError("no embedding model name")
    if not isinstance(dim, int) or dim <= 0:
        raise GalleryError(f"bad embedding_dim {dim!r}")
    if not isinstance(people, dict):
        raise GalleryError("'people' must be an object")
    gallery = Gallery(model, dim)
    gallery.source_format = FORMAT
    gallery.created = str(data.get("created", gallery.created))
    for name, entry in people.items():
        if not isinstance(entry, dict) or "embeddings" not in entry:
            raise GalleryError(f"person {name!r} has no embeddings")
        embeddings = _checked(entry["embeddings"], name)
        sources = entry.get("sources")
        # Optional bookkeeping: left out when unusable.
        usable = isinstance(sources, list) and len(sources) == len(embeddings)
        person = gallery.add(name, embeddings, [str(s) for s in sources] if usable else None)
        added = entry.get("added")
        if isinstance(added, list) and len(added) == len(person.embeddings):
            person.added = [str(a) for a in added]
    gallery.updated = str(data.get("updated", gallery.created))
    forgotten = data.get("forgotten", {})
    if not isinstance(forgotten, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in forgotten.items()):
        raise GalleryError("'forgotten' must map names to dates")
    gallery.forgotten = dict(forgotten)
    last_seen = data.get("last_seen", {})
    if not isinstance(last_seen, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in last_seen.items()):
        raise GalleryError("'last_seen' must map names to dates")
    gallery.last_seen = dict(last_seen)
    gallery.retention_since = str(data.get("retention_since", ""))
    return gallery


def _from_legacy(data: dict, path: Path, legacy_model: str) -> Gallery:
    if "embeddings" in data and ("labels" in data or "names" in data):
        labels = data.get("labels", data.get("names"))
        embeddings = _checked(data["embeddings"], "embeddings")
        if not isinstance(labels, list) or len(labels) != len(embeddings):
            raise GalleryError("'labels' must list one name per embedding")
        grouped: dict[str, list] = {}
        for label, emb in zip(labels, embeddings, strict=True):
            grouped.setdefault(str(label), []).append(emb)
    elif "format" in data or "schema_version" in data:
        raise GalleryError(f"unknown gallery format {data.get('format')!r}")
    else:
        grouped = {str(name): _checked(value, name) for name, value in data.items()}
    if not grouped:
        raise GalleryError("holds no embeddings")
    arrays = {name: checked_embeddings(v, None, f"person {name!r}")
              for name, v in grouped.items()}
    dims = sorted({a.shape[1] for a in arrays.values()})
    if len(dims) != 1:
        raise GalleryError(f"embeddings of different lengths {dims}")
    gallery = Gallery(legacy_model, dims[0])
    gallery.source_format = "face_embeddings_pytorch.json"
    for name, arr in arrays.items():
        gallery.add(name, arr, [f"legacy:{path.name}"] * len(arr))
    return gallery


def _checked(values: object, name: str) -> list:
    if not isinstance(values, list) or not values:
        raise GalleryError(f"embeddings of {name!r} must be a non-empty list")
    return values
