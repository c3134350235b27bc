"""colcon from PyPI builds and tests this package in a fresh workspace over the wheel
venv, the way a ROS 2 user's workspace does (see README "In a ROS 2 workspace")."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import REPO

COLCON = REPO / "build" / "colcon" / "bin" / "colcon"
VENV = Path(sys.prefix)

pytestmark = pytest.mark.slow


def bash(script: str, cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["AMENT_PREFIX_PATH"] = str(VENV)  # the underlay: the wheels (and fer_ros) in the venv
    env["PATH"] = f"{VENV / 'bin'}:{env['PATH']}"
    return subprocess.run(["bash", "-c", f"set -eo pipefail\n{script}"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def copy_sources(target: Path) -> None:
    """The package's files as git sees them (no venvs, builds or caches)."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, capture_output=True, text=True, check=True).stdout
    for name in listed.splitlines():
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def test_colcon_build_run_and_test(tmp_path: Path) -> None:
    if not COLCON.exists():
        pytest.fail(f"{COLCON} is missing: run `make setup` (scripts/setup_venv.sh)")
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.fail("this test copies the package with git: run it from a git clone")
    workspace = tmp_path / "ws"
    copy_sources(workspace / "src" / "fer_ros")
    build = bash(f"{COLCON} build --packages-select fer_ros --cmake-args -DBUILD_TESTING=ON "
                 f"-DPython3_EXECUTABLE={VENV / 'bin' / 'python'}", workspace, 900)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    install = workspace / "install" / "fer_ros"
    for path in ("lib/fer_ros/camera_node", "lib/fer_ros/perception_node", "bin/fer-ros",
                 "share/fer_ros/launch/webcam.launch.py", "share/fer_ros/config/camera.yaml",
                 "share/ament_index/resource_index/packages/fer_ros"):
        assert (install / path).exists(), path

    # Sourced, the workspace's fer_ros (with its messages) comes before the underlay's.
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        cv2.imwrite(str(frames / f"{i}.png"), np.full((48, 64, 3), 40 * i, np.uint8))
    run = bash(
        "source install/setup.bash\n"
        "cd /\n"
        "python -c 'import fer_ros, fer_ros.msg; print(fer_ros.__file__); "
        "print(fer_ros.msg.FaceEmotionArray())'\n"
        f"{install}/lib/fer_ros/camera_node --ros-args -p source:={frames} -p fps:=20.0\n",
        workspace, 120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.splitlines()[0].startswith(str(install)), run.stdout
    assert "published 3 frames" in run.stdout + run.stderr, run.stdout + run.stderr

    tests = bash(f"{COLCON} test --packages-select fer_ros "
                 "--ctest-args -R '^(test_messages|test_config)$'\n"
                 f"{COLCON} test-result --test-result-base build/fer_ros --verbose",
                 workspace, 900)
    report = tests.stdout + tests.stderr
    assert tests.returncode == 0, report[-4000:]
    summary = re.search(r"Summary: (\d+) tests, (\d+) errors, (\d+) failures", report)
    assert summary, report[-4000:]
    total, errors, failures = map(int, summary.groups())
    assert total >= 5 and errors == 0 and failures == 0, report[-4000:]
