"""Stand-ins for the parts of ROS 2 ``launch``/``launch_ros`` that our launch files use.

ROS 2's launch system is not on PyPI, so without a ROS install ``fer-ros launch`` loads a
launch file with these classes injected as ``launch``, ``launch.actions``, ... They keep
the real API's names and arguments, so the same file runs under ``ros2 launch``. Executing
a description does not start anything: it yields ``ProcessSpec`` entries (one per Node or
ExecuteProcess whose condition holds) that launch_runner starts and supervises.

Supported: LaunchDescription; actions DeclareLaunchArgument, SetLaunchConfiguration,
LogInfo, SetEnvironmentVariable, GroupAction, OpaqueFunction, ExecuteProcess, Shutdown;
substitutions LaunchConfiguration, TextSubstitution, PathJoinSubstitution,
PythonExpression, EnvironmentVariable, EqualsSubstitution, NotEqualsSubstitution;
conditions IfCondition, UnlessCondition, LaunchConfigurationEquals,
LaunchConfigurationNotEquals; launch_ros Node, FindPackageShare, ParameterValue.
Anything else raises UnsupportedLaunchFeature naming it.
"""

from __future__ import annotations

import importlib.abc
import math
import os
import sys
import tempfile
import types
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class LaunchError(RuntimeError):
    """A problem in the launch file or its arguments: reported in one line."""


class UnsupportedLaunchFeature(LaunchError):
    pass


def unsupported(name: str) -> UnsupportedLaunchFeature:
    return UnsupportedLaunchFeature(
        f"fer-ros launch does not support {name}; install ROS 2 and use ros2 launch")


# ---------------------------------------------------------------------------- context

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


def _truth(text: str, what: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"true", "1"}:
        return True
    if lowered in {"false", "0"}:
        return False
    raise LaunchError(f"{what}: expected true or false, got {text!r}")


# ---------------------------------------------------------------------------- substitutions

class Substitution:
    def perform(self, context: LaunchContext) -> str:
        raise NotImplementedError

    def describe(self) -> str:
        return type(self).__name__


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


def find_package_prefix(package: str) -> Path:
    """The install prefix of ``package`` from the ament index (AMENT_PREFIX_PATH, then ours)."""
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    prefixes.append(sys.prefix)
    for prefix in prefixes:
        if Path(prefix, "share", "ament_index", "resource_index", "packages", package).exists():
            return Path(prefix)
    raise LaunchError(f"package '{package}' not found (AMENT_PREFIX_PATH: "
                      f"{os.environ.get('AMENT_PREFIX_PATH', '(unset)')})")


class FindPackageShare(Substitution):
    def __init__(self, package: Any) -> None:
        self.package = package

    def perform(self, context: LaunchContext) -> str:
        package = perform(self.package, context)
        return str(find_package_prefix(package) / "share" / package)

    def describe(self) -> str:
        return f"FindPackageShare({describe(self.package)})"


class FindPackagePrefix(FindPackageShare):
    def perform(self, context: LaunchContext) -> str:
        return str(find_package_prefix(perform(self.package, context)))


# ---------------------------------------------------------------------------- conditions

class Condition:
    def evaluate(self, context: LaunchContext) -> bool:
        raise NotImplementedError


class IfCondition(Condition):
    def __init__(self, predicate_expression: Any) -> None:
        self.predicate_expression = predicate_expression

    def evaluate(self, context: LaunchContext) -> bool:
        return _truth(perform(self.predicate_expression, context), "IfCondition")


class UnlessCondition(IfCondition):
    def evaluate(self, context: LaunchContext) -> bool:
        return not _truth(perform(self.predicate_expression, context), "UnlessCondition")


class LaunchConfigurationEquals(Condition):
    def __init__(self, launch_configuration_name: str, expected_value: Any) -> None:
        self.name, self.expected = launch_configuration_name, expected_value

    def evaluate(self, context: LaunchContext) -> bool:
        return context.launch_configurations.get(self.name) == perform(self.expected, context)


class LaunchConfigurationNotEquals(LaunchConfigurationEquals):
    def evaluate(self, context: LaunchContext) -> bool:
        return not super().evaluate(context)


# ---------------------------------------------------------------------------- actions

@dataclass
class ProcessSpec:
    """One process to start: what launch_runner supervises."""

    name: str
    cmd: list[str]
    env: dict[str, str] = field(default_factory=dict)
    required: bool = False
    respawn: bool = False
    respawn_delay: float = 0.0


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


