"""Stand-ins for ``launch.substitutions`` and ``launch.conditions``."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from typing import Any

from fer_ros.rosless.launch_core import (
    Condition,
    LaunchContext,
    LaunchError,
    Substitution,
    describe,
    perform,
    truth,
)

# ---------------------------------------------------------------------------- substitutions


class TextSubstitution(Substitution):
    def __init__(self, *, text: str) -> None:
        self.text = text

    def perform(self, context: LaunchContext) -> str:
        return self.text

    def describe(self) -> str:
        return repr(self.text)


class LaunchConfiguration(Substitution):
    def __init__(self, variable_name: Any, *, default: Any = None) -> None:
        self.variable_name = variable_name
        self.default = default

    def perform(self, context: LaunchContext) -> str:
        name = perform(self.variable_name, context)
        if name in context.launch_configurations:
            return context.launch_configurations[name]
        if self.default is not None:
            return perform(self.default, context)
        raise LaunchError(f"launch configuration '{name}' does not exist")

    def describe(self) -> str:
        return f"LaunchConfiguration({describe(self.variable_name)})"


class PathJoinSubstitution(Substitution):
    def __init__(self, substitutions: Iterable[Any]) -> None:
        self.substitutions = list(substitutions)

    def perform(self, context: LaunchContext) -> str:
        return os.path.join(*[perform(s, context) for s in self.substitutions])

    def describe(self) -> str:
        return "/".join(describe(s) for s in self.substitutions)


class EnvironmentVariable(Substitution):
    def __init__(self, name: Any, *, default_value: Any = None) -> None:
        self.name = name
        self.default_value = default_value

    def perform(self, context: LaunchContext) -> str:
        name = perform(self.name, context)
        value = context.environment.get(name, os.environ.get(name))
        if value is None:
            if self.default_value is None:
                raise LaunchError(f"environment variable '{name}' is not set")
            return perform(self.default_value, context)
        return value

    def describe(self) -> str:
        return f"EnvironmentVariable({describe(self.name)})"


# Names a PythonExpression may use: plain arithmetic, comparisons and these helpers.
_EXPRESSION_NAMES: dict[str, Any] = {
    name: getattr(math, name) for name in dir(math) if not name.startswith("_")}
_EXPRESSION_NAMES.update({
    "str": str, "int": int, "float": float, "bool": bool, "len": len, "abs": abs,
    "min": min, "max": max, "round": round, "True": True, "False": False, "None": None,
    "math": math,
})


class PythonExpression(Substitution):
    """The real one evals with full Python; this one allows no builtins beyond the above."""

    def __init__(self, expression: Any) -> None:
        self.expression = expression

    def perform(self, context: LaunchContext) -> str:
        text = perform(self.expression, context)
        if "__" in text:
            raise LaunchError(f"PythonExpression refuses dunder names: {text!r}")
        try:
            return str(eval(text, {"__builtins__": {}}, dict(_EXPRESSION_NAMES)))
        except Exception as exc:
            raise LaunchError(f"PythonExpression {text!r} failed: {exc}") from exc

    def describe(self) -> str:
        return f"PythonExpression({describe(self.expression)})"


def _normalized(text: str) -> Any:
    """As EqualsSubstitution compares: booleans and numbers by value, the rest as text."""
    lowered = text.strip().lower()
    if lowered in {"true", "false"}:
        return lowered == "true"
    try:
        return float(text)
    except ValueError:
        return text


class EqualsSubstitution(Substitution):
    def __init__(self, left: Any, right: Any) -> None:
        self.left, self.right = left, right

    def _equal(self, context: LaunchContext) -> bool:
        return _normalized(perform(self.left, context)) == _normalized(
            perform(self.right, context))

    def perform(self, context: LaunchContext) -> str:
        return "true" if self._equal(context) else "false"


class NotEqualsSubstitution(EqualsSubstitution):
    def perform(self, context: LaunchContext) -> str:
        return "false" if self._equal(context) else "true"


# ---------------------------------------------------------------------------- conditions


class IfCondition(Condition):
    def __init__(self, predicate_expression: Any) -> None:
        self.predicate_expression = predicate_expression

    def evaluate(self, context: LaunchContext) -> bool:
        return truth(perform(self.predicate_expression, context), "IfCondition")


class UnlessCondition(IfCondition):
    def evaluate(self, context: LaunchContext) -> bool:
        return not truth(perform(self.predicate_expression, context), "UnlessCondition")


class LaunchConfigurationEquals(Condition):
    def __init__(self, launch_configuration_name: str, expected_value: Any) -> None:
        self.name, self.expected = launch_configuration_name, expected_value

    def evaluate(self, context: LaunchContext) -> bool:
        return context.launch_configurations.get(self.name) == perform(self.expected, context)


class LaunchConfigurationNotEquals(LaunchConfigurationEquals):
    def evaluate(self, context: LaunchContext) -> bool:
        return not super().evaluate(context)
