"""Run a fer_ros node on Humble's rclpy API surface.

Humble's rclpy (3.3) has only `add_on_set_parameters_callback`; the pre-set and
post-set parameter callbacks arrived in Iron (ros2/rclpy#966). No Humble wheel exists
on PyPI, so this removes those methods from `rclpy.node.Node` before the node starts.

Usage: python humble_api.py MODULE [--ros-args ...]   (MODULE e.g. fer_ros.nodes.camera_node)
"""

from __future__ import annotations

import importlib
import sys

from rclpy.node import Node

POST_HUMBLE = ("add_pre_set_parameters_callback", "add_post_set_parameters_callback",
               "remove_pre_set_parameters_callback", "remove_post_set_parameters_callback")

for name in POST_HUMBLE:
    if hasattr(Node, name):
        delattr(Node, name)

if __name__ == "__main__":
    module = importlib.import_module(sys.argv[1])
    # argv[0] stays the program name, as rclpy expects of sys.argv.
    sys.exit(module.main([sys.argv[0], *sys.argv[2:]]))