class LaunchDescription:
    def __init__(self, initial_entities: Iterable[Any] | None = None, *,
                 deprecated_reason: str | None = None) -> None:
        self.entities: list[Any] = list(initial_entities or [])

    def add_action(self, action: Any) -> None:
        self.entities.append(action)

    add_entity = add_action

    def visit(self, context: LaunchContext) -> list[Any]:
        return list(self.entities)

    def get_launch_arguments(self) -> list[DeclareLaunchArgument]:
        found: list[DeclareLaunchArgument] = []

        def walk(entities: Iterable[Any]) -> None:
            for entity in entities:
                if isinstance(entity, DeclareLaunchArgument):
                    found.append(entity)
                elif isinstance(entity, (GroupAction, LaunchDescription)):
                    walk(entity.entities)
        walk(self.entities)
        return found


class DeclareLaunchArgument(Action):
    def __init__(self, name: str, *, default_value: Any = None, description: str = "",
                 choices: Iterable[str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.name = name
        self.default_value = default_value
        self.description = description
        self.choices = list(choices) if choices is not None else None

    def execute(self, context: LaunchContext) -> None:
        if self.name not in context.launch_configurations:
            if self.default_value is None:
                raise LaunchError(f"required launch argument '{self.name}' was not given "
                                  f"(pass {self.name}:=VALUE)")
            context.launch_configurations[self.name] = perform(self.default_value, context)
        value = context.launch_configurations[self.name]
        if self.choices is not None and value not in self.choices:
            raise LaunchError(f"argument '{self.name}' must be one of {self.choices}, "
                              f"got {value!r}")
        return None


class SetLaunchConfiguration(Action):
    def __init__(self, name: Any, value: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.name, self.value = name, value

    def execute(self, context: LaunchContext) -> None:
        context.launch_configurations[perform(self.name, context)] = perform(self.value, context)


class LogInfo(Action):
    def __init__(self, *, msg: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.msg = msg

    def execute(self, context: LaunchContext) -> None:
        print(f"[INFO] [launch.user]: {perform(self.msg, context)}", flush=True)


class SetEnvironmentVariable(Action):
    def __init__(self, name: Any, value: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.name, self.value = name, value

    def execute(self, context: LaunchContext) -> None:
        context.environment[perform(self.name, context)] = perform(self.value, context)


class Shutdown(Action):
    """Executed: stops the launch. As a Node/ExecuteProcess on_exit: marks it required."""

    def __init__(self, *, reason: Any = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.reason = reason

    def execute(self, context: LaunchContext) -> None:
        context.shutdown_reason = perform(self.reason, context) or "Shutdown action"


class GroupAction(Action):
    """Scoped (the default): launch configurations and environment set inside stay inside."""

    def __init__(self, actions: Iterable[Any], *, scoped: bool = True, forwarding: bool = True,
                 launch_configurations: dict[Any, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.entities = list(actions)
        self.scoped = scoped
        self.forwarding = forwarding
        self.launch_configurations = launch_configurations or {}

    def execute(self, context: LaunchContext) -> None:
        if not self.scoped:
            for key, value in self.launch_configurations.items():
                context.launch_configurations[perform(key, context)] = perform(value, context)
            run_entities(self.entities, context)
            return
        inner = LaunchContext(context.launch_configurations if self.forwarding else {})
        inner.environment = dict(context.environment)
        inner.params_dir = context.params_dir
        for key, value in self.launch_configurations.items():
            inner.launch_configurations[perform(key, context)] = perform(value, context)
        run_entities(self.entities, inner)
        context.processes.extend(inner.processes)
        context.shutdown_reason = context.shutdown_reason or inner.shutdown_reason


class OpaqueFunction(Action):
    def __init__(self, *, function: Callable[..., Any], args: Iterable[Any] | None = None,
                 kwargs: dict[str, Any] | None = None, **action_kwargs: Any) -> None:
        super().__init__(**action_kwargs)
        self.function = function
        self.args = list(args or [])
        self.kwargs = dict(kwargs or {})

    def execute(self, context: LaunchContext) -> list[Any]:
        return list(self.function(context, *self.args, **self.kwargs) or [])


def _check_on_exit(on_exit: Any, owner: str) -> bool:
    if on_exit is None:
        return False
    actions = on_exit if isinstance(on_exit, (list, tuple)) else [on_exit]
    if all(isinstance(a, Shutdown) for a in actions) and actions:
        return True
    raise unsupported(f"{owner}(on_exit=...) other than launch.actions.Shutdown()")


class ExecuteProcess(Action):
    def __init__(self, *, cmd: Iterable[Any], name: Any = None, cwd: Any = None,
                 additional_env: dict[Any, Any] | None = None, output: Any = "screen",
                 respawn: Any = False, respawn_delay: float | None = None,
                 on_exit: Any = None, shell: bool = False, emulate_tty: bool = False,
                 sigterm_timeout: Any = None, sigkill_timeout: Any = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if shell or cwd is not None:
            raise unsupported("ExecuteProcess(shell=True or cwd=...)")
        self.cmd = list(cmd)
        self.name = name
        self.additional_env = additional_env or {}
        self.respawn = respawn
        self.respawn_delay = respawn_delay or 0.0
        self.required = _check_on_exit(on_exit, type(self).__name__)

    def command(self, context: LaunchContext) -> list[str]:
        return [perform(part, context) for part in self.cmd]

    def default_name(self, context: LaunchContext, cmd: list[str]) -> str:
        return Path(cmd[0]).name

    def execute(self, context: LaunchContext) -> None:
        cmd = self.command(context)
        name = perform(self.name, context) if self.name is not None else \
            self.default_name(context, cmd)
        env = dict(context.environment)
        env.update({perform(k, context): perform(v, context)
                    for k, v in self.additional_env.items()})
        respawn = self.respawn if isinstance(self.respawn, bool) else \
            _truth(perform(self.respawn, context), "respawn")
        context.processes.append(ProcessSpec(name=name, cmd=cmd, env=env,
                                             required=self.required, respawn=respawn,
                                             respawn_delay=float(self.respawn_delay)))


# ---------------------------------------------------------------------------- launch_ros

class ParameterValue:
    """A parameter value; with value_type=str a '0' stays the string '0'."""

    def __init__(self, value: Any, *, value_type: Any = None) -> None:
        self.value = value
        self.value_type = value_type

    def evaluate(self, context: LaunchContext) -> Any:
        if not isinstance(self.value, (str, Substitution, list, tuple)):
            return self.value
        text = perform(self.value, context)
        if self.value_type is str:
            return text
        loaded = yaml.safe_load(text) if text else text
        if self.value_type in (int, float, bool):
            return self.value_type(loaded)
        return loaded


def _parameter_value(value: Any, context: LaunchContext) -> Any:
    if isinstance(value, ParameterValue):
        return value.evaluate(context)
    if isinstance(value, (str, Substitution)) or (
            isinstance(value, (list, tuple)) and value
            and any(isinstance(v, Substitution) for v in value)):
        # Like launch_ros: evaluated text is read as YAML ('5' -> 5, 'true' -> True).
        text = perform(value, context)
        return yaml.safe_load(text) if text else text
    if isinstance(value, dict):
        return {perform(k, context): _parameter_value(v, context) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_parameter_value(v, context) for v in value]
    return value


class Node(ExecuteProcess):
    """launch_ros.actions.Node: <prefix>/lib/<package>/<executable> --ros-args ..."""

    def __init__(self, *, executable: Any, package: Any = None, name: Any = None,
                 namespace: Any = None, exec_name: Any = None,
                 parameters: Iterable[Any] | None = None,
                 remappings: Iterable[tuple[Any, Any]] | None = None,
                 ros_arguments: Iterable[Any] | None = None,
                 arguments: Iterable[Any] | None = None, **kwargs: Any) -> None:
        super().__init__(cmd=[], name=exec_name, **kwargs)
        if package is None:
            raise unsupported("launch_ros.actions.Node without package=")
        self.package = package
        self.executable = executable
        self.node_name = name
        self.namespace = namespace
        self.parameters = list(parameters or [])
        self.remappings = list(remappings or [])
        self.ros_arguments = list(ros_arguments or [])
        self.arguments = list(arguments or [])

    def command(self, context: LaunchContext) -> list[str]:
        package = perform(self.package, context)
        executable = perform(self.executable, context)
        prefix = find_package_prefix(package)
        path = prefix / "lib" / package / executable
        if not os.access(path, os.X_OK):
            raise LaunchError(f"executable '{executable}' not found in package '{package}' "
                              f"(looked for {path})")
        cmd = [str(path), *(perform(a, context) for a in self.arguments), "--ros-args"]
        name = perform(self.node_name, context) if self.node_name is not None else ""
        if name:
            cmd += ["-r", f"__node:={name}"]
        namespace = perform(self.namespace, context) if self.namespace is not None else ""
        if namespace.strip("/"):
            cmd += ["-r", f"__ns:=/{namespace.strip('/')}"]
        for entry in self.parameters:
            cmd += ["--params-file", self._params_file(entry, context, name or executable)]
        for source, target in self.remappings:
            cmd += ["-r", f"{perform(source, context)}:={perform(target, context)}"]
        cmd += [perform(a, context) for a in self.ros_arguments]
        return cmd

    def _params_file(self, entry: Any, context: LaunchContext, label: str) -> str:
        if isinstance(entry, dict):
            # A dict becomes a YAML file for every node of this process, keeping its types.
            params = {str(k): _parameter_value(v, context) for k, v in entry.items()}
            if context.params_dir is None:
                context.params_dir = Path(tempfile.mkdtemp(prefix="fer_ros_params_"))
            directory = context.params_dir
            directory.mkdir(parents=True, exist_ok=True)
            path = directory / f"{label}_{len(list(directory.iterdir()))}.yaml"
            path.write_text(yaml.safe_dump({"/**": {"ros__parameters": params}}))
            return str(path)
        path = perform(entry, context)
        if not Path(path).is_file():
            raise LaunchError(f"parameter file {path!r} does not exist")
        return path

    def default_name(self, context: LaunchContext, cmd: list[str]) -> str:
        if self.node_name is not None:
            return perform(self.node_name, context)
        return perform(self.executable, context)


# ---------------------------------------------------------------------------- execution

def run_entities(entities: Iterable[Any], context: LaunchContext) -> None:
    for entity in entities:
        if context.shutdown_reason:
            return
        if isinstance(entity, LaunchDescription):
            run_entities(entity.entities, context)
        elif isinstance(entity, Action):
            run_entities(entity.visit(context), context)
        else:
            raise unsupported(f"a launch entity of type {type(entity).__name__}")


# ---------------------------------------------------------------------------- the modules

_MODULES: dict[str, dict[str, Any]] = {
    "launch": {"LaunchDescription": LaunchDescription, "LaunchContext": LaunchContext,
               "Action": Action, "Condition": Condition, "Substitution": Substitution},
    "launch.actions": {c.__name__: c for c in (
        DeclareLaunchArgument, SetLaunchConfiguration, LogInfo, SetEnvironmentVariable,
        Shutdown, GroupAction, OpaqueFunction, ExecuteProcess)},
    "launch.substitutions": {c.__name__: c for c in (
        LaunchConfiguration, TextSubstitution, PathJoinSubstitution, PythonExpression,
        EnvironmentVariable, EqualsSubstitution, NotEqualsSubstitution)},
    "launch.conditions": {c.__name__: c for c in (
        IfCondition, UnlessCondition, LaunchConfigurationEquals,
        LaunchConfigurationNotEquals)},
    "launch_ros": {},
    "launch_ros.actions": {"Node": Node},
    "launch_ros.substitutions": {"FindPackageShare": FindPackageShare,
                                 "FindPackagePrefix": FindPackagePrefix},
    "launch_ros.parameter_descriptions": {"ParameterValue": ParameterValue},
}


class _StandInModule(types.ModuleType):
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise unsupported(f"{self.__name__}.{name}")


class _RefuseOtherSubmodules(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any, target: Any = None) -> None:
        if fullname.split(".")[0] in {"launch", "launch_ros"} and fullname not in _MODULES:
            raise unsupported(f"module {fullname}")
        return None


def _build_modules() -> dict[str, types.ModuleType]:
    modules: dict[str, types.ModuleType] = {}
    for name, members in _MODULES.items():
        module = _StandInModule(name, "fer-ros stand-in for ROS 2 launch")
        module.__dict__.update(members)
        module.__path__ = []  # a package, so submodule imports reach our finder
        modules[name] = module
    for name, module in modules.items():
        if "." in name:
            parent, child = name.rsplit(".", 1)
            setattr(modules[parent], child, module)
    return modules


@contextmanager
def stand_in_modules() -> Iterator[None]:
    """Make ``import launch...`` give these stand-ins, only while a launch file loads."""
    saved = {name: sys.modules.get(name) for name in list(sys.modules)
             if name.split(".")[0] in {"launch", "launch_ros"}}
    for name in saved:
        del sys.modules[name]
    finder = _RefuseOtherSubmodules()
    sys.modules.update(_build_modules())
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
        for name in [n for n in sys.modules if n.split(".")[0] in {"launch", "launch_ros"}]:
            del sys.modules[name]
        sys.modules.update({k: v for k, v in saved.items() if v is not None})
