"""Stand-ins for the parts of ROS 2 ``launch``/``launch_ros`` that our launch files use.

ROS 2's launch system is not on PyPI, so without a ROS install ``fer-ros launch`` loads a
launch file with these classes injected as ``launch``, ``launch.actions``, ... They keep
the real API's names and arguments, so the same file runs under ``ros2 launch``. Executing
a description does not start anything: it yields ``ProcessSpec`` entries (one per Node or
ExecuteProcess whose condition holds) that launch_runner starts and supervises.

Supported: LaunchDescription; actions DeclareLaunchArgument, SetLaunchConfiguration,
LogInfo, SetEnvironmentVariable, GroupAction, OpaqueFunction, ExecuteProcess, Shutdown
(launch_actions); IncludeLaunchDescription of Python launch files, with
launch_description_sources PythonLaunchDescriptionSource and AnyLaunchDescriptionSource
and launch.LaunchDescriptionSource (launch_sources); substitutions LaunchConfiguration,
TextSubstitution, PathJoinSubstitution, PythonExpression, EnvironmentVariable,
EqualsSubstitution, NotEqualsSubstitution; conditions IfCondition, UnlessCondition,
LaunchConfigurationEquals, LaunchConfigurationNotEquals (launch_substitutions); launch_ros
Node, FindPackageShare, FindPackagePrefix, ParameterValue (launch_ros_standins). Anything
else raises UnsupportedLaunchFeature naming it.

This module maps those classes onto module names and installs them while a file loads.
"""

from __future__ import annotations

import importlib.abc
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fer_ros.rosless import launch_actions as actions
from fer_ros.rosless import launch_ros_standins as ros
from fer_ros.rosless import launch_sources as sources
from fer_ros.rosless import launch_substitutions as subst
from fer_ros.rosless.launch_core import Action, Condition, LaunchContext, Substitution, unsupported

_MODULES: dict[str, dict[str, Any]] = {
    "launch": {"LaunchDescription": actions.LaunchDescription, "LaunchContext": LaunchContext,
               "Action": Action, "Condition": Condition, "Substitution": Substitution,
               "LaunchDescriptionSource": sources.LaunchDescriptionSource},
    "launch.actions": {c.__name__: c for c in (
        actions.DeclareLaunchArgument, actions.SetLaunchConfiguration, actions.LogInfo,
        actions.SetEnvironmentVariable, actions.Shutdown, actions.GroupAction,
        actions.OpaqueFunction, actions.ExecuteProcess, sources.IncludeLaunchDescription)},
    "launch.launch_description_sources": {c.__name__: c for c in (
        sources.PythonLaunchDescriptionSource, sources.AnyLaunchDescriptionSource)},
    "launch.substitutions": {c.__name__: c for c in (
        subst.LaunchConfiguration, subst.TextSubstitution, subst.PathJoinSubstitution,
        subst.PythonExpression, subst.EnvironmentVariable, subst.EqualsSubstitution,
        subst.NotEqualsSubstitution)},
    "launch.conditions": {c.__name__: c for c in (
        subst.IfCondition, subst.UnlessCondition, subst.LaunchConfigurationEquals,
        subst.LaunchConfigurationNotEquals)},
    "launch_ros": {},
    "launch_ros.actions": {"Node": ros.Node},
    "launch_ros.substitutions": {"FindPackageShare": ros.FindPackageShare,
                                 "FindPackagePrefix": ros.FindPackagePrefix},
    "launch_ros.parameter_descriptions": {"ParameterValue": ros.ParameterValue},
}
_ROOTS = {"launch", "launch_ros"}


class _StandInModule(types.ModuleType):
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise unsupported(f"{self.__name__}.{name}")


class _RefuseOtherSubmodules(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any, target: Any = None) -> None:
        if fullname.split(".")[0] in _ROOTS and fullname not in _MODULES:
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
             if name.split(".")[0] in _ROOTS}
    for name in saved:
        del sys.modules[name]
    finder = _RefuseOtherSubmodules()
    sys.modules.update(_build_modules())
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
        for name in [n for n in sys.modules if n.split(".")[0] in _ROOTS]:
            del sys.modules[name]
        sys.modules.update({k: v for k, v in saved.items() if v is not None})
