"""config/*.yaml hold every declared parameter with its declared default, and nothing else."""

from __future__ import annotations

import pytest
import yaml
from conftest import REPO

from fer_ros.nodes import camera_node, greeter_node, overlay_node, perception_node

CONFIG = REPO / "config"


def load(name: str, node: str) -> dict:
    data = yaml.safe_load((CONFIG / name).read_text())
    assert list(data) == [f"/**/{node}"], "keys must match the node in any namespace"
    return data[f"/**/{node}"]["ros__parameters"]


@pytest.mark.parametrize("module, file, node", [
    (perception_node, "perception.yaml", "perception"),
    (overlay_node, "overlay.yaml", "overlay"),
    (greeter_node, "greeter.yaml", "greeter"),
    (camera_node, "camera.yaml", "camera"),
])
def test_yaml_matches_declared_parameters(module, file: str, node: str) -> None:
    params = load(file, node)
    declared = {spec.name: spec.default for spec in module.PARAMS}
    assert params == declared
    for spec in module.PARAMS:
        assert spec.description and spec.check(spec.default) is None
