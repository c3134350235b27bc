"""The rclpy side shared by ``bag play`` and ``bag record``: a node and our own signals."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Sequence
from typing import Any

import rclpy
from rclpy.context import Context
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from fer_ros.rosless.bag import BagError


class StopFlag:
    """Ctrl-C/SIGTERM set a flag instead of raising, so a bag is never closed mid-write."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopFlag:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: object) -> None:
        self.event.set()

    @property
    def stopped(self) -> bool:
        return self.event.is_set()

    def sleep_until(self, deadline: float, tick: float = 0.05) -> bool:
        """Sleep until monotonic ``deadline``; False when stopped meanwhile."""
        while not self.stopped:
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            self.event.wait(min(left, tick))
        return False


class BagSession:
    """An rclpy context with one node; ``ros_args`` as after ``--ros-args`` on a command."""

    def __init__(self, name: str, ros_args: Sequence[str] = ()) -> None:
        self.context = Context()
        args = ["fer-ros", "--ros-args", *ros_args] if ros_args else None
        try:
            # Our own signal handling (StopFlag) decides when to stop; rclpy's would race it.
            rclpy.init(args=args, context=self.context,
                       signal_handler_options=SignalHandlerOptions.NO)
        except _rclpy.RCLError as exc:  # e.g. a malformed remap rule
            raise BagError(f"bad ROS arguments {' '.join(ros_args)}: {exc}") from exc
        self.node: Node = rclpy.create_node(name, context=self.context,
                                            start_parameter_services=False)

    def close(self) -> None:
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
