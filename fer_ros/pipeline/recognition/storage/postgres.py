"""A gallery on a PostgreSQL server: one gallery for a fleet of robots.

Location: a libpq URL, ``postgresql://user@host:5432/dbname`` or, for a local server on
a Unix socket, ``postgresql://user@/dbname?host=/run/postgresql``. The password comes
from the URL, from ``PGPASSWORD`` or from a password file (``~/.pgpass`` or
``PGPASSFILE``), all read by libpq; it is never logged (`redact`).

The tables are those of the SQLite kind (fer_ros.pipeline.recognition.storage). Writers
take a lock on the change log, so changes commit in the order of their numbers and a
reader that asks "what changed after N" never misses one. Every edit sends a
NOTIFY on channel ``fer_ros_gallery`` at commit; perception nodes LISTEN and catch up
at once (`listen`), and also poll, so a lost notification costs one watch period.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import psycopg

from fer_ros.pipeline.recognition.gallery import ErasurePending, GalleryError, GalleryUnavailable
from fer_ros.pipeline.recognition.storage.base import DatabaseStorage

CHANNEL = "fer_ros_gallery"
# After a forget: the tables that held the person, written afresh (see _erase_deleted).
REWRITE = ("VACUUM FULL embeddings", "VACUUM FULL seen")
CONNECT_TIMEOUT_S = 3


def redact(url: str) -> str:
    """The URL without its password (in the user part or the query)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        user, host = netloc.rsplit("@", 1)
        netloc = f"{user.split(':', 1)[0]}:***@{host}" if ":" in user else netloc
    query = "&".join(f"{k}={'***' if k == 'password' else v}"
                     for k, v in parse_qsl(parts.query, keep_blank_values=True))
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


class PostgresStorage(DatabaseStorage):
    serial = "BIGSERIAL"
    blob = "BYTEA"
    param = "%s"

    def __init__(self, url: str, model: str | None = None, dim: int | None = None) -> None:
        super().__init__(model, dim)
        self.url = url
        self.location = redact(url)
        self._conn: psycopg.Connection | None = None
        self._lock = threading.Lock()  # one connection, used by one thread at a time
        self._listener: threading.Thread | None = None
        self._stop = threading.Event()

    def _connect(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.url, connect_timeout=CONNECT_TIMEOUT_S)
        return self._conn

    @contextmanager
    def _transaction(self, write: bool = False) -> Iterator[psycopg.Cursor]:
        with self._lock:
            try:
                conn = self._connect()
                with conn.transaction(), conn.cursor() as cur:
                    if write:
                        self._create_tables(cur)
                        # Writers one at a time, so change numbers commit in order.
                        cur.execute("LOCK TABLE changes IN SHARE ROW EXCLUSIVE MODE")
                    yield cur
                    if write:
                        cur.execute("SELECT pg_notify(%s, '')", (CHANNEL,))
            except psycopg.OperationalError as exc:
                self._drop()
                raise GalleryUnavailable(f"gallery {self.location}: cannot reach the database: "
                                   f"{_first_line(exc)}") from None
            except psycopg.Error as exc:
                raise GalleryError(f"gallery {self.location}: {_first_line(exc)}") from None

    def _has_tables(self, cur) -> bool:
        cur.execute("SELECT to_regclass('meta') IS NOT NULL AND to_regclass('changes') "
                    "IS NOT NULL")
        return bool(cur.fetchone()[0])

    def _has_table(self, cur, table: str) -> bool:
        cur.execute("SELECT to_regclass(%s) IS NOT NULL", (table,))
        return bool(cur.fetchone()[0])

    def _erase_deleted(self) -> None:
        # VACUUM FULL writes the tables afresh, without the deleted rows (a plain VACUUM
        # only marks their space reusable), and drops the old files. It cannot run in a
        # transaction, and a role that does not own a table gets a warning, not an error:
        # a new file is the proof.
        files = "SELECT pg_relation_filenode('embeddings'), pg_relation_filenode('seen')"
        with self._lock:
            try:
                with psycopg.connect(self.url, autocommit=True,
                                     connect_timeout=CONNECT_TIMEOUT_S) as conn:
                    before = conn.execute(files).fetchone()
                    for statement in REWRITE:
                        conn.execute(statement)
                    after = conn.execute(files).fetchone()
            except psycopg.OperationalError as exc:
                raise ErasurePending(f"gallery {self.location}: the database went away before "
                                     f"the table could be rewritten ({_first_line(exc)}): the "
                                     f"deleted rows stay in the server's files until VACUUM "
                                     f"FULL embeddings, seen") from None
            except psycopg.Error as exc:
                raise ErasurePending(f"gallery {self.location}: {_first_line(exc)}: the "
                                     f"deleted rows stay in the server's files until VACUUM "
                                     f"FULL embeddings, seen") from None
        if any(b == a for b, a in zip(before, after, strict=True)):
            raise ErasurePending(
                f"gallery {self.location}: VACUUM FULL did not rewrite the tables (it needs "
                f"their owner): the deleted rows stay in the server's files until the "
                f"owner runs VACUUM FULL embeddings, seen")

    def exists(self) -> bool:
        return self.version() is not None

    def listen(self, on_change: Callable[[], None]) -> None:
        if self._listener is None:
            self._listener = threading.Thread(target=self._listen, args=(on_change,),
                                              name="gallery-listen", daemon=True)
            self._listener.start()

    def _listen(self, on_change: Callable[[], None]) -> None:
        """LISTEN on a connection of its own; reconnect quietly (polling covers gaps).

        A listening connection that breaks calls ``on_change`` once, so the store looks,
        finds the server gone and says so, even where it polls seldom or never."""
        while not self._stop.is_set():
            listening = False
            try:
                with psycopg.connect(self.url, autocommit=True,
                                     connect_timeout=CONNECT_TIMEOUT_S) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    listening = True
                    on_change()  # anything missed while not listening
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=0.5, stop_after=1):
                            on_change()
            except psycopg.Error:
                if listening and not self._stop.is_set():
                    on_change()
                self._stop.wait(1.0)

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg.Error:
                pass
            self._conn = None

    def close(self) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.join(timeout=3.0)
        with self._lock:
            self._drop()


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
