#!/usr/bin/env bash
# Builds the no-ROS-install environment: a venv (.venv) holding the ROS 2 Kilted
# wheels, torch CPU, OpenCV and this package, built from CMakeLists.txt into the
# venv exactly as colcon would build it into install/. Idempotent: the pip step
# runs again only when requirements/*.txt change; the CMake step is incremental.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
BUILD_DIR=${BUILD_DIR:-build/venv}

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi

stamp="$VENV/.fer_ros_requirements"
want=$(cat requirements/ros-kilted.txt requirements/runtime.txt requirements/dev.txt requirements/nodeps.txt | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing pinned requirements into $VENV (first run: about 2 minutes)"
  "$VENV/bin/pip" install -q --disable-pip-version-check \
    -r requirements/ros-kilted.txt -r requirements/runtime.txt -r requirements/dev.txt
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
echo "setup: fer_ros built and installed into $VENV"
