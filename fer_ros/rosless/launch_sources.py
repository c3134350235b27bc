"""Stand-ins for including launch files: ``launch.LaunchDescriptionSource``,
``launch.launch_description_sources`` and ``launch.actions.IncludeLaunchDescription``.

As in ROS 2's launch (Humble to Kilted), an include is not scoped: its launch arguments
become launch configurations of the includer's context (SetLaunchConfiguration), then the
included description runs in that same context, so it also sees the includer's
configurations. Wrap the include in a GroupAction to keep its configurations inside.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from fer_ros.rosless.launch_actions import LaunchDescription, SetLaunchConfiguration
from fer_ros.rosless.launch_core import (
    Action,
    LaunchContext,
    LaunchError,
    describe,
    perform,
    unsupported,
)


def load_description(path: Path) -> LaunchDescription:
    """Call the file's generate_launch_description(); needs stand_in_modules() active."""
    if not path.is_file():
        raise LaunchError(f"launch file {path} does not exist")
    spec = importlib.util.spec_from_file_location(f"fer_ros_launch_{path.stem}".replace(
        ".", "_"), path)
    if spec is None or spec.loader is None:
        raise LaunchError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        description = module.generate_launch_description()
    except LaunchError:
        raise
    except Exception as exc:
        raise LaunchError(f"{path.name}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(description, LaunchDescription):
        raise LaunchError(f"{path.name}: generate_launch_description() must return a "
                          "launch.LaunchDescription")
    return description


class LaunchDescriptionSource:
    """A launch description and where it comes from; loaded once, when first needed."""

    def __init__(self, launch_description: LaunchDescription | None = None,
                 location: Any = "<string>",
                 method: str = "unspecified mechanism from a script") -> None:
        self._launch_description = launch_description
        self._location = location
        self._expanded_location: str | None = None
        self.method = method

    def try_get_launch_description_without_context(self) -> LaunchDescription | None:
        """The description if it loads without launch configurations, else None."""
        if self._launch_description is None:
            try:
                return self._load(perform(self._location, LaunchContext()))
            except LaunchError:  # e.g. the path uses a launch configuration not set yet
                return None
        return self._launch_description

    def get_launch_description(self, context: LaunchContext) -> LaunchDescription:
        if self._expanded_location is None:
            self._expanded_location = perform(self._location, context)
        if self._launch_description is None:
            self._launch_description = self._load(self._expanded_location)
        return self._launch_description

    def _load(self, location: str) -> LaunchDescription:
        raise LaunchError("LaunchDescriptionSource.get_launch_description(): called "
                          "without launch description being set")

    @property
    def location(self) -> str:
        if self._expanded_location is None:
            return describe(self._location)
        return self._expanded_location


class PythonLaunchDescriptionSource(LaunchDescriptionSource):
    """A ``.launch.py`` file; its path may be made of substitutions."""

    def __init__(self, launch_file_path: Any) -> None:
        super().__init__(None, launch_file_path, "interpreted python launch file")

    def _load(self, location: str) -> LaunchDescription:
        return load_description(Path(location))


class AnyLaunchDescriptionSource(PythonLaunchDescriptionSource):
    """Real launch also reads XML and YAML launch files; the stand-in only Python ones."""

    def __init__(self, launch_file_path: Any) -> None:
        LaunchDescriptionSource.__init__(self, None, launch_file_path,
                                         "interpreted python or frontend launch file")

    def _load(self, location: str) -> LaunchDescription:
        if not location.endswith(".py"):
            raise unsupported(f"the launch file {Path(location).name} (only Python launch "
                              "files are)")
        return super()._load(location)


class IncludeLaunchDescription(Action):
    """Sets ``launch_arguments`` as launch configurations, then runs the description."""

    def __init__(self, launch_description_source: Any, *,
                 launch_arguments: Iterable[tuple[Any, Any]] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not isinstance(launch_description_source, LaunchDescriptionSource):
            launch_description_source = AnyLaunchDescriptionSource(launch_description_source)
        self.launch_description_source = launch_description_source
        self.launch_arguments = () if launch_arguments is None else tuple(launch_arguments)
        for pair in self.launch_arguments:
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise LaunchError("IncludeLaunchDescription(launch_arguments=...) takes "
                                  f"(name, value) pairs, e.g. a dict's .items(); got {pair!r}")

    def describe_sub_entities(self) -> list[Any]:
        description = self.launch_description_source.try_get_launch_description_without_context()
        return [description] if description is not None else []

    def execute(self, context: LaunchContext) -> list[Any]:
        description = self.launch_description_source.get_launch_description(context)
        given = [perform(name, context) for name, _ in self.launch_arguments]
        # As real launch: an unconditional argument without a default must be given here.
        for argument in description.get_launch_arguments():
            if argument.conditionally_included or argument.default_value is not None:
                continue
            if argument.name not in given:
                raise LaunchError(
                    f"included launch description {self.launch_description_source.location} "
                    f"misses required argument '{argument.name}' (description: "
                    f"'{argument.description}'), given: [{', '.join(given)}]")
        return [*(SetLaunchConfiguration(name, value) for name, value in self.launch_arguments),
                description]
