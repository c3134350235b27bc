"""fer_ros/ros/background.py: a tool's node is not remapped by the tool's own options."""

from __future__ import annotations

import sys

from fer_ros.ros.background import BackgroundNode


def test_the_processs_name_value_options_are_not_remapping_rules(monkeypatch) -> None:
    # As `fer-ros bench --param image_transport:=compressed` leaves it in sys.argv.
    monkeypatch.setattr(sys, "argv", ["fer-ros", "bench", "--param", "image:=compressed"])
    node = BackgroundNode("background_test")
    try:
        assert node.node.resolve_topic_name("image") == "/image"
    finally:
        node.close()
