"""Every node on Humble's rclpy API surface (see humble_api.py): it starts, refuses a
bad parameter at start-up with exit code 2, refuses a bad run-time set with the
reason, and applies a good one."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import REPO, wait_for
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rosutil import TestNode

SHIM = str(REPO / "test" / "humble_api.py")


@dataclass
class Case:
    module: str
    node: str
    args: list[str]
    bad_start: list[str]
    bad_set: tuple[str, object]
    good_set: tuple[str, object]
    ready: str  # text in the log once the node is up


CASES = [
    Case("fer_ros.nodes.camera_node", "camera", ["-p", "loop:=true", "-p", "fps:=5.0"],
         ["-p", "fps:=500.0"], ("fps", 0.05), ("fps", 10.0), "opened"),
    Case("fer_ros.nodes.perception.node", "perception", ["-p", "device:=cpu"],
         ["-p", "recognition_threshold:=1.5"], ("recognition_margin", 2.0),
         ("recognition_threshold", 0.6), "models loaded"),
    Case("fer_ros.nodes.overlay_node", "overlay", ["-p", "port:=0"],
         ["-p", "jpeg_quality:=5"], ("jpeg_quality", 101), ("jpeg_quality", 60), ""),
    Case("fer_ros.nodes.greeter_node", "greeter", [], ["-p", "min_emotion_score:=2.0"],
         ("forget_after", -1.0), ("min_emotion_score", 0.7), ""),
]


def _value(value: object) -> ParameterValue:
    if isinstance(value, float):
        return ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value)
    return ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=int(value))


@pytest.mark.parametrize("case", CASES, ids=[c.node for c in CASES])
def test_node_on_the_humble_api(case: Case, spawn, tmp_path: Path) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    cv2.imwrite(str(frames / "a.png"), np.full((48, 64, 3), 90, np.uint8))
    base = [sys.executable, SHIM, case.module, "--ros-args", "-p", f"source:={frames}"] \
        if case.node == "camera" else [sys.executable, SHIM, case.module, "--ros-args"]

    bad = spawn([*base, *case.bad_start], f"{case.node}-bad")
    assert bad.popen.wait(120) == 2, bad.output()
    assert "invalid parameters" in bad.output(), bad.output()
    assert "Traceback" not in bad.output(), bad.output()

    proc = spawn([*base, *case.args], case.node)
    assert wait_for(lambda: case.ready in proc.output() or proc.popen.poll() is not None,
                    120), proc.output()
    assert proc.popen.poll() is None, proc.output()
    client = TestNode(f"humble_{case.node}_client")
    try:
        service = client.node.create_client(SetParameters, f"/{case.node}/set_parameters")

        def set_one(name: str, value: object):
            request = SetParameters.Request(
                parameters=[ParameterMsg(name=name, value=_value(value))])
            return client.call(service, request, timeout=60.0).results[0]

        refused = set_one(*case.bad_set)
        assert not refused.successful
        assert case.bad_set[0] in refused.reason, refused.reason
        accepted = set_one(*case.good_set)
        assert accepted.successful, accepted.reason
        name, value = case.good_set
        applied = f"parameters applied: {name}={value!r}"
        assert wait_for(lambda: applied in proc.output(), 10), proc.output()
        assert f"{case.bad_set[0]}={case.bad_set[1]!r}" not in proc.output().split(
            "parameters applied:", 1)[-1]
    finally:
        client.close()
    assert proc.interrupt() == 0, proc.output()
    assert "Traceback" not in proc.output()
