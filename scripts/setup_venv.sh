#!/usr/bin/env bash
# Builds the no-ROS-install environment: a venv (.venv) holding the ROS 2 Kilted
# wheels, torch CPU, OpenCV and this package, built from CMakeLists.txt into the
# venv exactly as colcon would build it into install/. Idempotent: the pip step
# runs again only when requirements/*.txt change; the CMake step is incremental.
set -euo pipefail
cd "$(dirname "$0")/.."

# ROS_DISTRO picks the wheels: kilted (default, .venv) or jazzy (.venv-jazzy).
ROS_DISTRO=${ROS_DISTRO:-kilted}
case "$ROS_DISTRO" in
  kilted) default_venv=.venv ;;
  jazzy) default_venv=.venv-jazzy ;;
  *) echo "setup: ROS_DISTRO=$ROS_DISTRO: only kilted and jazzy have PyPI wheels" >&2; exit 2 ;;
esac
VENV=${VENV:-$default_venv}
PYTHON=${PYTHON:-python3}
BUILD_DIR=${BUILD_DIR:-build/$(basename "$VENV" | sed "s/^\.//")}
ROS_REQUIREMENTS=requirements/ros-$ROS_DISTRO.txt

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi

stamp="$VENV/.fer_ros_requirements"
want=$(cat "$ROS_REQUIREMENTS" requirements/runtime.txt requirements/dev.txt requirements/nodeps.txt | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing pinned requirements into $VENV (first run: about 2 minutes)"
  "$VENV/bin/pip" install -q --disable-pip-version-check \
    -r "$ROS_REQUIREMENTS" -r requirements/runtime.txt -r requirements/dev.txt
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps -r requirements/nodeps.txt
  "$VENV/bin/python" scripts/repair_ros_cmake.py "$VENV"
  echo "$want" > "$stamp"
fi
# The benchmark's peers (make bench) are installed only when asked for.
if [ "${FER_ROS_BENCH:-0}" = 1 ] && [ ! -f "$VENV/.fer_ros_bench" ]; then
  echo "setup: installing the benchmark's peer libraries"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r requirements/bench.txt
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps -r requirements/bench-nodeps.txt
  touch "$VENV/.fer_ros_bench"
fi

# colcon, in a venv of its own (shared by every distribution): test/packaging/test_colcon.py.
COLCON_VENV=build/colcon
want_colcon=$(sha256sum < requirements/colcon.txt | cut -c1-16)
if [ "$(cat "$COLCON_VENV/.fer_ros_requirements" 2>/dev/null)" != "$want_colcon" ]; then
  echo "setup: installing colcon into $COLCON_VENV"
  "$PYTHON" -m venv "$COLCON_VENV"
  "$COLCON_VENV/bin/pip" install -q --disable-pip-version-check -r requirements/colcon.txt
  echo "$want_colcon" > "$COLCON_VENV/.fer_ros_requirements"
fi

command -v cmake >/dev/null || { echo "setup: cmake is required (scripts/setup_system.sh)" >&2; exit 1; }
mkdir -p "$BUILD_DIR"
if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
  echo "setup: configuring the fer_ros package (messages + Python) into $VENV"
  cmake -S . -B "$BUILD_DIR" -Wno-dev \
    -DCMAKE_INSTALL_PREFIX="$PWD/$VENV" -DCMAKE_PREFIX_PATH="$PWD/$VENV" \
    -DPython3_EXECUTABLE="$PWD/$VENV/bin/python" -DBUILD_TESTING=OFF > "$BUILD_DIR.configure.log" 2>&1 \
    || { mkdir -p "$(dirname "$BUILD_DIR")"; cat "$BUILD_DIR.configure.log" >&2; exit 1; }
fi
cmake --build "$BUILD_DIR" -j 2 > "$BUILD_DIR.build.log" 2>&1 || { cat "$BUILD_DIR.build.log" >&2; exit 1; }
cmake --install "$BUILD_DIR" > "$BUILD_DIR.install.log" 2>&1 || { cat "$BUILD_DIR.install.log" >&2; exit 1; }
# CMake's install never deletes: drop installed modules whose source is gone (a module
# moved or removed), so they cannot hide an import error. msg/ and srv/ are generated.
"$VENV/bin/python" - "$VENV" <<'PY'
import sys, sysconfig
from pathlib import Path
installed = Path(sysconfig.get_path("purelib", vars={"base": sys.argv[1], "platbase": sys.argv[1]})) / "fer_ros"
for path in sorted(installed.rglob("*.py"), reverse=True):
    rel = path.relative_to(installed)
    if rel.parts[0] not in ("msg", "srv") and not (Path("fer_ros") / rel).exists():
        path.unlink()
for folder in sorted((p for p in installed.rglob("*") if p.is_dir()), reverse=True):
    if not any(f for f in folder.rglob("*") if f.suffix != ".pyc" and f.is_file()):
        for f in folder.rglob("*"):
            f.unlink() if f.is_file() else None
        for d in sorted(folder.rglob("*"), reverse=True):
            d.rmdir()
        folder.rmdir()
PY
echo "setup: fer_ros built and installed into $VENV"
