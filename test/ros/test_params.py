"""fer_ros/ros/params.py in-process: descriptors, start-up checks, run-time sets, YAML.

The nodes' own tests (test/nodes/) show the same through `ros2 param` over DDS; these
run the module on a plain rclpy Node in this process, so that `make mutate` can see
which of its lines they cover.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from rcl_interfaces.msg import ParameterType
from rclpy.exceptions import ParameterException
from rclpy.node import Node
from rclpy.parameter import Parameter

from fer_ros.ros.params import ParameterError, ParamSpec, declare_parameters, render_yaml

pytestmark = pytest.mark.ros

SPECS = (
    ParamSpec("rate", 2.5, "A float in a range.", (0.5, 10.0)),
    ParamSpec("count", 3, "An int in a range.", (1, 5)),
    ParamSpec("mode", "fast", "A string with choices.", choices=("fast", "slow")),
    ParamSpec("label", "cam", "Any string; fixed after start-up.", read_only=True),
    ParamSpec("flag", True, "A bool."),
    ParamSpec("even", 4, "An int that must be even.",
              rule=lambda v: None if v % 2 == 0 else f"even={v} is odd"),
)


@pytest.fixture
def make_node(rclpy_context) -> Iterator:
    nodes: list[Node] = []

    def _make(**overrides: Any) -> Node:
        node = Node(f"params_test_{len(nodes)}", context=rclpy_context,
                    parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])
        nodes.append(node)
        return node

    yield _make
    for node in nodes:
        node.destroy_node()


def test_descriptors_carry_description_range_choices_and_read_only(make_node) -> None:
    node = make_node()
    declare_parameters(node, SPECS)
    rate, count, mode, label, flag = node.describe_parameters(
        ["rate", "count", "mode", "label", "flag"])
    assert rate.description == "A float in a range." and rate.type == ParameterType.PARAMETER_DOUBLE
    assert [(r.from_value, r.to_value, r.step) for r in rate.floating_point_range] == [
        (0.5, 10.0, 0.0)]
    assert list(rate.integer_range) == [] and not rate.read_only
    assert [(r.from_value, r.to_value, r.step) for r in count.integer_range] == [(1, 5, 1)]
    assert list(count.floating_point_range) == []
    assert mode.additional_constraints == "one of: fast, slow"
    assert rate.additional_constraints == ""
    assert label.read_only and not mode.read_only
    assert flag.type == ParameterType.PARAMETER_BOOL


def test_defaults_and_overrides_are_returned(make_node) -> None:
    values = declare_parameters(make_node(count=5, mode="slow"), SPECS)
    assert values == {"rate": 2.5, "count": 5, "mode": "slow", "label": "cam",
                      "flag": True, "even": 4}


@pytest.mark.parametrize("overrides", [{"rate": 0.5}, {"rate": 10.0}, {"count": 1},
                                       {"count": 5}])
def test_the_limits_are_inclusive(make_node, overrides: dict) -> None:
    values = declare_parameters(make_node(**overrides), SPECS)
    name, value = next(iter(overrides.items()))
    assert values[name] == value


@pytest.mark.parametrize("overrides", [{"rate": 0.49}, {"rate": 10.01}, {"count": 0},
                                       {"count": 6}])
def test_a_start_up_value_out_of_range_raises(make_node, overrides: dict) -> None:
    """rclpy itself refuses an override outside the descriptor's range (Jazzy, Kilted);
    where it does not, our check raises ParameterError. Either ends the node with one
    FATAL line (fer_ros/ros/run.py)."""
    name, value = next(iter(overrides.items()))
    with pytest.raises((ParameterError, ParameterException)) as caught:
        declare_parameters(make_node(**overrides), SPECS)
    assert name in str(caught.value) and str(value) in str(caught.value)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"mode": "medium"}, "parameter mode='medium' is not one of fast, slow"),
    ({"even": 3}, "parameter even=3 is odd"),
    ({"count": 2.5}, "parameter count: 2.5 is a float, expected a int"),
    ({"flag": 1}, "parameter flag: 1 is a int, expected a bool"),
    ({"count": True}, "parameter count: True is a bool, expected a int"),
    ({"rate": True}, "parameter rate: True is a bool, expected a float"),
])
def test_a_bad_start_up_value_raises_with_the_reason(make_node, overrides: dict,
                                                     message: str) -> None:
    with pytest.raises(ParameterError) as caught:
        declare_parameters(make_node(**overrides), SPECS)
    assert str(caught.value) == message


def test_neighbouring_types_are_converted_without_loss(make_node) -> None:
    """`-p rate:=3` arrives as an INTEGER, `-p label:=0` too: both are accepted, and the
    declared type (and so the descriptor's range) stays the spec's."""
    node = make_node(rate=3, label=0)
    values = declare_parameters(node, SPECS)
    assert values["rate"] == 3.0 and isinstance(values["rate"], float)
    assert values["label"] == "0"
    assert node.get_parameter("rate").type_ == Parameter.Type.DOUBLE
    assert node.get_parameter("label").type_ == Parameter.Type.STRING
    rate = node.describe_parameters(["rate"])[0]
    assert [(r.from_value, r.to_value) for r in rate.floating_point_range] == [(0.5, 10.0)]


def test_a_converted_value_is_still_checked(make_node) -> None:
    with pytest.raises((ParameterError, ParameterException), match="rate"):
        declare_parameters(make_node(rate=20), SPECS)
    with pytest.raises(ParameterError, match="mode='1' is not one of fast, slow"):
        declare_parameters(make_node(mode=1), SPECS)


def test_check_says_why_exactly() -> None:
    """The reasons ParamSpec.check gives (rclpy refuses a number out of its descriptor's
    range before our check runs; the reason is ours where it does not)."""
    rate, count, mode, _, flag, even = SPECS
    assert rate.check(10.5) == "rate=10.5 is outside [0.5, 10.0]"
    assert count.check(9) == "count=9 is outside [1, 5]"
    assert count.check(5) is None and rate.check(0.5) is None
    assert mode.check("medium") == "mode='medium' is not one of fast, slow"
    assert flag.check(False) is None  # a bool is not a number here
    assert even.check(3) == "even=3 is odd" and even.check(2) is None


def test_a_float_without_limits_has_no_range() -> None:
    desc = ParamSpec("gain", 1.0, "No limits.").descriptor()
    assert list(desc.floating_point_range) == [] and list(desc.integer_range) == []
    assert desc.additional_constraints == ""


def test_run_time_sets_are_checked_then_applied_once(make_node, capfd) -> None:
    node = make_node()
    changes: list[dict] = []
    values = declare_parameters(node, SPECS, on_change=changes.append)

    refused = node.set_parameters([Parameter("count", value=9)])[0]
    # (rclpy refuses a value out of the descriptor's range before our check can)
    assert not refused.successful and "count" in refused.reason
    assert node.get_parameter("count").value == 3 and values["count"] == 3
    refused = node.set_parameters([Parameter("mode", value="medium")])[0]
    assert refused.reason == "mode='medium' is not one of fast, slow"
    refused = node.set_parameters([Parameter("even", value=5)])[0]
    assert refused.successful is False and refused.reason == "even=5 is odd"
    assert changes == []
    # A parameter that is not ours (rclpy's own) is left to rclpy.
    assert node.set_parameters([Parameter("use_sim_time", value=True)])[0].successful
    assert changes == []

    assert node.set_parameters([Parameter("count", value=4)])[0].successful
    assert values["count"] == 4 and changes == [{"count": 4}]
    # Setting the value it has already changes nothing and calls nobody.
    assert node.set_parameters([Parameter("count", value=4)])[0].successful
    assert changes == [{"count": 4}]
    # Several at once: one call with all of them.
    assert node.set_parameters_atomically([Parameter("rate", value=1.0),
                                           Parameter("mode", value="slow")]).successful
    assert changes[-1] == {"rate": 1.0, "mode": "slow"} and len(changes) == 2
    assert values["rate"] == 1.0 and values["mode"] == "slow"
    logged = [line for line in capfd.readouterr().err.splitlines() if "applied" in line]
    assert [line.split("]: ", 1)[1] for line in logged] == [
        "parameters applied: count=4", "parameters applied: mode='slow', rate=1.0"]


def test_a_run_time_int_for_a_float_is_converted(make_node) -> None:
    node = make_node()
    values = declare_parameters(node, SPECS)
    assert node.set_parameters([Parameter("rate", value=7)])[0].successful
    assert values["rate"] == 7.0 and node.get_parameter("rate").type_ == Parameter.Type.DOUBLE


def test_read_only_is_refused_at_run_time(make_node) -> None:
    node = make_node()
    values = declare_parameters(node, SPECS)
    result = node.set_parameters([Parameter("label", value="other")])[0]
    assert not result.successful and values["label"] == "cam"


def test_render_yaml_holds_every_default_and_its_description() -> None:
    text = render_yaml("demo", SPECS, "Made by a test.\n\nSecond paragraph.")
    assert text.startswith("# Made by a test.\n#\n# Second paragraph.\n/**/demo:\n")
    params = yaml.safe_load(text)["/**/demo"]["ros__parameters"]
    assert params == {spec.name: spec.default for spec in SPECS}
    lines = text.splitlines()
    at = lines.index('    label: "cam"')
    assert lines[at - 1] == "    # Any string; fixed after start-up. Read only."
    at = lines.index("    flag: true")
    assert lines[at - 1] == "    # A bool."


def test_render_yaml_wraps_long_descriptions_at_92_columns() -> None:
    """Filled to 92 columns (a 93rd would take the 'x'), hyphenated words kept whole."""
    words = " ".join(f"word{i:02d}" for i in range(11))
    text = "a" * 85 + " x " + words + " well-known-hyphenated and the rest"
    lines = render_yaml("n", (ParamSpec("long", 1, text),), "h").splitlines()
    assert lines[3:] == ["    # " + "a" * 85, "    # x " + words,
                         "    # well-known-hyphenated and the rest", "    long: 1"]


def test_render_yaml_quotes_strings_and_writes_lists() -> None:
    specs = (ParamSpec("path", 'a "b" \\c', "Quotes."),
             ParamSpec("names", ["", "cam1"], "A list."),
             ParamSpec("enabled", False, "Off."))
    params = yaml.safe_load(render_yaml("n", specs, "h"))["/**/n"]["ros__parameters"]
    assert params == {"path": 'a "b" \\c', "names": ["", "cam1"], "enabled": False}
    assert "    enabled: false" in render_yaml("n", specs, "h").splitlines()


class HumbleNode(Node):
    """A Node with Humble's parameter API: no pre-set or post-set callbacks."""

    @property
    def add_pre_set_parameters_callback(self):
        raise AttributeError("Humble's rclpy has none")

    @property
    def add_post_set_parameters_callback(self):
        raise AttributeError("Humble's rclpy has none")


def test_on_humble_changes_are_applied_after_the_set_by_the_executor(rclpy_context) -> None:
    from rclpy.executors import SingleThreadedExecutor

    node = HumbleNode("params_test_humble", context=rclpy_context)
    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(node)
    try:
        changes: list[dict] = []
        values = declare_parameters(node, SPECS, on_change=changes.append)
        assert node.set_parameters([Parameter("count", value=2)])[0].successful
        # Accepted, but applied only when the executor runs the guard condition.
        assert changes == [] and values["count"] == 3
        executor.spin_once(timeout_sec=5.0)
        assert changes == [{"count": 2}] and values["count"] == 2
        # A refused set wakes nobody: nothing pending, nothing applied.
        assert not node.set_parameters([Parameter("mode", value="x")])[0].successful
        executor.spin_once(timeout_sec=0.2)
        assert changes == [{"count": 2}]
        # Without the pre-set callback an INTEGER for a DOUBLE is refused on Humble
        # (rclpy's own type check): the docstring says to write 20.0 there.
        assert not node.set_parameters([Parameter("rate", value=3)])[0].successful
    finally:
        executor.shutdown()
        node.destroy_node()
