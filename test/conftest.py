"""Shared fixtures: keep DDS local and isolated, find cached test data, run ROS processes."""

from __future__ import annotations

import os
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# Test helpers (rosutil.py) import as plain modules under --import-mode=importlib.
sys.path.insert(0, str(Path(__file__).resolve().parent))

# Proc lives in a plain module of its own: pytest loads this file as test.conftest and the
# tests import it again as conftest, two modules with two classes, while procutil is
# imported once, so the registry pytest_sessionfinish empties is the tests' own.
from procutil import Proc  # noqa: E402 (re-exported to the tests)

# DDS stays on this machine: shared memory only (scripts/local_dds.sh sets the same
# for `make test`; repeated here so a bare `pytest` is just as safe).
os.environ.setdefault("FASTDDS_BUILTIN_TRANSPORTS", "SHM?sockets_size=16MB&max_msg_size=4MB")
os.environ.pop("ROS_AUTOMATIC_DISCOVERY_RANGE", None)
# A private domain per test session, so concurrent runs on one machine never mix.
# (setdefault: test modules import this file a second time as plain `conftest`.)
os.environ.setdefault("FER_ROS_TEST_DOMAIN", str(random.randint(1, 100)))
os.environ["ROS_DOMAIN_ID"] = os.environ["FER_ROS_TEST_DOMAIN"]
os.environ.setdefault("ROS_LOG_DIR", str(REPO / "build" / "ros_log"))
os.environ.setdefault("HOME", str(REPO / "build" / "home"))
os.environ["PYTHONUNBUFFERED"] = "1"


def _messages_beside_source_copy() -> None:
    """`make mutate` runs the tests on a mutated source copy of fer_ros (mutants/fer_ros),
    which has no generated messages: take those (fer_ros.msg, fer_ros.srv and their type
    support) from the installed copy further down sys.path."""
    import fer_ros

    here = Path(fer_ros.__file__).resolve().parent
    if (here / "msg").is_dir():
        return  # the installed copy: the normal case
    for entry in sys.path:
        installed = Path(entry or ".").resolve() / "fer_ros"
        if installed != here and (installed / "msg").is_dir():
            fer_ros.__path__.append(str(installed))
            return


_messages_beside_source_copy()


def data_path(dataset: str, *parts: str) -> Path:
    """A cached test file; fails (never skips) with the command that fetches it."""
    from fer_ros.paths import data_dir

    path = data_dir().joinpath(dataset, *parts)
    if not path.exists():
        pytest.fail(f"test data {path} is missing: run `make testdata` "
                    f"(or `fer-ros data fetch {dataset}`)")
    return path


@pytest.fixture
def rclpy_context() -> Iterator[object]:
    import rclpy
    from rclpy.context import Context

    context = Context()
    rclpy.init(context=context)
    try:
        yield context
    finally:
        rclpy.try_shutdown(context=context)


def pytest_sessionfinish(session, exitstatus) -> None:
    # Whatever a failed fixture left: our nodes' processes, then the test-side ROS nodes
    # (an rclpy node still spinning when Python exits aborts it, and with it this cleanup).
    for proc in list(Proc.live):
        proc.stop()
    rosutil = sys.modules.get("rosutil")
    if rosutil is not None:
        for node in list(rosutil.TestNode.live):
            node.close()



@pytest.fixture
def spawn(tmp_path: Path) -> Iterator:
    procs: list[Proc] = []

    def _spawn(args: list[str], name: str = "proc", env: dict[str, str] | None = None) -> Proc:
        proc = Proc(args, tmp_path / f"{name}-{len(procs)}.log", env)
        procs.append(proc)
        return proc

    yield _spawn
    for proc in procs:
        proc.stop()


def wait_for(predicate, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


# Each test folder mirrors a package folder and is a marker of the same name
# (`pytest -m pipeline`, `pytest -m "not e2e"`).
FOLDER_MARKERS = ("pipeline", "ros", "nodes", "viewer", "rosless", "bench", "packaging", "e2e")


# Fixtures that start a server (about 1 s each) or take a database on one.
SERVER_FIXTURES = frozenset({"postgres", "postgres_server"})


def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        folder = Path(str(item.fspath)).parent.name
        if folder in FOLDER_MARKERS:
            item.add_marker(getattr(pytest.mark, folder))
    if os.environ.get("MUTANT_UNDER_TEST", "stats") != "stats":
        # make mutate runs a mutant's tests with -x in whatever order it lists them: the
        # in-process ones first, since most mutants fall to the first test that fails.
        items.sort(key=lambda item: bool(SERVER_FIXTURES & set(item.fixturenames)))
