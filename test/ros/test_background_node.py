"""fer_ros/ros/background.py: a tool's node is not remapped by the tool's own options, and
its service calls survive a server that drops its first responses."""

from __future__ import annotations

import sys

import pytest
from rcl_interfaces.msg import SetParametersResult
from rcl_interfaces.srv import SetParameters
from rclpy.parameter import Parameter
from rclpy.task import Future

from fer_ros.ros.background import BackgroundNode


def test_the_processs_name_value_options_are_not_remapping_rules(monkeypatch) -> None:
    # As `fer-ros bench --param image_transport:=compressed` leaves it in sys.argv.
    monkeypatch.setattr(sys, "argv", ["fer-ros", "bench", "--param", "image:=compressed"])
    node = BackgroundNode("background_test")
    try:
        assert node.node.resolve_topic_name("image") == "/image"
    finally:
        node.close()


class _LateServer:
    """A client whose server drops the responses to the first ``lost`` requests, as
    Fast DDS does before the server has matched the client's response reader."""

    srv_name = "/late/set_parameters"

    def __init__(self, lost: int) -> None:
        self.lost = lost
        self.requests: list = []

    def wait_for_service(self, timeout_sec: float) -> bool:
        return True

    def call_async(self, request) -> Future:
        self.requests.append(request)
        future = Future()
        if len(self.requests) > self.lost:
            future.set_result(SetParameters.Response(
                results=[SetParametersResult(successful=True)] * len(request.parameters)))
        return future


def test_a_first_request_waits_for_a_probe_to_come_back() -> None:
    request = SetParameters.Request(parameters=[Parameter(name="fps").to_parameter_msg()])
    server = _LateServer(lost=3)
    node = BackgroundNode("background_call_test")
    try:
        response = node.call(server, request, timeout=10.0)
        # Three empty probes lost, a fourth answered, then the request itself, once.
        assert [len(r.parameters) for r in server.requests] == [0, 0, 0, 0, 1]
        assert len(response.results) == 1
        node.call(server, request, timeout=10.0)  # no probe once a round trip came back
        assert [len(r.parameters) for r in server.requests] == [0, 0, 0, 0, 1, 1]
    finally:
        node.close()


def test_no_answer_at_all_is_a_timeout_that_names_the_service() -> None:
    node = BackgroundNode("background_timeout_test")
    try:
        with pytest.raises(TimeoutError, match="/late/set_parameters"):
            node.call(_LateServer(lost=1000), SetParameters.Request(), timeout=1.0)
    finally:
        node.close()
