"""GallerySync in-process (fer_ros/pipeline/recognition/sync.py): what the perception node's
reload and enroll services and its gallery watch do, each rule and each log line. The node
tests show the same over DDS; test_gallery_storage.py shows catch-up on PostgreSQL."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from syncutil import Holder, Log

from fer_ros.pipeline.recognition import gallery_file
from fer_ros.pipeline.recognition.gallery import Gallery, GalleryError, GalleryUnavailable
from fer_ros.pipeline.recognition.storage import JsonStorage, SqliteStorage, open_storage
from fer_ros.pipeline.recognition.sync import GallerySync

DIM = 4
MODEL = "test-model"
rng = np.random.default_rng(31)


def unit(n: int = 1) -> np.ndarray:
    v = rng.standard_normal((n, DIM))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def saved(path: Path, people: dict[str, int]) -> Path:
    gallery = Gallery(MODEL, DIM)
    for name, count in people.items():
        gallery.add(name, unit(count))
    return gallery_file.save(gallery, path)


def sync(location: str | Path, persist: bool = True) -> tuple[GallerySync, Holder, Log]:
    pipeline, log = Holder(MODEL, DIM), Log()
    return GallerySync(pipeline, str(location), persist, log), pipeline, log


def test_no_gallery_path_means_everyone_is_unknown() -> None:
    store, pipeline, log = sync("")
    pipeline.gallery = Gallery(MODEL, DIM)
    assert store.location == ""
    assert store.reload() == (True, "no gallery_path set: every face is 'unknown'")
    assert pipeline.gallery is None and log.take() == []
    store.watch()  # nothing to watch
    assert pipeline.set == 1
    # Enrolment still works, in memory (there is nowhere to keep it).
    done = store.enroll("ada", unit()[0], append=False)
    assert not done.persisted and pipeline.gallery.names() == ["ada"]
    assert done.person.sources == ["enroll service"]


def test_a_missing_gallery_is_a_warning_and_empties_the_gallery_in_use(tmp_path: Path) -> None:
    path = saved(tmp_path / "g.json", {"ada": 1})
    store, pipeline, log = sync(path)
    assert store.reload()[0] and pipeline.gallery.names() == ["ada"]
    log.take()
    path.unlink()  # deleted: nobody is enrolled any more
    message = (f"gallery {path} does not exist (yet); faces are 'unknown' until someone is "
               f"enrolled")
    assert store.reload() == (False, message)
    assert pipeline.gallery is None and log.take() == [("warning", message)]
    store.enroll("bob", unit()[0], append=False)  # the first enrolment creates it
    assert gallery_file.load(path).names() == ["bob"]  # ada is not written back


def test_reload_names_the_first_twenty_people(tmp_path: Path) -> None:
    path = saved(tmp_path / "g.json", {f"p{i:02d}": 1 for i in range(21)})
    store, _, log = sync(path)
    names = ", ".join(f"p{i:02d}" for i in range(20))
    message = f"gallery {path}: 21 people ({names}, ... (1 more))"
    assert store.reload() == (True, message) and log.take() == [("info", message)]
    saved(path, {f"p{i:02d}": 1 for i in range(20)})
    assert store.reload()[1] == f"gallery {path}: 20 people ({names})"


def test_a_bad_gallery_keeps_the_one_in_use_and_is_logged_once(tmp_path: Path) -> None:
    path = saved(tmp_path / "g.json", {"ada": 2})
    store, pipeline, log = sync(path)
    store.reload()
    before = pipeline.gallery
    log.take()
    path.write_text("{")  # truncated
    ok, message = store.reload()
    assert not ok and message.startswith(f"gallery {path} is not valid JSON")
    assert message.endswith("; keeping the previous gallery")
    assert pipeline.gallery is before and log.take() == [("error", message)]
    assert store.reload() == (False, message) and log.take() == []  # the same problem
    store.watch()  # the watch looks again (the file may be fixed): still the same
    assert log.take() == []
    os.utime(path, ns=(10**18, 10**18))  # written again (the same problem): said again
    assert store.reload() == (False, message) and log.take() == [("error", message)]
    path.write_text("[]")  # another problem: said
    ok, other = store.reload()
    assert other != message and log.take() == [("error", other)]
    saved(path, {"bob": 1})
    assert store.reload()[0] and pipeline.gallery.names() == ["bob"]
    assert log.take() == [("info", f"gallery {path} is readable again"),
                          ("info", f"gallery {path}: 1 people (bob)")]
    store.watch()  # over: nothing more to say
    assert log.take() == []


class Broken:
    """A storage that fails as told (an outage, or a bug in a storage from outside)."""

    failure: Exception | None = None
    changes_failure: Exception | None = None  # only changes_since fails

    def changes_since(self, version):
        if self.changes_failure is not None:
            raise self.changes_failure
        return super().changes_since(version)

    def snapshot(self):
        if self.failure is not None:
            raise self.failure
        return super().snapshot()

    def version(self):
        if isinstance(self.failure, GalleryUnavailable):
            raise self.failure
        return super().version()


class BrokenJson(Broken, JsonStorage):
    pass


class BrokenSqlite(Broken, SqliteStorage):
    pass


def broken(tmp_path: Path, kind: type = BrokenJson) -> tuple[GallerySync, Holder, Log, Broken]:
    path = tmp_path / ("g.json" if kind is BrokenJson else "g.db")
    open_storage(str(path), MODEL, DIM).add("ada", unit(), ["x"])
    store, pipeline, log = sync("")
    storage = kind(path, MODEL, DIM)
    store._storage = storage
    assert store.reload()[0]
    log.take()
    return store, pipeline, log, storage


def test_any_exception_from_a_storage_is_named_and_recognition_goes_on(tmp_path: Path) -> None:
    store, pipeline, log, storage = broken(tmp_path)
    storage.failure = RuntimeError("boom")
    message = (f"gallery {storage.location}: RuntimeError('boom'); keeping the previous "
               f"gallery")
    assert store.reload() == (False, message)
    assert log.take() == [("error", message)] and pipeline.gallery.names() == ["ada"]


@pytest.mark.parametrize("kind", [BrokenJson, BrokenSqlite])
def test_an_outage_is_logged_once_however_its_message_changes(tmp_path: Path,
                                                              kind: type) -> None:
    store, pipeline, log, storage = broken(tmp_path, kind)
    for attempt in range(3):
        storage.failure = GalleryUnavailable(f"gallery {storage.location}: down ({attempt})")
        store.watch()
        store.reload()
    errors = log.take()
    assert errors == [("error", f"gallery {storage.location}: down (0); keeping the previous "
                                f"gallery")]
    storage.failure = None
    store.watch()
    again = ("info", f"gallery {storage.location} is readable again")
    if kind is BrokenJson:  # a file: read again whole
        assert log.take() == [again, ("info", f"gallery {storage.location}: 1 people (ada)")]
    else:  # a database: only what changed meanwhile (nothing)
        assert log.take() == [again]
    assert pipeline.gallery.names() == ["ada"]


def test_watch_takes_in_changes_and_skips_when_nothing_changed(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    store, pipeline, log = sync(path)
    other = open_storage(str(path), MODEL, DIM)
    other.add("ada", unit(), ["x"])
    store.reload()
    log.take()
    handed = pipeline.set
    store.watch()
    assert pipeline.set == handed and log.take() == []  # same version: nothing read
    other.add("bob", unit(), ["y"])
    other.add("cy", unit(), ["z"])
    store.watch()
    assert pipeline.gallery.names() == ["ada", "bob", "cy"] and pipeline.set == handed + 1
    assert log.take() == [("info", f"gallery {path}: took in changes to bob, cy")]
    store.watch()
    assert pipeline.set == handed + 1


def test_enrol_refuses_a_duplicate_before_writing(tmp_path: Path) -> None:
    path = saved(tmp_path / "g.json", {"ada": 2})
    store, pipeline, _ = sync(path)
    store.reload()
    before = path.read_bytes()
    with pytest.raises(GalleryError) as info:
        store.enroll("ada", unit()[0], append=False)
    assert str(info.value) == "'ada' is already enrolled (2 embeddings); use append"
    assert path.read_bytes() == before and pipeline.gallery.num_embeddings("ada") == 2
    done = store.enroll("ada", unit()[0], append=True)
    assert done.persisted and len(done.person.embeddings) == 3
    assert pipeline.gallery.num_embeddings("ada") == 3
    assert gallery_file.load(path).num_embeddings("ada") == 3
    with pytest.raises(GalleryError, match="reserved"):
        store.enroll("unknown", unit()[0], append=True)


def test_enrol_without_persistence_leaves_the_storage_alone(tmp_path: Path) -> None:
    path = saved(tmp_path / "g.json", {"ada": 1})
    store, pipeline, _ = sync(path, persist=False)
    store.reload()
    before = path.read_bytes()
    original = pipeline.gallery
    done = store.enroll("bob", unit()[0], append=False, source="test")
    assert done.persisted is False and done.person.sources == ["test"]
    assert pipeline.gallery.names() == ["ada", "bob"] and original.names() == ["ada"]
    assert path.read_bytes() == before
    with pytest.raises(GalleryError, match="already enrolled"):
        store.enroll("bob", unit()[0], append=False)
    store.persist = True  # switched on at run time: the next enrolment is written
    assert store.enroll("cy", unit()[0], append=False).persisted
    assert gallery_file.load(path).names() == ["ada", "cy"]


def test_a_failed_write_changes_nothing(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the gallery's folder must be")
    store, pipeline, _ = sync(blocker / "g.json")
    store.reload()
    pipeline.set_gallery(Gallery(MODEL, DIM))  # e.g. enrolled in memory before
    before, handed = pipeline.gallery, pipeline.set
    with pytest.raises(OSError):
        store.enroll("bob", unit()[0], append=False)
    assert pipeline.gallery is before and pipeline.set == handed and len(before) == 0


def test_set_path_switches_galleries_and_closes_the_old_one(tmp_path: Path) -> None:
    first = saved(tmp_path / "a.json", {"ada": 1})
    second = saved(tmp_path / "b.json", {"bob": 1})
    store, pipeline, _ = sync(first)
    store.reload()
    old = store._storage
    closed = []
    old.close = lambda: closed.append(True)
    assert store.set_path(str(second)) == (True, f"gallery {second}: 1 people (bob)")
    assert closed == [True] and store.location == str(second)
    assert pipeline.gallery.names() == ["bob"]
    assert store.set_path("")[0] and pipeline.gallery is None and store.location == ""
    store.set_path(str(first))
    store._storage.close = lambda: closed.append("first")
    store.close()
    assert closed == [True, "first"]


def test_a_catch_up_that_fails_then_works_again_takes_in_only_the_changes(
        tmp_path: Path) -> None:
    store, pipeline, log, storage = broken(tmp_path, BrokenSqlite)
    before = pipeline.gallery.people["ada"]
    other = open_storage(str(storage.path), MODEL, DIM)
    other.add("bob", unit(), ["x"])
    storage.changes_failure = GalleryError(f"gallery {storage.location}: disk I/O error")
    store.watch()
    message = f"gallery {storage.location}: disk I/O error; keeping the previous gallery"
    assert log.take() == [("error", message)] and pipeline.gallery.names() == ["ada"]
    store.watch()
    assert log.take() == []  # the same problem, at the same version
    storage.changes_failure = None
    store.watch()
    assert log.take() == [("info", f"gallery {storage.location} is readable again"),
                          ("info", f"gallery {storage.location}: took in changes to bob")]
    assert pipeline.gallery.names() == ["ada", "bob"]
    assert pipeline.gallery.people["ada"] is before  # not read again
    store.watch()
    assert log.take() == []


def test_enrol_takes_in_its_own_write_and_others_without_a_reload(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    other = open_storage(str(path), MODEL, DIM)
    other.add("ada", unit(), ["x"])
    store, pipeline, log = sync(path)
    store.reload()
    log.take()
    before = pipeline.gallery.people["ada"]
    other.add("bob", unit(), ["y"])  # not seen yet: no watch ran
    done = store.enroll("cy", unit()[0], append=False, source="test")
    assert done.persisted is True and done.person.sources == ["test"]
    assert pipeline.gallery.names() == ["ada", "bob", "cy"]
    assert pipeline.gallery.people["ada"] is before and log.take() == []
    handed = pipeline.set
    store.watch()  # nothing new since our own write
    assert pipeline.set == handed and log.take() == []
    assert other.load().people["cy"].sources == ["test"]
    # Another process enrolled dee since we last looked: not ours to overwrite.
    other.add("dee", unit(), ["z"])
    with pytest.raises(GalleryError, match="'dee' is already enrolled"):
        store.enroll("dee", unit()[0], append=False)


def test_enrol_reloads_when_the_catch_up_fails(tmp_path: Path) -> None:
    store, pipeline, log, storage = broken(tmp_path, BrokenSqlite)
    storage.changes_failure = GalleryError("disk I/O error")
    store.enroll("bob", unit()[0], append=False)
    assert pipeline.gallery.names() == ["ada", "bob"]  # read whole instead
    assert log.take() == [("info", f"gallery {storage.location}: 2 people (ada, bob)")]


def test_a_pipeline_without_an_embedder_only_opens_existing_galleries(tmp_path: Path) -> None:
    path = saved(tmp_path / "g.json", {"ada": 1})
    pipeline, log = Holder(MODEL, DIM), Log()
    pipeline.embedder = None  # recognition off: no embedding space to create one in
    store = GallerySync(pipeline, str(path), True, log)
    assert store.reload()[0] and pipeline.gallery.names() == ["ada"]
    missing = GallerySync(pipeline, str(tmp_path / "new.db"), True, log)
    with pytest.raises(GalleryError, match="does not exist"):
        missing.enroll("bob", unit()[0], append=False)
    assert not (tmp_path / "new.db").exists()


def test_a_new_gallery_that_fails_to_load_is_read_whole_once_it_can_be(tmp_path: Path) -> None:
    """Never apply one database's change log to another's people."""
    first, second = tmp_path / "a.db", tmp_path / "b.db"
    open_storage(str(first), MODEL, DIM).add_many(
        [(name, unit(), ["x"]) for name in ("ada", "bob", "cy")])
    open_storage(str(second), MODEL, DIM).add_many(
        [(name, unit(), ["x"]) for name in ("dee", "eve", "fay", "gus", "hal")])
    with sqlite3.connect(second) as conn:
        conn.execute("UPDATE meta SET value = 'x' WHERE key = 'format'")
    store, pipeline, _ = sync(first)
    store.reload()
    ok, message = store.set_path(str(second))
    assert not ok and "is not a fer_ros gallery" in message
    assert pipeline.gallery.names() == ["ada", "bob", "cy"]  # kept, as any failed load
    with sqlite3.connect(second) as conn:
        conn.execute("UPDATE meta SET value = 'fer_ros.gallery.db' WHERE key = 'format'")
    store.watch()
    assert pipeline.gallery.names() == ["dee", "eve", "fay", "gus", "hal"]
