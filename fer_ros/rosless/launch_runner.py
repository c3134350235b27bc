"""Run a ROS 2 Python launch file, with or without ROS's launch (``fer-ros launch``).

With ROS 2's ``launch`` installed (a sourced ROS install) the file goes to its
LaunchService, exactly as ``ros2 launch`` would. Without it (the PyPI wheels carry no
launch/launch_ros), the file is loaded with the stand-ins of launch_shim and every Node
runs as a child process: ``<prefix>/lib/<package>/<executable> --ros-args -r __node:=...``,
started and watched by launch_supervisor. A node whose on_exit is
``launch.actions.Shutdown()`` is required: when it exits, everything stops.
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
from pathlib import Path

from fer_ros.rosless.launch_actions import LaunchDescription, run_entities
from fer_ros.rosless.launch_core import (
    LaunchContext,
    LaunchError,
    describe,
    find_package_prefix,
    perform,
)
from fer_ros.rosless.launch_shim import stand_in_modules
from fer_ros.rosless.launch_sources import load_description
from fer_ros.rosless.launch_supervisor import Supervisor


def launch(target: str, rest: list[str], show_args: bool = False,
           sigterm_timeout: float = 5.0) -> int:
    """``fer-ros launch TARGET [FILE] [name:=value ...]``; returns the exit code."""
    try:
        path, launch_args = resolve(target, rest)
        if real_launch_available():
            return run_with_ros_launch(path, launch_args, show_args)
        return Runner(path, launch_args, sigterm_timeout).run(show_args)
    except LaunchError as exc:
        print(f"fer-ros launch: error: {exc}", file=sys.stderr, flush=True)
        return 1


def resolve(target: str, rest: list[str]) -> tuple[Path, dict[str, str]]:
    """The launch file (a path, or PACKAGE FILE found in its share dir) and its arguments."""
    if Path(target).is_file():
        path, arg_items = Path(target), rest
    else:
        if not rest or ":=" in rest[0]:
            raise LaunchError(f"{target} is not a file; to name a package give "
                              "`fer-ros launch PACKAGE FILE`")
        share = find_package_prefix(target) / "share" / target
        matches = sorted(share.rglob(rest[0]))
        if not matches:
            raise LaunchError(f"no launch file {rest[0]!r} in {share}")
        path, arg_items = matches[0], rest[1:]
    launch_args: dict[str, str] = {}
    for item in arg_items:
        if ":=" not in item:
            raise LaunchError(f"launch arguments look like name:=value, got {item!r}")
        name, value = item.split(":=", 1)
        launch_args[name] = value
    return path.resolve(), launch_args


def real_launch_available() -> bool:
    """ROS's launch, not a namespace package such as a source tree's launch/ folder."""
    for name in ("launch", "launch_ros"):
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin in (None, "namespace"):
            return False
    import launch  # only reached when ROS's launch is installed

    return hasattr(launch, "LaunchDescription") and hasattr(launch, "LaunchService")


def run_with_ros_launch(path: Path, launch_args: dict[str, str], show_args: bool) -> int:
    """What ``ros2 launch FILE name:=value`` does, through ROS's own LaunchService."""
    # Only importable with a ROS install (real_launch_available() said so).
    from launch.actions import IncludeLaunchDescription
    from launch.launch_description_sources import AnyLaunchDescriptionSource

    from launch import LaunchContext as RosLaunchContext
    from launch import LaunchService

    source = AnyLaunchDescriptionSource(str(path))
    if show_args:
        description = source.get_launch_description(RosLaunchContext())
        for argument in description.get_launch_arguments():
            print(f"'{argument.name}': {argument.description}")
        return 0
    service = LaunchService(argv=[f"{k}:={v}" for k, v in launch_args.items()])
    service.include_launch_description(IncludeLaunchDescription(
        source, launch_arguments=list(launch_args.items())))
    return int(service.run())


def show_arguments(description: LaunchDescription) -> None:
    context = LaunchContext()
    print("Arguments (pass arguments as '<name>:=<value>'):")
    for argument in description.get_launch_arguments():
        print(f"\n    '{argument.name}':")
        print(f"        {argument.description or 'no description given'}")
        if argument.choices:
            print(f"        Valid choices are: {argument.choices}")
        if argument.default_value is None:
            print("        (required)")
            continue
        try:
            default = perform(argument.default_value, context)
            context.launch_configurations[argument.name] = default
            print(f"        (default: '{default}')")
        except LaunchError:
            print(f"        (default: {describe(argument.default_value)})")


class Runner:
    """A launch file run through the stand-ins: plan the processes, then supervise them."""

    def __init__(self, path: Path, launch_args: dict[str, str],
                 sigterm_timeout: float = 5.0) -> None:
        self.path = path
        self.launch_args = launch_args
        self.sigterm_timeout = sigterm_timeout

    def plan(self, params_dir: Path) -> LaunchContext:
        """Evaluate the launch file: the processes to start (nothing starts here)."""
        context = LaunchContext(self.launch_args)
        with stand_in_modules():
            description = load_description(self.path)
            declared = {a.name for a in description.get_launch_arguments()}
            for name in self.launch_args:
                if name not in declared:
                    print(f"[WARN] [launch]: argument '{name}' is not declared by "
                          f"{self.path.name}", flush=True)
            context.params_dir = params_dir
            try:
                run_entities(description.entities, context)
            except LaunchError:
                raise
            except Exception as exc:  # e.g. a ValueError from the file's OpaqueFunction
                raise LaunchError(f"{self.path.name}: {type(exc).__name__}: {exc}") from exc
        return context

    def run(self, show_args: bool = False) -> int:
        if show_args:
            with stand_in_modules():
                show_arguments(load_description(self.path))
            return 0
        with tempfile.TemporaryDirectory(prefix="fer_ros_launch_") as tmp:
            context = self.plan(Path(tmp))
            if context.shutdown_reason:
                print(f"[INFO] [launch]: {context.shutdown_reason}", flush=True)
                return 0
            if not context.processes:
                print("[INFO] [launch]: nothing to launch", flush=True)
                return 0
            return Supervisor(context.processes, self.sigterm_timeout).run()
