"""tf2_msgs for the test run only: the ROS 2 wheels on PyPI lack it, and the perception
node's face frames go out as tf2_msgs/msg/TFMessage.

Built with rosidl through CMake, as our own messages are (scripts/setup_venv.sh), from the
definition that the pinned `rosbags` carries for the venv's distribution, into
build/test-msgs/<venv> (never into the venv: a user's environment must not gain a
package we made up). The built type's RIHS01 hash is checked against rosbags' hash of
the real tf2_msgs, so what the tests receive is what a ROS install's tf2_ros receives.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TYPE = "tf2_msgs/msg/TFMessage"
# rclpy's major version -> the distribution whose definitions rosbags should use.
DISTRIBUTIONS = {7: "ROS2_JAZZY", 9: "ROS2_KILTED"}

PACKAGE_XML = """<?xml version="1.0"?>
<package format="3">
  <name>tf2_msgs</name>
  <version>0.0.0</version>
  <description>tf2_msgs/msg/TFMessage for fer_ros's tests only</description>
  <maintainer email="fer_ros@example.com">fer_ros tests</maintainer>
  <license>BSD-3-Clause</license>
  <buildtool_depend>ament_cmake</buildtool_depend>
  <buildtool_depend>rosidl_default_generators</buildtool_depend>
  <depend>geometry_msgs</depend>
  <member_of_group>rosidl_interface_packages</member_of_group>
  <export><build_type>ament_cmake</build_type></export>
</package>
"""
CMAKE = """cmake_minimum_required(VERSION 3.8)
project(tf2_msgs)
find_package(ament_cmake REQUIRED)
find_package(rosidl_default_generators REQUIRED)
find_package(geometry_msgs REQUIRED)
rosidl_generate_interfaces(${PROJECT_NAME} "msg/TFMessage.msg" DEPENDENCIES geometry_msgs)
ament_package()
"""


def _typestore():
    from rosbags.typesys import Stores, get_typestore

    major = int(metadata.version("ros-rclpy").split(".")[0])
    if major not in DISTRIBUTIONS:
        raise RuntimeError(f"rclpy {major}.x: no known ROS distribution for tf2_msgs")
    return get_typestore(getattr(Stores, DISTRIBUTIONS[major]))


def _run(cmd: list[str], log: Path) -> None:
    # rosidl's CMake finds the venv's type supports through the ament index.
    env = {**os.environ, "AMENT_PREFIX_PATH": sys.prefix}
    with log.open("w") as out:
        if subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                          check=False).returncode:
            raise RuntimeError(f"building tf2_msgs for the tests failed: {' '.join(cmd)}; "
                               f"see {log}")


def tf2_msgs_prefix() -> Path:
    """The install prefix holding tf2_msgs (built on first use, then reused)."""
    store = _typestore()
    definition = store.generate_msgdef(TYPE)[0].split("\n====")[0]
    want_hash = store.hash_rihs01(TYPE)
    venv = Path(sys.prefix)
    root = REPO / "build" / "test-msgs" / venv.name.lstrip(".")
    prefix = root / "install"
    stamp = root / "stamp"
    key = hashlib.sha256(f"{venv}\n{definition}\n{CMAKE}".encode()).hexdigest()
    if not (stamp.exists() and stamp.read_text() == key):
        source, build = root / "src", root / "build"
        (source / "msg").mkdir(parents=True, exist_ok=True)
        (source / "package.xml").write_text(PACKAGE_XML)
        (source / "CMakeLists.txt").write_text(CMAKE)
        (source / "msg" / "TFMessage.msg").write_text(definition + "\n")
        # The libraries find each other, and the venv's, without LD_LIBRARY_PATH: a test
        # process that is already running cannot change its loader's search path.
        rpath = f"$ORIGIN;$ORIGIN/../../..;{venv / 'lib'}"
        _run(["cmake", "-S", str(source), "-B", str(build), "-Wno-dev",
              f"-DCMAKE_INSTALL_PREFIX={prefix}", f"-DCMAKE_PREFIX_PATH={venv}",
              f"-DPython3_EXECUTABLE={sys.executable}", f"-DCMAKE_INSTALL_RPATH={rpath}",
              "-DBUILD_TESTING=OFF"], root / "configure.log")
        _run(["cmake", "--build", str(build), "-j", "2"], root / "build.log")
        _run(["cmake", "--install", str(build)], root / "install.log")
        stamp.write_text(key)
    described = json.loads((prefix / "share" / "tf2_msgs" / "msg" / "TFMessage.json")
                           .read_text())
    got_hash = described["type_hashes"][0]["hash_string"]
    if got_hash != want_hash:
        raise RuntimeError(f"the tests' tf2_msgs has type hash {got_hash}, the real one "
                           f"{want_hash}: rebuild it (rm -r {root})")
    return prefix


def site_packages(prefix: Path) -> Path:
    return Path(sysconfig.get_path("purelib", vars={"base": str(prefix),
                                                    "platbase": str(prefix)}))


def with_tf2_msgs(env: dict[str, str], prefix: Path) -> dict[str, str]:
    """``env`` for a process that should find tf2_msgs (Python, libraries, ament index)."""
    out = dict(env)
    for name, path in (("PYTHONPATH", site_packages(prefix)), ("LD_LIBRARY_PATH", prefix / "lib"),
                       ("AMENT_PREFIX_PATH", prefix)):
        out[name] = os.pathsep.join(p for p in (str(path), env.get(name, "")) if p)
    return out


def import_here(prefix: Path) -> type:
    """tf2_msgs.msg.TFMessage in this process. rosidl dlopens the type support by its
    bare name when the type is first used, and this process's loader took its search path
    at start-up: loaded now by full path, the libraries are found by that name."""
    for library in sorted((prefix / "lib").glob("libtf2_msgs__*.so")):
        ctypes.CDLL(str(library), mode=ctypes.RTLD_GLOBAL)
    if str(site_packages(prefix)) not in sys.path:
        sys.path.insert(0, str(site_packages(prefix)))
    from tf2_msgs.msg import TFMessage

    return TFMessage
