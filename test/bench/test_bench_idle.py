"""`fer-ros bench --idle` end to end with tiny durations: behaviour, not speed.

The figures themselves come from a full run on a quiet machine (README, "CPU budget");
here we check that the idle bench drives the real perception_node over DDS with its
clips, finds the person who steps in, and prints and writes every figure.
"""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import data_path

from fer_ros.paths import fer_ros_command


@pytest.mark.timeout(400)
def test_idle_bench_prints_its_figures(tmp_path) -> None:
    for name in ("no_face.mp4", "noface_face.mov", "single_face.mp4",
                 "free-mountain-vector-01.jpg"):
        data_path("pyfeat", name)  # fail with the fetch command when missing
    cmd = [*fer_ros_command(), "bench", "--idle", "--json", "--out", str(tmp_path),
           "--seconds", "1", "--idle-trials", "1"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=380, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith("idle: ")]
    assert len(lines) == 1, result.stdout[-2000:]
    summary = json.loads(lines[0].removeprefix("idle: "))
    assert set(summary) >= {"cpu_percent_empty", "cpu_percent_one_face", "first_detection_ms"}
    assert set(summary["first_detection_ms"]) == {"p50", "max"}
    report = json.loads((tmp_path / "idle.json").read_text())
    results = report["results"]
    for clip in ("empty", "empty_moving", "one_face"):
        entry = results[clip]
        assert entry["sent"] >= 30 and entry["cpu_percent"] > 0, entry
        # With a face in view the node is busy and drops stale images (by design); with
        # nobody there it has time for every one.
        assert entry["answered"] >= (0.9 * entry["sent"] if clip != "one_face" else 1), entry
    assert results["empty"]["faces_mean"] == 0 and results["one_face"]["faces_mean"] > 0.5
    for key in ("first_detection_ms", "first_detection_after_motion_ms"):
        assert results[key]["trials"] == 1 and results[key]["missed"] == 0, results[key]
    assert report["node_exit_code"] == 0
