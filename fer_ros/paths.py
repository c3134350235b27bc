"""Where fer_ros keeps fetched weights and data, and where its installed files are."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Root of the model and test-data cache (never inside git).

    ``$FER_ROS_CACHE`` when set, else ``$XDG_CACHE_HOME/fer_ros`` or ``~/.cache/fer_ros``.
    """
    explicit = os.environ.get("FER_ROS_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "fer_ros"


def models_dir() -> Path:
    return cache_dir() / "models"


def data_dir() -> Path:
    return cache_dir() / "data"


def share_dir() -> Path:
    """The installed share/fer_ros (launch/, config/), or the source tree when run from it."""
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory("fer_ros"))
    except Exception:
        return Path(__file__).resolve().parent.parent


def fer_ros_command() -> list[str]:
    """How to run the `fer-ros` tool from a child process.

    Not ``python -m fer_ros.cli``: run from a source checkout, that would import the
    source folder (which has no generated messages) instead of the installed package.
    """
    import shutil
    import sys

    beside = Path(sys.executable).parent / "fer-ros"
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("fer-ros")
    return [found] if found else [sys.executable, "-m", "fer_ros.cli"]


def package_prefix() -> Path:
    """The install prefix of fer_ros: colcon's install/fer_ros, or the venv."""
    try:
        from ament_index_python.packages import get_package_prefix

        return Path(get_package_prefix("fer_ros"))
    except Exception:
        import sys

        return Path(sys.prefix)


def node_executable(name: str) -> Path:
    """An installed node, as `ros2 run fer_ros NAME` finds it."""
    return package_prefix() / "lib" / "fer_ros" / name
