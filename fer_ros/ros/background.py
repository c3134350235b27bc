"""An rclpy node with its own context, spun on a background thread.

For tools and tests that talk ROS from a process that does other work (the demo's
summary, the benchmark's camera, the tests' clients): create subscriptions and
publishers on ``.node`` and call ``close()`` when done.
"""

from __future__ import annotations

import threading

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node


class BackgroundNode:
    def __init__(self, name: str) -> None:
        self.context = rclpy.Context()
        # Not the process's argv: a tool's own `NAME:=VALUE` options (fer-ros bench
        # --param) would be taken as remapping rules.
        rclpy.init(args=[], context=self.context)
        self.node = Node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, name=f"{name}-spin", daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except Exception:
            pass

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        self.context.try_shutdown()
        self._thread.join(timeout=5)
