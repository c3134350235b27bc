"""config/*.yaml, made from the nodes' parameter declarations: every parameter at its
default with its description (and whether it is read only) as the comment above it, so the
files cannot drift from `ros2 param describe`. Rewrite them after changing a declaration:

    cd /tmp && /work/main/.venv/bin/python -m fer_ros.nodes.config_files /work/main/config

(from outside the checkout's root, so the installed package is imported);
test/nodes/test_config.py checks that the files are what this makes.
"""

from __future__ import annotations

import sys
from pathlib import Path

from fer_ros.nodes import camera_node, greeter_node, overlay_node
from fer_ros.nodes.perception import params as perception_params
from fer_ros.ros.params import render_yaml

_MADE_BY = ("Made from the declarations by `python -m fer_ros.nodes.config_files`;\n"
            "`ros2 param describe /{node} NAME` shows the same text.")

# file -> (node name, parameter specs, header)
FILES = {
    "camera.yaml": ("camera", camera_node.PARAMS, (
        "Parameters of camera_node (node name: camera), declared in "
        "fer_ros/nodes/camera_node.py.\n"
        "Use: camera_node --ros-args --params-file config/camera.yaml [-p source:=...]\n"
        "The key matches a node named camera in any namespace.\n" + _MADE_BY)),
    "perception.yaml": ("perception", perception_params.PARAMS, (
        "Parameters of perception_node (node name: perception), declared in\n"
        "fer_ros/nodes/perception/params.py and fer_ros/pipeline/config.py (their defaults are\n"
        "PipelineConfig.live()).\n" + _MADE_BY)),
    "overlay.yaml": ("overlay", overlay_node.PARAMS, (
        "Parameters of overlay_node (node name: overlay), declared in "
        "fer_ros/nodes/overlay_node.py.\n" + _MADE_BY)),
    "greeter.yaml": ("greeter", greeter_node.PARAMS, (
        "Parameters of greeter_node (node name: greeter), declared in "
        "fer_ros/nodes/greeter_node.py.\n" + _MADE_BY)),
}


def render(file: str) -> str:
    node, specs, header = FILES[file]
    return render_yaml(node, specs, header.format(node=node))


def main(argv: list[str] | None = None) -> int:
    folder = Path((argv or sys.argv[1:] or ["config"])[0])
    for file in FILES:
        (folder / file).write_text(render(file))
        print(f"wrote {folder / file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
