"""Forgetting a person on request (Gallery.forget, GalleryStorage.forget, `fer-ros gallery
forget`), in every storage kind (JSON, SQLite, a real PostgreSQL server): the embeddings go,
from the storage's files too, a dated tombstone stays, and no import of an older copy brings
the person back, while a new enrolment still can."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import numpy as np
import psycopg
import pytest
from pgutil import PostgresCluster, postgres_server  # noqa: F401 (fixture)

from fer_ros.paths import fer_ros_command
from fer_ros.pipeline.recognition.gallery import Gallery, GalleryError, GalleryUnavailable
from fer_ros.pipeline.recognition.storage import (
    GalleryStorage,
    JsonStorage,
    SqliteStorage,
    copy_gallery,
    open_storage,
)
from fer_ros.pipeline.recognition.storage.postgres import PostgresStorage

DIM = 8
MODEL = "test-model"
STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00")


def vectors(seed: int, count: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((count, DIM))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


ADA, BOB = vectors(1, 2), vectors(2, 1)


@pytest.fixture(params=["json", "sqlite", "postgres"])
def location(request, tmp_path: Path) -> str:
    if request.param == "json":
        return str(tmp_path / "g.json")
    if request.param == "sqlite":
        return str(tmp_path / "g.db")
    return request.getfixturevalue("postgres_server").new_database()


def enrolled(location: str) -> GalleryStorage:
    storage = open_storage(location, MODEL, DIM)
    storage.add("ada", ADA, ["a0.jpg", "a1.jpg"])
    storage.add("bob", BOB, ["b0.jpg"])
    return storage


def test_forget_erases_the_person_and_keeps_a_dated_tombstone(location: str) -> None:
    storage = enrolled(location)
    assert storage.forget(" ada ") == 2
    other = open_storage(location)  # another process
    gallery = other.load()
    assert gallery.names() == ["bob"] and np.allclose(gallery.people["bob"].embeddings, BOB)
    assert list(gallery.forgotten) == ["ada"] and STAMP.fullmatch(gallery.forgotten["ada"])
    assert other.forgotten() == gallery.forgotten
    # Someone who is not enrolled (any more) gets a tombstone too: 0 embeddings erased.
    assert storage.forget("ada") == 0 and storage.forget("carl") == 0
    assert sorted(open_storage(location).forgotten()) == ["ada", "carl"]
    with pytest.raises(GalleryError, match="name is empty"):
        storage.forget("  ")
    storage.close()
    other.close()


def test_a_new_enrolment_after_forgetting_stays(location: str) -> None:
    storage = enrolled(location)
    storage.forget("ada")
    erased_at = storage.forgotten()["ada"]
    again = vectors(3, 1)
    storage.add("ada", again, ["new.jpg"])  # the person enrols again: a new consent
    # A tombstone from before that (another copy's, applied by an import) spares it.
    assert storage.forget("ada", at="2000-01-01T00:00:00+00:00") == 0
    gallery = storage.load()
    assert np.allclose(gallery.people["ada"].embeddings, again)
    assert gallery.forgotten["ada"] == erased_at  # the later tombstone is kept
    storage.close()


def test_an_old_copy_does_not_bring_a_forgotten_person_back(location: str,
                                                             tmp_path: Path) -> None:
    storage = enrolled(location)
    backup = open_storage(str(tmp_path / "backup.json"))
    assert copy_gallery(storage, backup).people == 2
    storage.forget("ada")
    copied = copy_gallery(backup, storage)  # the backup restored
    assert (copied.people, copied.refused, copied.forgotten) == (1, ["ada"], [])
    assert storage.load().names() == ["bob"]
    # The other way: a gallery that still holds ada learns of the erasure from the
    # forgetting one, and erases what it holds of her.
    copied = copy_gallery(storage, backup)
    assert copied.forgotten == ["ada"]
    assert backup.load().names() == ["bob"] and "ada" in backup.forgotten()
    storage.close()


def test_forget_only_what_was_added_before_the_tombstone() -> None:
    gallery = Gallery(MODEL, DIM)
    gallery.add("ada", ADA)
    gallery.people["ada"].added = ["2026-01-01T00:00:00+00:00", "2026-03-01T00:00:00+00:00"]
    assert gallery.forget("ada", at="2026-02-01T00:00:00+00:00") == 1
    assert np.allclose(gallery.people["ada"].embeddings, ADA[1:])
    assert gallery.people["ada"].added == ["2026-03-01T00:00:00+00:00"]
    assert gallery.forgotten == {"ada": "2026-02-01T00:00:00+00:00"}
    assert gallery.copy().forgotten == gallery.forgotten


def holds(path: Path, data: bytes) -> bool:
    return path.exists() and data in path.read_bytes()


def stored_rows(storage: GalleryStorage) -> tuple[bytes, bytes]:
    """The float32 bytes of ada's first and bob's embedding as the storage keeps them."""
    people = storage.load().people
    return people["ada"].embeddings[0].tobytes(), people["bob"].embeddings[0].tobytes()


def test_sqlite_overwrites_the_erased_embeddings(tmp_path: Path) -> None:
    storage = enrolled(str(tmp_path / "g.db"))
    assert isinstance(storage, SqliteStorage)
    files = [tmp_path / "g.db", tmp_path / "g.db-wal"]
    ada, bob = stored_rows(storage)
    assert any(holds(f, ada) for f in files)
    storage.forget("ada")
    assert not any(holds(f, ada) for f in files)
    assert any(holds(f, bob) for f in files)  # the others untouched
    storage.close()


def test_json_overwrites_the_old_file(tmp_path: Path) -> None:
    storage = enrolled(str(tmp_path / "g.json"))
    assert isinstance(storage, JsonStorage)
    # A second name for the file as it is now: after the rewrite it still names the old
    # file's bytes, which must be zeros, not the embeddings.
    old = tmp_path / "old-name-of-the-file"
    os.link(tmp_path / "g.json", old)
    size = old.stat().st_size
    storage.forget("ada")
    assert old.read_bytes() == bytes(size)
    text = (tmp_path / "g.json").read_text()
    assert f"{round(float(ADA[0][0]), 7)}" not in text and '"ada": "20' in text
    assert (tmp_path / "g.json").stat().st_mode & 0o777 == 0o600


def table_files(cluster: PostgresCluster, url: str) -> list[Path]:
    with psycopg.connect(url) as conn:
        relpath = conn.execute("SELECT pg_relation_filepath('embeddings')").fetchone()[0]
    return sorted((cluster.data / relpath).parent.glob(Path(relpath).name + "*"))


def test_postgres_rewrites_the_table_without_the_erased_rows(
        postgres_server: PostgresCluster) -> None:  # noqa: F811
    url = postgres_server.new_database()
    storage = enrolled(url)
    assert isinstance(storage, PostgresStorage)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")  # the rows on disk, as a server that ran a while has
    before = table_files(postgres_server, url)
    ada, bob = stored_rows(storage)
    assert any(holds(f, ada) for f in before)
    storage.forget("ada")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")
    after = table_files(postgres_server, url)
    assert after and not set(after) & set(before)  # VACUUM FULL wrote a new file
    assert not any(holds(f, ada) for f in after)
    assert any(holds(f, bob) for f in after)
    storage.close()


def test_a_bad_tombstone_list_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "g.json"
    enrolled(str(path))
    good = path.read_text()
    for key in ("forgotten", "last_seen"):
        path.write_text(good.replace('"people": {', f'"{key}": ["ada"], "people": {{'))
        with pytest.raises(GalleryError, match=f"'{key}' must map names to dates"):
            open_storage(str(path)).load()


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*fer_ros_command(), *args], capture_output=True, text=True,
                          check=False, timeout=120)


def test_gallery_forget_command(tmp_path: Path) -> None:
    gallery = tmp_path / "people.db"
    storage = enrolled(str(gallery))
    storage.mark_seen(["bob"], FAR_AHEAD)
    storage.close()
    result = run_cli("gallery", "forget", str(gallery), "ada", "carl")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert re.fullmatch(rf"forgot 'ada': 2 embedding\(s\) erased from {re.escape(str(gallery))}"
                        rf"; tombstone {STAMP.pattern}", lines[0]), lines[0]
    assert lines[1].startswith("forgot 'carl': 0 embedding(s) erased")
    listing = run_cli("gallery", "list", str(gallery)).stdout
    assert re.search(rf"  bob: 1 embedding\(s\), last added {STAMP.pattern}, last seen "
                     rf"{re.escape(FAR_AHEAD)}", listing), listing
    assert re.search(rf"  ada: forgotten {STAMP.pattern}", listing), listing
    missing = run_cli("gallery", "forget", str(tmp_path / "none.db"), "ada")
    assert missing.returncode == 1
    assert "gallery" in missing.stderr and "does not exist" in missing.stderr
    assert not (tmp_path / "none.db").exists()


LONG_AGO = "2000-01-01T00:00:00+00:00"
FAR_AHEAD = "2999-01-01T00:00:00+00:00"


def test_last_seen_is_kept_and_retention_forgets_the_unseen(location: str) -> None:
    storage = enrolled(location)
    storage.mark_seen(["ada", "carl"], FAR_AHEAD)  # carl is not enrolled: nothing kept
    storage.mark_seen(["ada"], LONG_AGO)  # an older sighting does not win
    assert open_storage(location).load().last_seen == {"ada": FAR_AHEAD}
    cut = "2500-01-01T00:00:00+00:00"
    # The first time only notes when retention began: nobody had last-seen times before.
    assert storage.expire(cut, "2026-06-01T00:00:00+00:00") == []
    assert open_storage(location).load().names() == ["ada", "bob"]
    # bob, enrolled today and never seen, is older than the cut; ada was seen after it.
    stale = storage.expire(cut, "2600-01-01T00:00:00+00:00")
    assert [name for name, _ in stale] == ["bob"] and STAMP.fullmatch(stale[0][1])
    gallery = open_storage(location).load()
    assert gallery.names() == ["ada"]
    assert gallery.forgotten == {"bob": "2600-01-01T00:00:00+00:00"}
    assert storage.expire(cut, "2600-01-02T00:00:00+00:00") == []  # nothing more to do
    storage.forget("ada")
    assert open_storage(location).load().last_seen == {}  # presence goes with the person
    storage.close()


def test_retention_never_touches_a_gallery_of_another_model(location: str) -> None:
    """A node running another embedding model refuses the gallery for matching, so it
    never sees anyone in it: its retention must not erase them all."""
    enrolled(location).close()
    other = open_storage(location, "other-model", DIM)
    with pytest.raises(GalleryError, match="other-model"):
        other.mark_seen(["ada"], FAR_AHEAD)
    for now in ("2026-06-01T00:00:00+00:00", "2600-01-01T00:00:00+00:00"):
        with pytest.raises(GalleryError, match="other-model"):
            other.expire("2500-01-01T00:00:00+00:00", now)
    other.close()
    gallery = open_storage(location).load()
    assert gallery.names() == ["ada", "bob"]
    assert not gallery.forgotten and not gallery.last_seen and not gallery.retention_since


def sync_of(location: str, persist: bool = True):
    from syncutil import Holder, Log

    from fer_ros.pipeline.recognition.sync import GallerySync

    pipeline, log = Holder(MODEL, DIM), Log()
    store = GallerySync(pipeline, location, persist, log)
    store.reload()
    log.take()
    return store, pipeline, log


def test_housekeeping_writes_who_was_seen_and_applies_retention(tmp_path: Path) -> None:
    from datetime import datetime, timedelta, timezone

    location = str(tmp_path / "g.db")
    enrolled(location).close()
    store, pipeline, log = sync_of(location)
    now = datetime.now(timezone.utc)
    store.seen(["ada"])
    assert store.housekeeping(0.0, now) == []  # retention off: nothing written at all
    assert open_storage(location).load().last_seen == {}
    store.seen(["ada"])
    store.seen(["ada", "bob"])
    assert store.housekeeping(30.0, now) == []  # the sightings, and retention's start
    stamp = now.isoformat(timespec="seconds")
    assert open_storage(location).load().last_seen == {"ada": stamp, "bob": stamp}
    store.seen(["ada"])
    later = now + timedelta(days=40)
    stale = store.housekeeping(30.0, later)  # bob: last seen 40 days before
    assert stale == [("bob", stamp)]
    assert pipeline.gallery.names() == ["ada"]  # the node stops naming him at once
    assert ("info", f"gallery {location}: retention: forgot 'bob', last seen or enrolled "
            f"{stamp} (retention_days 30)") in log.take()
    assert open_storage(location).load().last_seen == {
        "ada": later.isoformat(timespec="seconds")}


def test_housekeeping_without_persist_writes_nothing(tmp_path: Path) -> None:
    location = str(tmp_path / "g.json")
    enrolled(location).close()
    before = (tmp_path / "g.json").read_bytes()
    store, pipeline, _ = sync_of(location, persist=False)
    store.seen(["ada"])
    assert store.housekeeping(1.0) == []
    assert (tmp_path / "g.json").read_bytes() == before
    assert pipeline.gallery.names() == ["ada", "bob"]


def test_sync_forget_drops_the_person_from_the_gallery_in_use_at_once(tmp_path: Path) -> None:
    location = str(tmp_path / "g.db")
    enrolled(location).close()
    store, pipeline, _ = sync_of(location)
    assert pipeline.gallery.names() == ["ada", "bob"]
    assert store.forget("ada") == (2, location)
    assert pipeline.gallery.names() == ["bob"]  # no watch needed
    # Enrolled in memory only (persist off): erased from memory, and the stored people too.
    memory, pipeline, _ = sync_of(location, persist=False)
    memory.enroll("cy", vectors(5, 1)[0], append=False)
    assert memory.forget("cy") == (0, location)
    assert "cy" not in pipeline.gallery.people
    assert memory.forget("bob") == (1, location)
    assert pipeline.gallery.names() == [] and open_storage(location).load().names() == []


def test_sync_forget_without_storage_or_when_it_fails(tmp_path: Path, monkeypatch) -> None:
    store, pipeline, _ = sync_of("")
    store.enroll("ada", vectors(6, 1)[0], append=False)
    assert store.forget("ada") == (1, "this node's memory (no gallery_path)")
    assert pipeline.gallery.names() == []
    location = str(tmp_path / "g.db")
    enrolled(location).close()
    store, pipeline, _ = sync_of(location)

    def unreachable(name: str, at: str | None = None) -> int:
        raise GalleryUnavailable(f"gallery {location}: cannot reach the database")

    monkeypatch.setattr(store._storage, "forget", unreachable)  # the storage refuses ...
    with pytest.raises(GalleryUnavailable, match="cannot reach the database"):
        store.forget("ada")
    assert pipeline.gallery.names() == ["bob"]  # ... the node forgets her all the same


def test_expire_counts_from_when_retention_began(tmp_path: Path) -> None:
    """People enrolled long before anyone kept last-seen times get the whole retention
    period from the first run, not erased at once."""
    location = str(tmp_path / "g.json")
    storage = enrolled(location)
    first = "2030-01-01T00:00:00+00:00"
    assert storage.expire("2029-12-01T00:00:00+00:00", first) == []
    assert open_storage(location).load().retention_since == first
    # A month later, before the cut of the period since retention began: nobody goes.
    assert storage.expire("2029-12-31T00:00:00+00:00", "2030-02-01T00:00:00+00:00") == []
    assert [n for n, _ in storage.expire("2030-01-02T00:00:00+00:00",
                                         "2030-02-02T00:00:00+00:00")] == ["ada", "bob"]


def test_json_edits_wait_for_each_other(tmp_path: Path) -> None:
    """A second writer (here: this test, holding the gallery's lock) keeps a forget from
    reading the file until it is done, so neither writes back what the other removed."""
    import fcntl
    import threading

    path = tmp_path / "g.json"
    storage = enrolled(str(path))
    lock = os.open(tmp_path / ".g.json.lock", os.O_RDWR)
    fcntl.flock(lock, fcntl.LOCK_EX)
    worker = threading.Thread(target=storage.forget, args=("ada",))
    worker.start()
    worker.join(0.5)
    assert worker.is_alive()  # waiting for the lock
    assert open_storage(str(path)).load().names() == ["ada", "bob"]
    os.close(lock)
    worker.join(10)
    assert not worker.is_alive() and open_storage(str(path)).load().names() == ["bob"]
    assert (tmp_path / ".g.json.lock").stat().st_mode & 0o777 == 0o600


def test_sqlite_says_when_a_reader_holds_the_erasure_up(tmp_path: Path) -> None:
    import sqlite3

    from fer_ros.pipeline.recognition.gallery import ErasurePending

    storage = enrolled(str(tmp_path / "g.db"))
    ada = stored_rows(storage)[0]
    reader = sqlite3.connect(tmp_path / "g.db", isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM embeddings").fetchone()  # a snapshot held open
    with pytest.raises(ErasurePending, match=re.escape(
            "another process kept reading, so the erased rows stay in g.db-wal until its "
            "next checkpoint")) as info:
        storage.forget("ada")
    assert info.value.removed == 2
    assert open_storage(str(tmp_path / "g.db")).load().names() == ["bob"]  # forgotten
    reader.execute("COMMIT")
    reader.close()
    storage.forget("carl")  # the next erasure's checkpoint finishes the job
    assert not any(holds(tmp_path / f, ada) for f in ("g.db", "g.db-wal"))


def test_postgres_says_when_the_table_was_not_rewritten(
        postgres_server: PostgresCluster, monkeypatch) -> None:  # noqa: F811
    """VACUUM FULL by a role that does not own the table only warns: the table's file is
    then the same, and that is said (here the rewrite is left out to show it)."""
    from fer_ros.pipeline.recognition.gallery import ErasurePending
    from fer_ros.pipeline.recognition.storage import postgres

    url = postgres_server.new_database()
    storage = enrolled(url)
    monkeypatch.setattr(postgres, "REWRITE", ("SELECT 1",))
    with pytest.raises(ErasurePending, match="VACUUM FULL did not rewrite the tables") as info:
        storage.forget("ada")
    assert info.value.removed == 2
    assert open_storage(url).load().names() == ["bob"]  # forgotten all the same
    storage.close()
