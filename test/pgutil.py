"""A throwaway PostgreSQL cluster for a test: its own directory, a Unix socket in it,
no TCP at all (listen_addresses=''), stopped and deleted at the end."""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

SHARED = "FER_ROS_TEST_PG_ROOT"  # a running server's folder (see postgres_server)


def _bin(name: str) -> str:
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    if not found:
        pytest.fail("PostgreSQL is not installed: run `make setup` (scripts/setup_system.sh)")
    return str(found[-1])


class PostgresCluster:
    USER = "fer_ros"

    def __init__(self, root: Path, running: bool = False) -> None:
        """A new cluster in ``root``, started; or (``running``) the one already there."""
        self.root = root
        self.data = root / "data"
        self.socket_dir = root
        # PostgreSQL refuses to run as root: run it as the postgres user then.
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if running:
            return
        if self._as:
            shutil.chown(root, "postgres")
        self._run([_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", self.USER,
                   "--no-sync"])
        self.start()
        self._run(["psql", "-h", str(root), "-U", self.USER, "-d", "postgres", "-q", "-c",
                   "CREATE DATABASE gallery"])

    def _run(self, args: list[str]) -> None:
        result = subprocess.run([*self._as, *args], capture_output=True, text=True,
                                check=False)
        assert result.returncode == 0, f"{args[0]} failed: {result.stdout}{result.stderr}"

    @property
    def url(self) -> str:
        return f"postgresql://{self.USER}@/gallery?host={self.socket_dir}"

    def start(self) -> None:
        self._run([_bin("pg_ctl"), "-D", str(self.data), "-w", "-l", str(self.root / "log"),
                   "-o", f"-k {self.socket_dir} -c listen_addresses='' -c fsync=off", "start"])

    def stop(self) -> None:
        subprocess.run([*self._as, _bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w",
                        "stop"], capture_output=True, check=False)


    def new_database(self) -> str:
        """The URL of a new, empty database on this server (unique: several processes may
        share a server, see `postgres_server`)."""
        name = f"gallery_{uuid.uuid4().hex[:16]}"
        # psycopg, not psql: a tenth of the time, which counts when make mutate runs this
        # for every mutant.
        with psycopg.connect(f"postgresql://{self.USER}@/postgres?host={self.socket_dir}",
                             autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return f"postgresql://{self.USER}@/{name}?host={self.socket_dir}"


@contextmanager
def _cluster() -> Iterator[PostgresCluster]:
    # Not under pytest's tmp_path: its parents are 0700 and the postgres user must enter.
    root = Path(tempfile.mkdtemp(prefix=f"fer_ros-pg-{getpass.getuser()}-"))
    try:
        cluster = PostgresCluster(root)
        try:
            yield cluster
        finally:
            cluster.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres() -> Iterator[PostgresCluster]:
    """A server of this test's own (it may stop and start it)."""
    with _cluster() as cluster:
        yield cluster


@pytest.fixture(scope="module")
def postgres_server() -> Iterator[PostgresCluster]:
    """One server for a module's tests, each of which takes a new database on it
    (`new_database`) and never stops it. `make mutate` runs the tests thousands of times:
    it starts one server for all of them (`python test/pgutil.py start`) and names it in
    FER_ROS_TEST_PG_ROOT."""
    shared = os.environ.get(SHARED)
    if shared:
        yield PostgresCluster(Path(shared), running=True)
        return
    with _cluster() as cluster:
        yield cluster


def main(argv: list[str]) -> int:
    """``start``: a server for a whole run, its folder printed; ``stop ROOT``: stop and
    delete it."""
    if argv[:1] == ["start"]:
        root = Path(tempfile.mkdtemp(prefix=f"fer_ros-pg-{getpass.getuser()}-"))
        PostgresCluster(root)
        print(root)
        return 0
    if len(argv) == 2 and argv[0] == "stop":
        PostgresCluster(Path(argv[1]), running=True).stop()
        shutil.rmtree(argv[1], ignore_errors=True)
        return 0
    print("usage: pgutil.py start | stop ROOT", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
