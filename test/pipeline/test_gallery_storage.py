"""Gallery storage kinds (JSON, SQLite, PostgreSQL), incremental catch-up, conversion,
crash safety, and matching that gives today's answers with one matrix product."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from pgutil import PostgresCluster, postgres, postgres_server  # noqa: F401 (fixtures)
from syncutil import Holder, Log

from fer_ros.paths import fer_ros_command
from fer_ros.pipeline.recognition import gallery_file
from fer_ros.pipeline.recognition.gallery import Gallery, GalleryError
from fer_ros.pipeline.recognition.storage import GalleryStorage, copy_gallery, open_storage
from fer_ros.pipeline.recognition.storage.postgres import redact
from fer_ros.pipeline.recognition.sync import GallerySync

DIM = 16
MODEL = "test-model"
rng = np.random.default_rng(7)


def unit(n: int = 1) -> np.ndarray:
    v = rng.standard_normal((n, DIM))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_matching_is_todays_rule_with_one_matrix_product() -> None:
    gallery = Gallery(MODEL, DIM)
    for i in range(60):
        gallery.add(f"p{i:02d}", unit(1 + i % 3))
    faces = np.concatenate([unit(7), gallery.people["p05"].embeddings[:1]])
    per_person, names = gallery.similarities(faces)
    reference = np.array([[float((f @ gallery.people[n].embeddings.T).max()) for n in names]
                          for f in faces])
    np.testing.assert_allclose(per_person, reference, atol=1e-6)
    for row, match in zip(reference, gallery.match(faces, 0.5, 0.05), strict=True):
        order = np.argsort(row)[::-1]
        best, second = row[order[0]], row[order[1]]
        expected = names[order[0]] if best >= 0.5 and best - second >= 0.05 else "unknown"
        assert (match.name, match.best) == (expected, names[order[0]])
        assert match.similarity == pytest.approx(best) and match.runner_up == pytest.approx(
            second)
    assert gallery.match(faces[-1:], 0.5, 0.05)[0].name == "p05"


@pytest.mark.parametrize("suffix", [".db", ".json"])
def test_storage_round_trip_and_private_files(tmp_path: Path, suffix: str) -> None:
    storage = open_storage(str(tmp_path / f"g{suffix}"), MODEL, DIM)
    assert not storage.exists()
    storage.add("ada", unit(2), ["a", "b"])
    storage.add("bob", unit(1), ["c"])
    storage.add("ada", unit(1), ["d"])  # append
    with pytest.raises(GalleryError, match="already enrolled"):
        storage.add("bob", unit(1), ["e"], on_existing="refuse")
    storage.remove("bob")
    gallery = open_storage(str(tmp_path / f"g{suffix}")).load()
    assert gallery.names() == ["ada"] and len(gallery.people["ada"].embeddings) == 3
    assert gallery.people["ada"].sources == ["a", "b", "d"]
    for path in tmp_path.iterdir():
        assert path.stat().st_mode & 0o777 == 0o600, path
    with pytest.raises(GalleryError, match="other-model"):
        open_storage(str(tmp_path / f"g{suffix}"), "other-model", DIM).add("cy", unit(1), ["x"])


def test_corrupt_sqlite_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"not a database" * 100)
    with pytest.raises(GalleryError, match=r"bad\.db.*not an SQLite database"):
        open_storage(str(bad)).load()


def exercise_catch_up(storage: GalleryStorage, other: GalleryStorage) -> None:
    """`other` (another process) edits; the store takes in only what changed."""
    other.add("ada", unit(1), ["first"])
    log = Log()
    pipeline = Holder(MODEL, DIM)
    store = GallerySync(pipeline, "", True, log)
    store._storage = storage  # the location under test, opened by the caller
    assert store.reload()[0] and pipeline.gallery.names() == ["ada"]
    before = pipeline.gallery.people["ada"]
    other.add("bob", unit(2), ["x", "y"])
    store.watch()
    assert pipeline.gallery.names() == ["ada", "bob"]
    assert pipeline.gallery.people["ada"] is before  # not reloaded: only bob was read
    other.remove("ada")
    store.watch()
    assert pipeline.gallery.names() == ["bob"]
    enrolled = store.enroll("cy", unit(1)[0], append=False)
    assert enrolled.persisted and pipeline.gallery.names() == ["bob", "cy"]
    assert other.load().names() == ["bob", "cy"]
    assert not [line for line in log.lines if line[0] == "error"], log.lines


def test_sqlite_catch_up_is_incremental(tmp_path: Path) -> None:
    path = str(tmp_path / "g.db")
    exercise_catch_up(open_storage(path, MODEL, DIM), open_storage(path, MODEL, DIM))


def test_postgres_catch_up_and_outage(postgres: PostgresCluster) -> None:  # noqa: F811
    storage = open_storage(postgres.url, MODEL, DIM)
    other = open_storage(postgres.url, MODEL, DIM)
    exercise_catch_up(storage, other)
    log = Log()
    pipeline = Holder(MODEL, DIM)
    store = GallerySync(pipeline, postgres.url, True, log)
    assert store.reload()[0]
    postgres.stop()
    store.watch()
    store.watch()
    errors = [m for level, m in log.lines if level == "error"]
    assert len(errors) == 1 and "cannot reach the database" in errors[0], log.lines
    assert pipeline.gallery.names() == ["bob", "cy"]  # recognition keeps the last gallery
    with pytest.raises(GalleryError):
        store.enroll("dee", unit(1)[0], append=False)
    postgres.start()
    store.watch()
    assert any("readable again" in m for _, m in log.lines), log.lines
    store.close()
    storage.close()
    other.close()


def test_postgres_listen_calls_back_at_each_edit_and_once_when_the_server_goes(
        postgres: PostgresCluster) -> None:  # noqa: F811
    """NOTIFY, not polling: nothing here polls, so every call is the listener's."""
    calls: queue.Queue[int] = queue.Queue()
    listener = open_storage(postgres.url, MODEL, DIM)
    writer = open_storage(postgres.url, MODEL, DIM)
    listener.listen(lambda: calls.put(1))
    listener.listen(lambda: calls.put(2))  # one listener per storage: ignored
    threads = [t for t in threading.enumerate() if t.name == "gallery-listen"]
    assert len(threads) == 1 and threads[0].daemon  # never holds up the process's exit
    assert calls.get(timeout=10) == 1  # listening: catch up on anything missed before
    for name in ("ada", "bob"):
        writer.add(name, unit(1), ["x"])
        assert calls.get(timeout=10) == 1, name
    writer.remove("ada")
    assert calls.get(timeout=10) == 1
    writer.close()
    postgres.stop()
    assert calls.get(timeout=10) == 1  # the connection broke: look (and find it gone)
    postgres.start()
    assert calls.get(timeout=10) == 1  # listening again: catch up on anything missed
    writer = open_storage(postgres.url, MODEL, DIM)
    writer.add("cy", unit(1), ["x"])
    assert calls.get(timeout=10) == 1
    writer.close()
    listener.close()  # while listening: the thread ends (it never blocks for good)
    assert not threads[0].is_alive()
    assert calls.empty()


