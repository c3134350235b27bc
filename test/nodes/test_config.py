"""config/*.yaml hold every declared parameter with its declared default, and nothing else."""

from __future__ import annotations

import pytest
import yaml
from conftest import REPO

from fer_ros.nodes import camera_node, greeter_node, overlay_node
from fer_ros.nodes.perception import node as perception_node

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


@pytest.mark.parametrize("file", ["camera.yaml", "perception.yaml", "overlay.yaml",
                                  "greeter.yaml"])
def test_yaml_is_made_from_the_declarations(file: str) -> None:
    """Its comments are the declared descriptions, word for word: they cannot drift."""
    from fer_ros.nodes.config_files import render

    assert (CONFIG / file).read_text() == render(file), (
        f"config/{file} differs from the declarations: run `cd /tmp && "
        f"{REPO}/.venv/bin/python -m fer_ros.nodes.config_files {CONFIG}`")


def test_pipeline_parameters_are_the_live_preset_and_described_once() -> None:
    """Every parameter that sets the pipeline defaults to PipelineConfig.live()'s value and
    carries the config field's own description and limits; no description is written
    twice; only run-time settings may change while the node runs."""
    from fer_ros.pipeline import RUNTIME_SETTINGS, PipelineConfig
    from fer_ros.pipeline.config import param_name, settings

    live = PipelineConfig.live()
    specs = {spec.name: spec for spec in perception_node.PARAMS}
    exposed = [(name, s) for name, s in settings() if param_name(name)]
    assert len(exposed) == 31
    for name, setting in exposed:
        spec = specs[param_name(name)]
        value = getattr(live, name)
        assert spec.default == (list(value) if isinstance(value, tuple) else value), name
        assert spec.description == setting.description and spec.limits == setting.limits
        assert spec.read_only == (name not in RUNTIME_SETTINGS), name
    descriptions = [spec.description for spec in perception_node.PARAMS]
    assert len(set(descriptions)) == len(descriptions)
    # The node builds its pipeline from its parameters through the same names.
    values = {spec.name: spec.default for spec in perception_node.PARAMS}
    assert PipelineConfig.from_values(values) == live
