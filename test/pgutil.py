"""A throwaway PostgreSQL cluster for a test: its own directory, a Unix socket in it,
no TCP at all (listen_addresses=''), stopped and deleted at the end."""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def _bin(name: str) -> str:
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    if not found:
        pytest.fail("PostgreSQL is not installed: run `make setup` (scripts/setup_system.sh)")
    return str(found[-1])


class PostgresCluster:
    USER = "fer_ros"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.socket_dir = root
        # PostgreSQL refuses to run as root: run it as the postgres user then.
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as:
            shutil.chown(root, "postgres")
        self._run([_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", self.USER,
                   "--no-sync"])
        self.databases = 0
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
        """The URL of a new, empty database on this server."""
        self.databases += 1
        name = f"gallery{self.databases}"
        self._run(["psql", "-h", str(self.root), "-U", self.USER, "-d", "postgres", "-q", "-c",
                   f"CREATE DATABASE {name}"])
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
    (`new_database`) and never stops it."""
    with _cluster() as cluster:
        yield cluster
