"""Repair the CMake export files of the ROS 2 PyPI wheels so rosidl can build here.

The wheels were built in a manylinux container, and about a dozen installed
``*.cmake`` files still name that container's Python and numpy include dirs
(``/opt/python/cp311-cp311/...``). CMake then stops with "Imported target ...
includes non-existent path". This rewrites them to this interpreter's paths.
Idempotent: files already repaired are left alone.

Usage: python scripts/repair_ros_cmake.py PREFIX   (PREFIX = the venv)
"""

from __future__ import annotations

import re
import sys
import sysconfig
from pathlib import Path

import numpy

_BUILD_MACHINE = re.compile(r"/opt/python/cp3\d+-cp3\d+[^\";\s]*")


def _local_path(foreign: str) -> str:
    if "numpy" in foreign:
        return numpy.get_include()
    if "/include/python3" in foreign:
        return sysconfig.get_paths()["include"]
    raise ValueError(f"no local equivalent known for {foreign}")


def repair(prefix: Path) -> list[Path]:
    changed: list[Path] = []
    for cmake_file in sorted((prefix / "share").rglob("*.cmake")):
        text = cmake_file.read_text(encoding="utf-8", errors="surrogateescape")
        if "/opt/python/cp3" not in text:
            continue
        fixed = _BUILD_MACHINE.sub(lambda m: _local_path(m.group(0)), text)
        cmake_file.write_text(fixed, encoding="utf-8", errors="surrogateescape")
        changed.append(cmake_file)
    return changed


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    changed = repair(Path(sys.argv[1]))
    print(f"repair_ros_cmake: rewrote build-machine paths in {len(changed)} file(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
