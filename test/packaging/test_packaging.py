"""Every module fer_ros imports is declared: in package.xml (rosdep keys, for colcon and
rosdep users) and in setup.cfg's install_requires (for `pip install .`)."""

from __future__ import annotations

import ast
import configparser
import re
import sys
import xml.etree.ElementTree as ET

from conftest import REPO

# Imported module -> its rosdep key in package.xml, or None where no rosdep key resolves
# on every distribution (those are pip-only and named in package.xml's comment).
ROSDEP = {
    "ament_index_python": "ament_index_python", "rclpy": "rclpy",
    "builtin_interfaces": "builtin_interfaces",
    "rcl_interfaces": "rcl_interfaces", "rosgraph_msgs": "rosgraph_msgs",
    "std_msgs": "std_msgs", "std_srvs": "std_srvs", "sensor_msgs": "sensor_msgs",
    "geometry_msgs": "geometry_msgs", "diagnostic_msgs": "diagnostic_msgs",
    "tf2_msgs": "tf2_msgs",
    "visualization_msgs": "visualization_msgs", "lifecycle_msgs": "lifecycle_msgs",
    "launch": "launch", "launch_ros": "launch_ros",
    "numpy": "python3-numpy", "cv2": "python3-opencv", "yaml": "python3-yaml",
    "h5py": "python3-h5py", "scipy": "python3-scipy", "matplotlib": "python3-matplotlib",
    "psutil": "python3-psutil", "tqdm": "python3-tqdm", "google": "python3-protobuf",
    "PIL": "python3-pil", "torch": None, "facenet_pytorch": None, "rosbags": None, "onnx": None,
    "onnxruntime": None, "tensorboard": None, "face_recognition": None, "psycopg": None,
}
# Imported module -> pip requirement name; None for the ROS packages (colcon builds
# them; the PyPI wheels come from requirements/ros-*.txt) and for the benchmark's
# peers (requirements/bench*.txt, installed by `make bench` only).
PIP = {
    "numpy": "numpy", "cv2": "opencv-python-headless", "yaml": "PyYAML", "h5py": "h5py",
    "scipy": "scipy", "matplotlib": "matplotlib", "psutil": "psutil", "tqdm": "tqdm",
    "torch": "torch", "facenet_pytorch": "facenet-pytorch", "rosbags": "rosbags",
    "onnx": "onnx", "onnxruntime": "onnxruntime", "tensorboard": "tensorboard",
    "google": "protobuf", "psycopg": "psycopg", "PIL": "pillow",
    "face_recognition": None,
}
# Imported through importlib, which the scan below cannot see.
DYNAMIC = {"facenet_pytorch"}


def imported_modules() -> set[str]:
    found = set(DYNAMIC)
    for path in (REPO / "fer_ros").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return {m for m in found if m not in sys.stdlib_module_names and m != "fer_ros"}


def package_xml_keys() -> set[str]:
    root = ET.parse(REPO / "package.xml").getroot()
    tags = ("depend", "exec_depend", "build_depend", "buildtool_depend", "test_depend")
    return {el.text.strip() for tag in tags for el in root.iter(tag)}


def install_requires() -> set[str]:
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    lines = config["options"]["install_requires"].split("\n")
    reqs = {re.split(r"[<>=!~;\[ ]", line.strip())[0].lower() for line in lines}
    extras = config["options.extras_require"] if config.has_section(
        "options.extras_require") else {}
    for value in extras.values():
        reqs |= {re.split(r"[<>=!~;\[ ]", line.strip())[0].lower()
                 for line in value.split("\n")}
    return reqs - {""}


def test_every_import_is_known_to_this_test() -> None:
    unknown = imported_modules() - set(ROSDEP)
    assert not unknown, f"add these imports to ROSDEP/PIP here and declare them: {unknown}"


def test_package_xml_declares_every_ros_and_system_import() -> None:
    keys = package_xml_keys()
    missing = {ROSDEP[m] for m in imported_modules() if ROSDEP.get(m) and ROSDEP[m] not in keys}
    assert not missing, f"package.xml lacks <exec_depend> for {sorted(missing)}"
    xml = (REPO / "package.xml").read_text()
    pip_only = sorted(m for m in imported_modules() if ROSDEP.get(m, "") is None)
    undocumented = [m for m in pip_only if PIP.get(m) and PIP[m] not in xml]
    assert not undocumented, f"say in package.xml that these come from pip: {undocumented}"


def test_setup_cfg_requires_every_python_import() -> None:
    reqs = install_requires()
    ros = {m for m, key in ROSDEP.items() if key and not key.startswith("python3-")}
    needed = {PIP[m].lower() for m in imported_modules() - ros if PIP.get(m)}
    assert needed <= reqs, f"setup.cfg install_requires lacks {sorted(needed - reqs)}"


def test_cmake_refuses_to_test_without_ament_cmake_pytest() -> None:
    cmake = (REPO / "CMakeLists.txt").read_text()
    assert "find_package(ament_cmake_pytest REQUIRED)" in cmake
    assert "QUIET" not in cmake.split("if(BUILD_TESTING)", 1)[1]
