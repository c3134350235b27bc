"""The one way every fer_ros node declares its parameters.

Each node lists its parameters as a tuple of `ParamSpec` (name, default, description,
range or choices, read-only) and calls `declare_parameters(node, PARAMS, on_change)`:

* every parameter is declared with a ParameterDescriptor (description, range,
  read-only), so `ros2 param describe` shows it and config/*.yaml can set it;
* start-up values (YAML, `-p`) are checked against the range, choices and rule; a bad
  one raises `ParameterError` (or rclpy's own ParameterException: Jazzy's and Kilted's
  rclpy refuse an override outside the descriptor's range themselves), which `run_node`
  turns into one FATAL line and exit code 2;
* a run-time set that breaks a rule is refused with the reason
  (SetParametersResult.reason) and the node keeps its value;
* the validation callback only validates. Accepted changes are applied afterwards:
  through rclpy's post-set callback where it exists (Iron and later), otherwise
  (Humble, whose rclpy has only `add_on_set_parameters_callback`) from a guard
  condition that the executor runs right after the set has completed.

The command line types numbers itself: `-p fps:=20` is an INTEGER and `-p source:=0`
too. A DOUBLE or STRING parameter accepts them when the conversion loses nothing
(int -> float, int/float -> str), at start-up and (Iron and later, through the
pre-set callback) at run time; on Humble write `20.0`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy.exceptions import InvalidParameterTypeException
from rclpy.node import Node
from rclpy.parameter import Parameter


class ParameterError(ValueError):
    """A parameter given at start-up is out of range or of the wrong type."""


@dataclass(frozen=True)
class ParamSpec:
    """One parameter: its name, default (which fixes its type), description and limits.

    ``limits`` is an inclusive (low, high) range for numbers; ``choices`` lists the
    allowed strings; ``rule`` is any further check (value -> reason or None). All are
    enforced at start-up and on every later set.
    """

    name: str
    default: Any
    description: str
    limits: tuple[float, float] | None = None
    read_only: bool = False
    choices: tuple[str, ...] | None = None
    rule: Callable[[Any], str | None] | None = None

    def descriptor(self) -> ParameterDescriptor:
        desc = ParameterDescriptor(description=self.description, read_only=self.read_only)
        is_int = isinstance(self.default, int) and not isinstance(self.default, bool)
        if self.limits is not None and is_int:
            desc.integer_range = [IntegerRange(
                from_value=int(self.limits[0]), to_value=int(self.limits[1]), step=1)]
        elif self.limits is not None and isinstance(self.default, float):
            desc.floating_point_range = [FloatingPointRange(
                from_value=float(self.limits[0]), to_value=float(self.limits[1]), step=0.0)]
        if self.choices:
            # ROS has no enum type: the allowed values go into the free-text constraints.
            desc.additional_constraints = "one of: " + ", ".join(self.choices)
        return desc

    def check(self, value: Any) -> str | None:
        """Why ``value`` is not acceptable, or None."""
        if self.limits is not None and isinstance(value, (int, float)) \
                and not isinstance(value, bool) and not self.limits[0] <= value <= self.limits[1]:
            return f"{self.name}={value} is outside [{self.limits[0]}, {self.limits[1]}]"
        if self.choices is not None and value not in self.choices:
            return f"{self.name}={value!r} is not one of {', '.join(self.choices)}"
        if self.rule is not None:
            return self.rule(value)
        return None


def _coerce(value: Any, default: Any) -> Any:
    """`value` converted to the type of `default` when that is lossless, else unchanged."""
    if isinstance(default, bool) or isinstance(value, bool):
        return value
    if isinstance(default, float) and isinstance(value, int):
        return float(value)
    if isinstance(default, str) and isinstance(value, (int, float)):
        return str(value)
    return value


def _declare(node: Node, spec: ParamSpec) -> Any:
    """Declare one spec (typed like its default) and return its value, override included."""
    try:
        return node.declare_parameter(spec.name, spec.default, spec.descriptor()).value
    except InvalidParameterTypeException:
        pass
    # The override has a neighbouring type: read it through an untyped declaration,
    # then declare the typed parameter again with the converted value, so the
    # descriptor's type and range still hold.
    probe = node.declare_parameter(spec.name, spec.default,
                                   ParameterDescriptor(dynamic_typing=True))
    raw = probe.value
    node.undeclare_parameter(spec.name)
    value = _coerce(raw, spec.default)
    if type(value) is not type(spec.default):
        raise ParameterError(
            f"parameter {spec.name}: {raw!r} is a {type(raw).__name__}, expected a "
            f"{type(spec.default).__name__}")
    return node.declare_parameter(spec.name, value, spec.descriptor(),
                                  ignore_override=True).value


class _Applier:
    """Validates sets, then applies the accepted ones to the live values."""

    def __init__(self, node: Node, specs: dict[str, ParamSpec], values: dict[str, Any],
                 on_change: Callable[[dict[str, Any]], None] | None) -> None:
        self._node = node
        self._specs = specs
        self._values = values
        self._on_change = on_change
        self._pending: set[str] = set()
        self._wake = None

    def coerce(self, parameters: list[Parameter]) -> list[Parameter]:
        """Pre-set callback (Iron and later): `ros2 param set x 1` for a DOUBLE x."""
        out = []
        for param in parameters:
            spec = self._specs.get(param.name)
            if spec is not None:
                value = _coerce(param.value, spec.default)
                if value is not param.value and type(value) is type(spec.default):
                    param = Parameter(param.name, value=value)
            out.append(param)
        return out

    def validate(self, parameters: list[Parameter]) -> SetParametersResult:
        """On-set callback: checks only; nothing is applied here."""
        for param in parameters:
            spec = self._specs.get(param.name)
            problem = spec.check(param.value) if spec is not None else None
            if problem:
                return SetParametersResult(successful=False, reason=problem)
        if self._wake is not None:
            self._pending.update(p.name for p in parameters if p.name in self._specs)
            self._wake.trigger()
        return SetParametersResult(successful=True)

    def applied(self, parameters: list[Parameter]) -> None:
        """Post-set callback (Iron and later): the set has succeeded."""
        self._apply({p.name for p in parameters})

    def apply_pending(self) -> None:
        """Guard-condition callback (Humble): runs after the set has completed."""
        names, self._pending = self._pending, set()
        self._apply(names)

    def _apply(self, names: set[str]) -> None:
        # Read the values back from the node: on Humble a set that another callback
        # refused after ours leaves the old value there, and nothing changes.
        changed = {}
        for name in names & self._specs.keys():
            value = self._node.get_parameter(name).value
            if value != self._values.get(name):
                self._values[name] = changed[name] = value
        if not changed:
            return
        self._node.get_logger().info(
            "parameters applied: " + ", ".join(f"{k}={v!r}" for k, v in sorted(changed.items())))
        if self._on_change is not None:
            self._on_change(changed)

    def register(self) -> None:
        node = self._node
        if hasattr(node, "add_pre_set_parameters_callback"):
            node.add_pre_set_parameters_callback(self.coerce)
        node.add_on_set_parameters_callback(self.validate)
        if hasattr(node, "add_post_set_parameters_callback"):
            node.add_post_set_parameters_callback(self.applied)
        else:
            self._wake = node.create_guard_condition(self.apply_pending)


def declare_parameters(node: Node, specs: tuple[ParamSpec, ...],
                       on_change: Callable[[dict[str, Any]], None] | None = None,
                       ) -> dict[str, Any]:
    """Declare every spec, check the start-up values, and return a live dict of values.

    The dict follows accepted run-time sets. ``on_change`` is called with the changed
    {name: value} after a set has succeeded (see the module docstring for when).
    """
    values: dict[str, Any] = {}
    for spec in specs:
        value = _declare(node, spec)
        problem = spec.check(value)
        if problem:
            raise ParameterError(f"parameter {problem}")
        values[spec.name] = value
    _Applier(node, {spec.name: spec for spec in specs}, values, on_change).register()
    return values


def _yaml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_yaml_value(v) for v in value) + "]"
    return repr(value)


def render_yaml(node: str, specs: tuple[ParamSpec, ...], header: str) -> str:
    """A config/*.yaml for ``node``: every parameter at its default, its description (and
    whether it is read only) as the comment above it. The YAML is made from the specs, so
    its comments cannot drift from `ros2 param describe`."""
    import textwrap

    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    lines += [f"/**/{node}:", "  ros__parameters:"]
    for spec in specs:
        text = spec.description + (" Read only." if spec.read_only else "")
        lines += textwrap.wrap(text, width=92, initial_indent="    # ",
                               subsequent_indent="    # ", break_on_hyphens=False)
        lines.append(f"    {spec.name}: {_yaml_value(spec.default)}")
    return "\n".join(lines) + "\n"
