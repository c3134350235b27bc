"""The shared main() of the fer_ros nodes: init, spin, clean shutdown, start-up errors.

Ctrl-C ends a node with exit code 0 and no traceback. SIGINT is left to Python (a
KeyboardInterrupt) rather than rclpy's handler, which would shut the context down
first so that the summary a node logs on its way out could no longer reach rosout.
A bad parameter or a missing model at start-up is one FATAL line and exit code 2.
A node that ends by itself (a camera at the end of its file) sets ``node.done``, an
rclpy Future whose result is the exit code.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable

import rclpy
from rclpy.exceptions import ParameterException
from rclpy.executors import (
    ExternalShutdownException,
    MultiThreadedExecutor,
    SingleThreadedExecutor,
)
from rclpy.logging import get_logger
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions
from rclpy.task import Future

from fer_ros.assets import AssetError
from fer_ros.ros.params import ParameterError


def log_final(node: Node, text: str) -> None:
    """Log on the way out: to rosout while the context lives, else to stderr."""
    if node.context.ok():
        node.get_logger().info(text)
    else:
        print(f"[INFO] [{node.get_name()}]: {text}", file=sys.stderr, flush=True)


def run_node(make_node: Callable[[], Node], args: list[str] | None, name: str,
             threads: int = 1) -> int:
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.SIGTERM)
    # Ctrl-C asks the spin loop below to stop, between two waits: a KeyboardInterrupt
    # raised at an arbitrary point could land inside rclpy's executor and surface as
    # another exception with a traceback. A second Ctrl-C interrupts at once (a callback
    # that hangs). Set explicitly: a shell starts background jobs with SIGINT ignored, and
    # Ctrl-C from a launcher must still stop the node.
    stop = threading.Event()

    def on_sigint(signum: int, frame: object) -> None:
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    signal.signal(signal.SIGINT, on_sigint)
    node = None
    executor: SingleThreadedExecutor | MultiThreadedExecutor | None = None
    code = 0
    try:
        node = make_node()
        executor = (MultiThreadedExecutor(num_threads=threads) if threads > 1
                    else SingleThreadedExecutor())
        executor.add_node(node)
        done = getattr(node, "done", None)
        if not isinstance(done, Future):
            done = Future()  # never completes: spin until Ctrl-C or shutdown
        # Short waits, not one endless one: Python runs the Ctrl-C handler only between
        # waits, and a node with no timers and no incoming messages would never notice.
        while node.context.ok() and not done.done() and not stop.is_set():
            executor.spin_until_future_complete(done, timeout_sec=0.25)
        code = int(done.result()) if done.done() else 0
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (ParameterError, ParameterException) as exc:
        get_logger(name).fatal(f"invalid parameters: {exc}")
        code = 2
    except (AssetError, ValueError) as exc:
        if node is not None:
            # Raised while running, not while starting: a bug; keep its traceback.
            raise
        get_logger(name).fatal(f"cannot start: {exc}")
        code = 2
    finally:
        # The executor first: one left to the garbage collector after the context is shut
        # down prints "Exception ignored in: Executor.__del__ ... InvalidHandle" at exit.
        if executor is not None:
            executor.shutdown()
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return code
