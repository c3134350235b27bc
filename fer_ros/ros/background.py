"""An rclpy node with its own context, spun on a background thread.

For tools and tests that talk ROS from a process that does other work (the demo's
summary, the benchmark's camera, the tests' clients): create subscriptions and
publishers on ``.node`` and call ``close()`` when done.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable

import rclpy
from lifecycle_msgs.srv import GetState
from rcl_interfaces.srv import DescribeParameters, GetParameters, SetParameters
from rclpy.client import Client
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node

# Requests whose empty form a server answers without acting or logging: the probe sent
# before a client's first real request (see BackgroundNode.call).
SILENT_PROBES = (SetParameters.Request, GetParameters.Request, DescribeParameters.Request,
                 GetState.Request)


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
        # Clients that have had a round trip (weak: a tool may make one per call).
        self._answered: weakref.WeakSet[Client] = weakref.WeakSet()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except Exception:
            pass

    def call(self, client: Client, request, timeout: float = 30.0):
        """The server's response to ``request``. TimeoutError when the service does not
        appear within ``timeout``, no probe comes back within ``timeout``, or the request
        is not answered within ``timeout`` of being sent.

        Why the probe: ``wait_for_service`` proves only that this side has seen the
        server. Fast DDS's server drops a response when it has not yet matched the
        client's response reader within 100 ms of the request (rmw_fastrtps
        ``rmw_send_response``: "client will not receive response"), which a loaded
        machine reaches right after a node starts. So the first request of a client
        whose type has a silent empty form is preceded by empty probes (``handshake``)
        until one is answered: an answer proves both directions deliver.
        """
        if not client.wait_for_service(timeout_sec=timeout):
            raise TimeoutError(f"{client.srv_name} not available within {timeout} s")
        if client not in self._answered and isinstance(request, SILENT_PROBES):
            probes: list = []
            try:
                handshake(lambda _: probes.append(client.call_async(type(request)())),
                          lambda: any(probe.done() for probe in probes), timeout)
            except TimeoutError as exc:
                raise TimeoutError(f"{client.srv_name}: {exc}") from exc
        future = client.call_async(request)
        _wait(future.done, time.monotonic() + timeout)
        if not future.done():
            raise TimeoutError(f"{client.srv_name} did not answer within {timeout} s")
        self._answered.add(client)
        return future.result()

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        self.context.try_shutdown()
        self._thread.join(timeout=5)


def handshake(send: Callable[[int], None], answered: Callable[[], bool],
              timeout: float = 30.0, wait: float = 0.5) -> int:
    """Send probes ``send(1)``, ``send(2)``... every ``wait`` seconds until ``answered()``;
    returns how many were sent (TimeoutError when none was answered within ``timeout``).

    Why: seeing the other side's endpoints (get_subscription_count, get_publisher_count,
    wait_for_service) means OUR side has matched. Fast DDS matches the two sides
    independently, and what is sent before the other side has matched is lost
    (FIELD_NOTES; fer_ros/rosless/bag_play.py). Only an answer that came back proves both
    directions deliver. A probe must be told apart from the caller's own messages (its own
    stamps or names), since more than one may arrive.
    """
    deadline = time.monotonic() + timeout
    sent = 0
    while time.monotonic() < deadline:
        sent += 1
        send(sent)
        _wait(answered, min(deadline, time.monotonic() + wait))
        if answered():
            return sent
    if answered():
        return sent
    raise TimeoutError(f"no answer to {sent} probes within {timeout} s")


def _wait(done: Callable[[], bool], deadline: float) -> None:
    while not done() and time.monotonic() < deadline:
        time.sleep(0.02)