def test_a_fleet_edit_reaches_the_gallery_in_use_without_a_watch(
        postgres_server: PostgresCluster) -> None:  # noqa: F811
    """GallerySync listens: another robot's enrolment is taken in with no watch() call."""
    url = postgres_server.new_database()
    other = open_storage(url, MODEL, DIM)
    other.add("ada", unit(1), ["x"])
    pipeline = Holder(MODEL, DIM)
    store = GallerySync(pipeline, url, True, Log())
    store.reload()
    arrived = threading.Event()
    hand_over = pipeline.set_gallery

    def set_gallery(gallery: Gallery | None) -> None:
        hand_over(gallery)
        if gallery is not None and "bob" in gallery.people:
            arrived.set()

    pipeline.set_gallery = set_gallery
    other.add("bob", unit(1), ["y"])
    assert arrived.wait(10)
    assert pipeline.gallery.names() == ["ada", "bob"]
    listener = store._storage._listener
    store.close()
    assert not listener.is_alive()
    other.close()


def test_password_never_shown() -> None:
    url = "postgresql://robot:s3cret@db.local:5432/gallery?password=s3cret&sslmode=require"
    assert redact(url) == ("postgresql://robot:***@db.local:5432/gallery?password=***&"
                           "sslmode=require")
    # A password holding ':' or '@' is hidden whole; the host is what follows the last '@'.
    assert redact("postgresql://robot:pa:ss@db/g") == "postgresql://robot:***@db/g"
    assert redact("postgresql://robot:p@ss@db/g") == "postgresql://robot:***@db/g"
    # Nothing to hide: unchanged, empty query values included.
    for plain in ("postgresql://robot@db.local/gallery",
                  "postgresql://db.local/gallery?sslmode=require&application_name="):
        assert redact(plain) == plain


def test_first_line_of_an_error() -> None:
    from fer_ros.pipeline.recognition.storage.postgres import _first_line

    assert _first_line(OSError("connection refused\n\tIs the server running?")) == (
        "connection refused")
    assert _first_line(OSError("  \n")) == "OSError"


@pytest.mark.processes
def test_import_export_between_json_sqlite_and_legacy(tmp_path: Path) -> None:
    legacy = tmp_path / "face_embeddings_pytorch.json"
    legacy.write_text(json.dumps({"ada": unit(1)[0].tolist(), "bob": unit(1)[0].tolist()}))
    db = tmp_path / "g.db"
    out = tmp_path / "out.json"
    for args in (["import", str(db), str(legacy)], ["export", str(db), str(out)],
                 ["list", str(db)]):
        result = subprocess.run([*fer_ros_command(), "gallery", *args], capture_output=True,
                                text=True, check=False)
        assert result.returncode == 0, result.stderr
    assert "ada" in result.stdout and "bob" in result.stdout
    assert gallery_file.load(out).names() == ["ada", "bob"]
    assert copy_gallery(open_storage(str(out)), open_storage(str(tmp_path / "c.db"))).people == 2


WRITER = textwrap.dedent("""
    import sys, numpy as np
    from fer_ros.pipeline.recognition.storage import open_storage
    storage = open_storage(sys.argv[1], "test-model", 16)
    rng = np.random.default_rng()
    storage.add("first", rng.standard_normal((3, 16)), ["a", "b", "c"])
    print("ready", flush=True)  # the gallery exists: from now on it must always open
    for i in range(100000):
        storage.add(f"p{i % 50}", rng.standard_normal((3, 16)), ["a", "b", "c"])
""")


@pytest.mark.processes
@pytest.mark.parametrize("suffix", [".db", ".json"])
def test_kill_9_during_enrolments_leaves_a_gallery_that_opens(tmp_path: Path,
                                                               suffix: str) -> None:
    path = tmp_path / f"g{suffix}"
    for attempt in range(5):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)],
                                stdout=subprocess.PIPE, text=True, cwd=tmp_path)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.2 + 0.1 * attempt)  # let it be in the middle of some enrolment
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        gallery = open_storage(str(path)).load()
        assert len(gallery) >= 1
        for person in gallery.people.values():
            assert person.embeddings.shape[1] == DIM
            np.testing.assert_allclose(np.linalg.norm(person.embeddings, axis=1), 1, atol=1e-5)
