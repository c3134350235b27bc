"""Stand-ins for ``launch_ros``: Node, FindPackageShare/Prefix and ParameterValue.

A Node becomes ``<prefix>/lib/<package>/<executable> [arguments] --ros-args ...`` with
its name, namespace, parameters (a dict becomes a YAML file) and remappings.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from fer_ros.rosless.launch_actions import ExecuteProcess
from fer_ros.rosless.launch_core import (
    LaunchContext,
    LaunchError,
    Substitution,
    describe,
    find_package_prefix,
    perform,
    unsupported,
)


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
