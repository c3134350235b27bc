"""The rules of the gallery storage kinds, one at a time and in-process
(fer_ros/pipeline/recognition/storage/): what a bad database says, what a version and a
change log tell a reader, replace/refuse/append, and how a location picks a kind. The
database rules run on SQLite and on a real PostgreSQL server (one per module, a new
database per test)."""

from __future__ import annotations

import re
import sqlite3
import threading
from pathlib import Path

import numpy as np
import psycopg
import pytest
from pgutil import PostgresCluster, postgres_server  # noqa: F401 (fixture)

from fer_ros.pipeline.recognition.gallery import Gallery, GalleryError
from fer_ros.pipeline.recognition.storage import (
    DatabaseStorage,
    JsonStorage,
    SqliteStorage,
    base,
    copy_gallery,
    open_storage,
)
from fer_ros.pipeline.recognition.storage.postgres import PostgresStorage

DIM = 4
MODEL = "test-model"
rng = np.random.default_rng(21)


def unit(n: int = 1) -> np.ndarray:
    v = rng.standard_normal((n, DIM))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def sqlite(tmp_path: Path, name: str = "g.db") -> SqliteStorage:
    storage = open_storage(str(tmp_path / name), MODEL, DIM)
    assert isinstance(storage, SqliteStorage)
    return storage


