"""Declaring typed ROS 2 parameters with descriptors, and the command line's number typing.

`--ros-args -p fps:=20` hands rclpy an INTEGER, and `-p source:=0` an INTEGER too, so a
DOUBLE or STRING parameter declared the plain way refuses them with
InvalidParameterTypeException. `declare` accepts such values when the conversion loses
nothing (int -> float, int/float -> str), and `coerce_numbers` does the same for
`ros2 param set` at run time.
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


def descriptor(description: str, *, read_only: bool = False,
               int_range: tuple[int, int] | None = None,
               float_range: tuple[float, float] | None = None,
               choices: tuple[str, ...] | None = None) -> ParameterDescriptor:
    """A ParameterDescriptor; `choices` go into additional_constraints (ROS has no enum)."""
    desc = ParameterDescriptor(description=description, read_only=read_only)
    if int_range is not None:
        desc.integer_range = [IntegerRange(from_value=int_range[0], to_value=int_range[1],
                                           step=1)]
    if float_range is not None:
        desc.floating_point_range = [FloatingPointRange(
            from_value=float(float_range[0]), to_value=float(float_range[1]), step=0.0)]
    if choices:
        desc.additional_constraints = "one of: " + ", ".join(choices)
    return desc


def _coerce(value: Any, default: Any) -> Any:
    """`value` converted to the type of `default` when that is lossless, else unchanged."""
    if isinstance(default, bool) or isinstance(value, bool):
        return value
    if isinstance(default, float) and isinstance(value, int):
        return float(value)
    if isinstance(default, str) and isinstance(value, (int, float)):
        return str(value)
    return value


def declare(node: Node, name: str, default: Any, desc: ParameterDescriptor) -> Any:
    """Declare `name` (typed like `default`) and return its value, override included."""
    try:
        return node.declare_parameter(name, default, desc).value
    except InvalidParameterTypeException:
        pass
    # The override has a neighbouring type: read it through an untyped declaration,
    # then declare the typed parameter again with the converted value, so the
    # descriptor's type and ranges still hold.
    probe = node.declare_parameter(name, default, ParameterDescriptor(dynamic_typing=True))
    raw = probe.value
    node.undeclare_parameter(name)
    value = _coerce(raw, default)
    if type(value) is not type(default):
        raise InvalidParameterTypeException(Parameter(name, value=raw),
                                            Parameter.Type.from_parameter_value(default).name)
    return node.declare_parameter(name, value, desc, ignore_override=True).value


def coerce_numbers(node: Node, parameters: list[Parameter]) -> list[Parameter]:
    """A pre-set callback: the same lossless conversions for `ros2 param set`."""
    out = []
    for param in parameters:
        if node.has_parameter(param.name):
            current = node.get_parameter(param.name).value
            value = _coerce(param.value, current)
            if value is not param.value and type(value) is type(current):
                param = Parameter(param.name, value=value)
        out.append(param)
    return out


@dataclass(frozen=True)
class ParamSpec:
    """One parameter: its name, default (which fixes its type), description and limits.

    ``limits`` is an inclusive (low, high) range for numbers; ``choices`` lists the
    allowed strings. Both are enforced at start-up and on every later set.
    """

    name: str
    default: Any
    description: str
    limits: tuple[float, float] | None = None
    read_only: bool = False
    choices: tuple[str, ...] | None = None

    def descriptor(self) -> ParameterDescriptor:
        is_int = isinstance(self.default, int) and not isinstance(self.default, bool)
        return descriptor(
            self.description, read_only=self.read_only, choices=self.choices,
            int_range=(int(self.limits[0]), int(self.limits[1]))
            if self.limits and is_int else None,
            float_range=self.limits if self.limits and isinstance(self.default, float) else None)

    def check(self, value: Any) -> str | None:
        """Why ``value`` is not acceptable, or None. (Ranges are also in the descriptor,
        but rclpy does not check overrides given at start-up against them.)"""
        if self.limits is not None and isinstance(value, (int, float)) \
                and not isinstance(value, bool) and not self.limits[0] <= value <= self.limits[1]:
            return f"{self.name}={value} is outside [{self.limits[0]}, {self.limits[1]}]"
        if self.choices is not None and value not in self.choices:
            return f"{self.name}={value!r} is not one of {', '.join(self.choices)}"
        return None


class ParameterError(ValueError):
    """A parameter given at start-up is out of range or of the wrong type."""


def declare_parameters(node: Node, specs: tuple[ParamSpec, ...],
                       on_change: Callable[[list[Parameter]], None] | None = None,
                       ) -> dict[str, Any]:
    """Declare every spec, validate start-up values, keep a live dict of the values.

    The returned dict follows later `ros2 param set` calls; a set that breaks a range,
    a choice or a type is refused with the reason (SetParametersResult.reason), and
    the node keeps its previous value. ``on_change`` sees accepted sets (applied ones).
    """
    by_name = {spec.name: spec for spec in specs}
    values: dict[str, Any] = {}
    for spec in specs:
        try:
            value = declare(node, spec.name, spec.default, spec.descriptor())
        except InvalidParameterTypeException as exc:
            raise ParameterError(f"parameter {spec.name}: {exc}") from None
        problem = spec.check(value)
        if problem:
            raise ParameterError(f"parameter {problem}")
        values[spec.name] = value

    def validate(parameters: list[Parameter]) -> SetParametersResult:
        for param in parameters:
            spec = by_name.get(param.name)
            if spec is None:
                continue
            problem = spec.check(param.value)
            if problem:
                return SetParametersResult(successful=False, reason=problem)
        for param in parameters:
            if param.name in by_name:
                values[param.name] = param.value
        if on_change is not None:
            on_change(parameters)
        return SetParametersResult(successful=True)

    node.add_pre_set_parameters_callback(lambda params: coerce_numbers(node, params))
    node.add_on_set_parameters_callback(validate)
    return values
