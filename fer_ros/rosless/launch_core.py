"""The base of the launch stand-ins: errors, the context, text evaluation, base classes.

Executing a description starts nothing: actions append ``ProcessSpec`` entries to the
context, which launch_runner then starts and supervises.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class LaunchError(RuntimeError):
    """A problem in the launch file or its arguments: reported in one line."""


class UnsupportedLaunchFeature(LaunchError):
    pass


def unsupported(name: str) -> UnsupportedLaunchFeature:
    return UnsupportedLaunchFeature(
        f"fer-ros launch does not support {name}; install ROS 2 and use ros2 launch")


@dataclass
class ProcessSpec:
    """One process to start: what launch_runner supervises."""

    name: str
    cmd: list[str]
    env: dict[str, str] = field(default_factory=dict)
    required: bool = False
    respawn: bool = False
    respawn_delay: float = 0.0


class LaunchContext:
    """What substitutions see: launch configurations and the environment for children."""

    def __init__(self, configurations: dict[str, str] | None = None) -> None:
        self.launch_configurations: dict[str, str] = dict(configurations or {})
        self.environment: dict[str, str] = {}
        self.processes: list[ProcessSpec] = []
        self.shutdown_reason: str | None = None
        self.params_dir: Path | None = None  # where Node dict parameters become YAML files

    def perform_substitution(self, substitution: Any) -> str:
        return perform(substitution, self)


class Substitution:
    def perform(self, context: LaunchContext) -> str:
        raise NotImplementedError

    def describe(self) -> str:
        return type(self).__name__


class Condition:
    def evaluate(self, context: LaunchContext) -> bool:
        raise NotImplementedError


class Action:
    def __init__(self, *, condition: Condition | None = None) -> None:
        self.condition = condition

    def visit(self, context: LaunchContext) -> list[Any]:
        """Run this action; returns sub-entities to run next."""
        if self.condition is not None and not self.condition.evaluate(context):
            return []
        return self.execute(context) or []

    def execute(self, context: LaunchContext) -> list[Any] | None:
        raise NotImplementedError

    def describe_sub_entities(self) -> list[Any]:
        """What this action holds, known without running it (for get_launch_arguments)."""
        return []


def perform(value: Any, context: LaunchContext) -> str:
    """Evaluate text, a substitution, or a list of them (concatenated) to a string."""
    if value is None:
        return ""
    if isinstance(value, (str, Path)):
        return str(value)
    if isinstance(value, Substitution):
        return value.perform(context)
    if isinstance(value, (list, tuple)):
        return "".join(perform(v, context) for v in value)
    if isinstance(value, (int, float, bool)):
        return str(value)
    raise LaunchError(f"cannot use {value!r} as text in a launch file")


def describe(value: Any) -> str:
    """A human-readable form of an unevaluated value (for --show-args)."""
    if isinstance(value, Substitution):
        return value.describe()
    if isinstance(value, (list, tuple)):
        return " + ".join(describe(v) for v in value)
    return repr(str(value))


def truth(text: str, what: str) -> bool:
    """Launch's boolean text: true/1 or false/0, any case; anything else is an error."""
    lowered = text.strip().lower()
    if lowered in {"true", "1"}:
        return True
    if lowered in {"false", "0"}:
        return False
    raise LaunchError(f"{what}: expected true or false, got {text!r}")


def find_package_prefix(package: str) -> Path:
    """The install prefix of ``package`` from the ament index (AMENT_PREFIX_PATH, then ours)."""
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    prefixes.append(sys.prefix)
    for prefix in prefixes:
        if Path(prefix, "share", "ament_index", "resource_index", "packages", package).exists():
            return Path(prefix)
    raise LaunchError(f"package '{package}' not found (AMENT_PREFIX_PATH: "
                      f"{os.environ.get('AMENT_PREFIX_PATH', '(unset)')})")