@pytest.fixture(params=["sqlite", "postgres"])
def location(request, tmp_path: Path) -> str:
    """Where a database gallery will be: an SQLite file or a new PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "g.db")
    return request.getfixturevalue("postgres_server").new_database()


def db(location: str, model: str | None = MODEL) -> DatabaseStorage:
    """A storage on ``location`` (each call: another connection, as another process)."""
    storage = open_storage(location, model, DIM if model else None)
    assert isinstance(storage, DatabaseStorage)
    return storage


def shown(location: str) -> str:
    """The location as errors print it (a URL without its password), as a pattern."""
    return re.escape(db(location).location)


def sql(location: str, statement: str, *args: object) -> None:
    """Run one statement on the database directly, as another tool would."""
    if location.startswith("postgresql://"):
        with psycopg.connect(location, autocommit=True) as conn:
            conn.execute(statement.replace("?", "%s"), args)
    else:
        with sqlite3.connect(location) as conn:
            conn.execute(statement, args)


def set_meta(location: str, **values: str | None) -> None:
    for key, value in values.items():
        if value is None:
            sql(location, "DELETE FROM meta WHERE key = ?", key)
        else:
            sql(location, "UPDATE meta SET value = ? WHERE key = ?", value, key)


def test_location_picks_the_kind() -> None:
    assert isinstance(open_storage("/x/g.json"), JsonStorage)
    assert isinstance(open_storage("/x/G.JSON"), JsonStorage)
    for name in ("/x/g.db", "/x/g.sqlite", "/x/g.sqlite3", "/x/gallery"):
        assert isinstance(open_storage(name), SqliteStorage), name
    for url in ("postgresql://robot:pw@db/g", "postgres://robot:pw@db/g"):
        storage = open_storage(url, MODEL, DIM)
        assert isinstance(storage, PostgresStorage)  # nothing is connected yet
        assert storage.location == url.replace(":pw@", ":***@")
        assert (storage.model, storage.dim) == (MODEL, DIM)
    home = open_storage("~/g.db")
    assert home.location == str(Path.home() / "g.db")


@pytest.mark.parametrize("suffix", [".db", ".json"])
def test_a_missing_gallery_without_a_model_is_not_created(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"g{suffix}"
    storage = open_storage(str(path))  # no model: open existing galleries only
    assert not storage.exists() and storage.version() is None
    with pytest.raises(GalleryError, match=rf"gallery {path} does not exist"):
        storage.add("ada", unit(), ["x"])
    with pytest.raises(GalleryError, match="does not exist"):
        storage.load()
    assert not path.exists()


@pytest.mark.parametrize(("meta", "problem"), [
    ({"format": "other"}, r"is not a fer_ros gallery \(format 'other'\)"),
    ({"format": None}, r"is not a fer_ros gallery \(format None\)"),
    ({"schema_version": "2"}, r"schema_version '2' is not supported \(this fer_ros reads 1\)"),
    ({"model": None}, "no model or embedding_dim"),
    ({"embedding_dim": "four"}, "no model or embedding_dim"),
])
def test_a_database_of_another_kind_or_version_is_refused(location: str, meta: dict,
                                                          problem: str) -> None:
    storage = db(location)
    storage.add("ada", unit(), ["x"])
    version = storage.version()
    storage.close()
    set_meta(location, **meta)
    for reader in (db(location, None), db(location)):
        with pytest.raises(GalleryError, match=rf"gallery {shown(location)}.*{problem}"):
            reader.load()
        with pytest.raises(GalleryError, match=problem):
            reader.changes_since(version)
        with pytest.raises(GalleryError, match=problem):
            reader.add("bob", unit(), ["y"])


def test_a_database_without_tables_does_not_exist_yet(location: str) -> None:
    sql(location, "SELECT 1")  # an empty SQLite file, or an empty PostgreSQL database
    storage = db(location, None)
    assert storage.version() is None
    assert storage.changes_since(0) == (None, None)
    with pytest.raises(GalleryError, match="does not exist or is empty"):
        storage.snapshot()


def test_an_embedding_of_another_length_in_the_database_is_named(location: str) -> None:
    storage = db(location)
    storage.add("ada", unit(2), ["x", "y"])
    sql(location, "UPDATE embeddings SET vector = ? WHERE id = 2",
        np.zeros(DIM + 1, np.float32).tobytes())
    with pytest.raises(GalleryError, match=rf"{shown(location)}: an embedding is not {DIM} "
                                           "float32s"):
        db(location, None).load()


def test_snapshot_reads_people_in_name_order_with_their_rows(location: str) -> None:
    storage = db(location)
    rows = {name: unit(count) for name, count in (("cy", 1), ("ada", 3), ("bob", 2))}
    for name, embeddings in rows.items():
        storage.add(name, embeddings, [f"{name}{i}" for i in range(len(embeddings))])
    gallery, version = db(location, None).snapshot()
    assert gallery.names() == list(gallery.people) == ["ada", "bob", "cy"]
    assert (gallery.model, gallery.dim, gallery.source_format) == (MODEL, DIM, base.DB_FORMAT)
    for name, embeddings in rows.items():
        np.testing.assert_allclose(gallery.people[name].embeddings, embeddings, atol=1e-6)
        assert gallery.people[name].sources == [f"{name}{i}" for i in range(len(embeddings))]
    assert version == storage.version() == 3  # one change per enrolment
    # Matching reads the rows the database gave (no second copy), in the same order.
    matrix = gallery._stacked()[0]
    np.testing.assert_allclose(matrix, np.concatenate([rows["ada"], rows["bob"], rows["cy"]]),
                               atol=1e-6)
    assert gallery.created == db(location, None).load().created != ""
    # A database another tool made without "created" still reads as a gallery with a
    # creation stamp (that of the read), never None.
    set_meta(location, created=None)
    again, _ = db(location, None).snapshot()
    assert isinstance(again.created, str) and again.created.endswith("+00:00"), again.created


def test_more_rows_than_one_read_batch(location: str) -> None:
    storage = db(location)
    many = unit(4096 + 3)
    storage.add_many([("ada", many[:2], ["a"] * 2), ("bob", many[2:], ["b"] * 4097)])
    gallery = db(location, None).load()
    assert [len(gallery.people[n].embeddings) for n in gallery.names()] == [2, 4097]
    np.testing.assert_allclose(gallery.people["bob"].embeddings[-1], many[-1], atol=1e-6)


def test_append_replace_and_refuse(location: str) -> None:
    storage = db(location)
    first, second, third = unit(), unit(2), unit()
    assert len(storage.add("ada", first, ["1"]).embeddings) == 1
    person = storage.add("ada", second, ["2", "3"], on_existing="append")
    assert person.sources == ["1", "2", "3"]
    np.testing.assert_allclose(person.embeddings, np.concatenate([first, second]), atol=1e-6)
    with pytest.raises(GalleryError, match=r"'ada' is already enrolled \(3 embeddings\)"):
        storage.add("ada", third, ["4"], on_existing="refuse")
    person = storage.add("ada", third, ["4"], on_existing="replace")
    assert person.sources == ["4"]
    np.testing.assert_allclose(person.embeddings, third, atol=1e-6)
    assert storage.add("bob", unit(), ["5"], on_existing="refuse").sources == ["5"]
    assert storage.add("bob", unit(), ["6"]).sources == ["5", "6"]  # append by default
    with pytest.raises(GalleryError, match="unknown duplicate-name policy 'merge'"):
        storage.add("bob", unit(), ["7"], on_existing="merge")
    gallery = db(location, None).load()
    assert gallery.names() == ["ada", "bob"] and gallery.people["ada"].sources == ["4"]
    assert gallery.people["bob"].sources == ["5", "6"]
    # Names are cleaned and checked as in a JSON gallery, before anything is written.
    assert storage.add("  cy ", unit(), ["6"]).name == "cy"
    with pytest.raises(GalleryError, match="reserved"):
        storage.add("Unknown", unit(), ["7"])
    with pytest.raises(GalleryError, match="embedding length 5, expected 4"):
        storage.add("dee", np.ones((1, 5)), ["8"])
    assert db(location, None).load().names() == ["ada", "bob", "cy"]


def test_removing_someone_not_enrolled_names_them_and_changes_nothing(location: str) -> None:
    storage = db(location)
    storage.add("ada", unit(), ["x"])
    version = storage.version()
    with pytest.raises(GalleryError, match=rf"'bob' is not in the gallery {shown(location)}"):
        storage.remove("bob")
    assert storage.version() == version
    storage.remove("ada")
    assert storage.version() == version + 1
    assert storage.changes_since(version) == ({"ada": None}, version + 1)


def test_changes_since_names_each_person_edited_once(location: str) -> None:
    storage = db(location)
    reader = db(location, None)
    storage.add("ada", unit(), ["a"])
    start = reader.version()
    assert reader.changes_since(start) == ({}, start)
    storage.add("bob", unit(), ["b"])
    storage.add("bob", unit(), ["c"])
    storage.add("cy", unit(), ["d"])
    storage.remove("cy")
    changes, latest = reader.changes_since(start)
    assert latest == reader.version() == start + 4
    assert list(changes) == ["bob", "cy"] and changes["cy"] is None
    assert changes["bob"].sources == ["b", "c"]
    assert reader.changes_since(latest) == ({}, latest)
    # Not a version this kind gave (e.g. a JSON file's): read everything.
    assert reader.changes_since(None) == (None, None)
    assert reader.changes_since((1, 2, 3)) == (None, None)


def test_too_many_changes_mean_read_everything(location: str, monkeypatch) -> None:
    monkeypatch.setattr(base, "MAX_INCREMENTAL", 2)
    storage = db(location)
    start = storage.version() or 0
    storage.add_many([("ada", unit(), ["a"]), ("bob", unit(), ["b"])])
    assert list(storage.changes_since(start)[0]) == ["ada", "bob"]  # two: still listed
    storage.add("cy", unit(), ["c"])
    assert storage.changes_since(start) == (None, None)


def test_add_many_replaces_in_one_transaction(location: str) -> None:
    storage = db(location)
    storage.add("ada", unit(3), ["old"] * 3)
    version = storage.version()
    new = unit(2)
    storage.add_many([("ada", new, ["n1", "n2"]), ("bob", unit(), ["b"])])
    changes, latest = storage.changes_since(version)
    assert sorted(changes) == ["ada", "bob"] and latest == version + 2
    np.testing.assert_allclose(changes["ada"].embeddings, new, atol=1e-6)
    with pytest.raises(GalleryError, match="reserved"):  # one bad name: nothing written
        storage.add_many([("cy", unit(), ["c"]), ("unknown", unit(), ["u"])])
    with pytest.raises(GalleryError, match="embedding length 5, expected 4"):
        storage.add_many([("cy", np.ones((1, 5)), ["c"])])
    assert storage.version() == latest
    twice, last = unit(2), unit()
    storage.add_many([("bob", twice, ["t1", "t2"]), ("bob", last, ["last"])])
    bob = db(location, None).load().people["bob"]  # a name given twice: the last wins
    assert bob.sources == ["last"]
    np.testing.assert_allclose(bob.embeddings, last, atol=1e-6)
    assert storage.version() == latest + 1  # one change for bob
    assert db(location, None).load().names() == ["ada", "bob"]


def test_a_deleted_database_file_is_absent_then_created_anew(tmp_path: Path) -> None:
    storage = sqlite(tmp_path)
    storage.add("ada", unit(), ["x"])
    assert storage.version() == 1 and storage.exists()
    for path in tmp_path.iterdir():
        path.unlink()
    assert storage.version() is None and not storage.exists()
    storage.add("bob", unit(), ["y"])  # a new file, not the deleted one's open handle
    assert SqliteStorage(storage.path).load().names() == ["bob"]
    assert storage.path.stat().st_mode & 0o777 == 0o600


def test_a_locked_database_is_a_gallery_error(tmp_path: Path, monkeypatch) -> None:
    storage = sqlite(tmp_path)
    storage.add("ada", unit(), ["x"])
    holder = sqlite3.connect(storage.path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process in the middle of a write
    connect = sqlite3.connect
    # Fail at once instead of after SQLite's 10 s wait for the lock.
    monkeypatch.setattr(sqlite3, "connect", lambda *a, **k: connect(*a, **{**k, "timeout": 0}))
    other = SqliteStorage(storage.path, MODEL, DIM)
    with pytest.raises(GalleryError, match=rf"gallery {storage.path}: database is locked"):
        other.add("bob", unit(), ["y"])
    holder.execute("ROLLBACK")
    holder.close()
    other.add("bob", unit(), ["y"])  # the failed attempt left nothing open
    assert SqliteStorage(storage.path).load().names() == ["ada", "bob"]


def test_json_storage_rewrites_the_file_and_its_version_changes(tmp_path: Path) -> None:
    storage = open_storage(str(tmp_path / "g.json"), MODEL, DIM)
    storage.add("ada", unit(), ["x"])
    first = storage.version()
    storage.add("bob", unit(2), ["y", "z"])
    assert storage.version() != first
    assert storage.changes_since(first) == (None, None)  # a file: read it again
    storage.remove("ada")
    assert storage.load().names() == ["bob"]
    with pytest.raises(GalleryError, match="'ada' is not in the gallery"):
        storage.remove("ada")
    with pytest.raises(GalleryError, match="other-model"):
        JsonStorage(storage.path, "other-model", DIM).add("cy", unit(), ["c"])


@pytest.mark.parametrize("target", ["c.json", "c.db"])
def test_copy_gallery_replaces_everyone_in_the_target(tmp_path: Path, target: str) -> None:
    source = sqlite(tmp_path, "source.db")
    source.add_many([("ada", unit(2), ["a1", "a2"]), ("bob", unit(), ["b"])])
    out = open_storage(str(tmp_path / target))  # no model: taken from the source
    out_model = open_storage(str(tmp_path / target), MODEL, DIM)
    out_model.add("ada", unit(3), ["old"] * 3)
    assert copy_gallery(source, out).people == 2
    copied = open_storage(str(tmp_path / target)).load()
    assert copied.names() == ["ada", "bob"] and (copied.model, copied.dim) == (MODEL, DIM)
    assert copied.people["ada"].sources == ["a1", "a2"]


def test_sqlite_opens_nothing_that_is_not_there(tmp_path: Path) -> None:
    """Reading a missing gallery, or writing one without a whole embedding space, leaves
    no file behind (an empty file would look like a gallery)."""
    path = tmp_path / "g.db"
    for storage in (SqliteStorage(path, MODEL, DIM), SqliteStorage(path)):
        with pytest.raises(GalleryError, match="does not exist"):
            storage.load()
        assert storage.version() is None and not storage.exists()
    with pytest.raises(GalleryError, match="does not exist"):
        SqliteStorage(path, MODEL, None).add("ada", unit(), ["x"])
    assert not path.exists()
    nested = tmp_path / "new" / "folder" / "g.db"
    SqliteStorage(nested, MODEL, DIM).add("ada", unit(), ["x"])  # folders made as needed
    assert SqliteStorage(nested).load().names() == ["ada"]


def test_sqlite_serves_several_threads_and_writers_queue(tmp_path: Path) -> None:
    """A perception node reads and writes its gallery from several threads; another
    process writes at the same time. Writers wait for each other (BEGIN IMMEDIATE and a
    busy timeout) instead of failing with "database is locked"."""
    path = tmp_path / "g.db"
    mine, other = SqliteStorage(path, MODEL, DIM), SqliteStorage(path, MODEL, DIM)
    mine.add("start", unit(), ["x"])
    errors: list[BaseException] = []

    def enrol(storage: SqliteStorage, prefix: str) -> None:
        try:
            for i in range(40):
                storage.add(f"{prefix}{i % 5}", unit(), [str(i)])
                storage.load()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=enrol, args=(mine, "a")),
               threading.Thread(target=enrol, args=(other, "b"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    gallery = SqliteStorage(path).load()
    assert len(gallery) == 11 and sum(len(p.embeddings) for p in gallery.people.values()) == 81


def test_a_reader_does_not_wait_for_a_writer(tmp_path: Path) -> None:
    storage = sqlite(tmp_path)
    storage.add("ada", unit(), ["x"])
    holder = sqlite3.connect(storage.path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process in the middle of a write
    holder.execute("DELETE FROM embeddings")
    try:
        connect = sqlite3.connect
        reader = SqliteStorage(storage.path)
        # A reader that waited for the lock would fail at once here instead of reading.
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(sqlite3, "connect", lambda *a, **k: connect(*a, **{**k, "timeout": 0}))
            assert reader.load().names() == ["ada"]  # the last committed state
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_a_failed_write_rolls_back_everything(tmp_path: Path, monkeypatch) -> None:
    storage = sqlite(tmp_path)
    old = unit(2)
    storage.add("ada", old, ["1", "2"])

    def broken(self, cur, name: str) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(SqliteStorage, "_log_change", broken)
    with pytest.raises(GalleryError, match=rf"^gallery {storage.path}: disk I/O error$"):
        storage.add("ada", unit(), ["new"], on_existing="replace")  # fails after the DELETE
    ada = SqliteStorage(storage.path).load().people["ada"]
    assert ada.sources == ["1", "2"]
    np.testing.assert_allclose(ada.embeddings, old, atol=1e-6)


def test_a_damaged_database_is_named(tmp_path: Path) -> None:
    storage = sqlite(tmp_path)
    storage.add("ada", unit(), ["x"])
    with sqlite3.connect(storage.path) as conn:
        conn.execute("DROP TABLE embeddings")
    with pytest.raises(GalleryError,
                       match=rf"^gallery {storage.path}: no such table: embeddings$"):
        SqliteStorage(storage.path).load()


def test_the_database_keeps_when_each_was_made(location: str, monkeypatch) -> None:
    from fer_ros.pipeline.recognition import gallery as gallery_module

    monkeypatch.setattr(gallery_module, "_now", lambda: "2026-01-01T00:00:00+00:00")
    monkeypatch.setattr(base, "_now", lambda: "2026-01-02T00:00:00+00:00")
    storage = db(location)
    storage.add("ada", unit(2), ["a", "b"])
    monkeypatch.setattr(gallery_module, "_now", lambda: "2030-01-01T00:00:00+00:00")
    gallery = db(location, None).load()
    assert gallery.created == "2026-01-01T00:00:00+00:00"  # the gallery's, not today
    assert gallery.people["ada"].added == ["2026-01-02T00:00:00+00:00"] * 2
    # Stored and matched as float32, in one matrix the people's rows are views of.
    ada = gallery.people["ada"].embeddings
    assert ada.dtype == np.float32 and np.shares_memory(gallery._stacked()[0], ada)


def test_a_database_gallery_matches_as_one_built_in_memory(location: str) -> None:
    storage = db(location)
    storage.add_many([("ada", unit(3), ["a"] * 3), ("bob", unit(1), ["b"]),
                      ("cy", unit(2), ["c"] * 2)])
    read = db(location, None).load()
    built = Gallery(MODEL, DIM)
    for name in read.names():
        built.add(name, read.people[name].embeddings)
    faces = unit(5)
    got, names = read.similarities(faces)
    want, _ = built.similarities(faces)
    assert names == ["ada", "bob", "cy"]
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_a_storage_without_a_model_writes_in_the_gallery_s_own(location: str) -> None:
    db(location).add("ada", unit(), ["x"])
    db(location, None).add("bob", unit(), ["y"])  # e.g. `fer-ros gallery import`
    assert db(location, None).load().names() == ["ada", "bob"]
    with pytest.raises(GalleryError) as info:
        open_storage(location, "other-model", DIM).add("cy", unit(), ["z"])
    assert str(info.value).startswith(
        f"gallery {db(location).location} holds embeddings of 'test-model', but faces "
        f"are embedded with 'other-model'")


def test_no_gallery_is_created_without_a_whole_embedding_space(location: str) -> None:
    storage = open_storage(location, MODEL, None)
    with pytest.raises(GalleryError, match="does not exist"):
        storage.add("ada", unit(), ["x"])
    assert db(location, None).version() is None
