"""``fer-ros launch``: run a ROS 2 Python launch file, with or without ROS's launch.

With ROS 2's ``launch`` installed (a sourced ROS install) the file goes to its
LaunchService, exactly as ``ros2 launch`` would. Without it (the PyPI wheels carry no
launch/launch_ros), the file is loaded with the stand-ins of launch_shim and every Node
runs as a child process: ``<prefix>/lib/<package>/<executable> --ros-args -r __node:=...``.
Child output is prefixed with ``[name]``. Ctrl-C is forwarded once to each child; those
still running after --sigterm-timeout get SIGTERM, then SIGKILL. A node whose on_exit is
``launch.actions.Shutdown()`` is required: when it exits, everything stops.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from fer_ros.rosless import launch_shim
from fer_ros.rosless.launch_shim import LaunchError, ProcessSpec


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="FILE_OR_PACKAGE",
                        help="a launch file, or a package whose share dir holds FILE")
    parser.add_argument("rest", nargs="*", metavar="[FILE] name:=value",
                        help="the launch file name (after a package) and launch arguments")
    parser.add_argument("-s", "--show-args", "--show-arguments", action="store_true",
                        help="list the launch file's arguments and exit")
    parser.add_argument("--sigterm-timeout", type=float, default=5.0, metavar="S",
                        help="after Ctrl-C, wait S seconds before SIGTERM (default 5)")


def run(args: argparse.Namespace) -> int:
    try:
        path, launch_args = _resolve(args.target, args.rest)
        if _real_launch_available():
            return _run_with_ros_launch(path, launch_args, args.show_args)
        return Runner(path, launch_args, args.sigterm_timeout).run(args.show_args)
    except LaunchError as exc:
        print(f"fer-ros launch: error: {exc}", file=sys.stderr, flush=True)
        return 1


def _resolve(target: str, rest: list[str]) -> tuple[Path, dict[str, str]]:
    if Path(target).is_file():
        path, arg_items = Path(target), rest
    else:
        if not rest or ":=" in rest[0]:
            raise LaunchError(f"{target} is not a file; to name a package give "
                              "`fer-ros launch PACKAGE FILE`")
        share = launch_shim.find_package_prefix(target) / "share" / target
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


def _real_launch_available() -> bool:
    """ROS's launch, not a namespace package such as a source tree's launch/ folder."""
    for name in ("launch", "launch_ros"):
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin in (None, "namespace"):
            return False
    import launch

    return hasattr(launch, "LaunchDescription") and hasattr(launch, "LaunchService")


def _run_with_ros_launch(path: Path, launch_args: dict[str, str], show_args: bool) -> int:
    """What ``ros2 launch FILE name:=value`` does, through ROS's own LaunchService."""
    from launch.actions import IncludeLaunchDescription
    from launch.launch_description_sources import AnyLaunchDescriptionSource

    from launch import LaunchContext, LaunchService

    source = AnyLaunchDescriptionSource(str(path))
    if show_args:
        description = source.get_launch_description(LaunchContext())
        for argument in description.get_launch_arguments():
            print(f"'{argument.name}': {argument.description}")
        return 0
    service = LaunchService(argv=[f"{k}:={v}" for k, v in launch_args.items()])
    service.include_launch_description(IncludeLaunchDescription(
        source, launch_arguments=list(launch_args.items())))
    return int(service.run())


def load_description(path: Path) -> Any:
    """Call the file's generate_launch_description(); needs stand_in_modules() active."""
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
    if not isinstance(description, launch_shim.LaunchDescription):
        raise LaunchError(f"{path.name}: generate_launch_description() must return a "
                          "launch.LaunchDescription")
    return description


def show_arguments(description: Any) -> None:
    context = launch_shim.LaunchContext()
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
            default = launch_shim.perform(argument.default_value, context)
            context.launch_configurations[argument.name] = default
            print(f"        (default: '{default}')")
        except LaunchError:
            print(f"        (default: {launch_shim.describe(argument.default_value)})")


class Child:
    """One running process and the thread that copies its output, line by line."""

    def __init__(self, spec: ProcessSpec, lock: threading.Lock) -> None:
        self.spec = spec
        self.lock = lock
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **spec.env}
        try:
            # Own session: only we signal it (once), not the terminal's Ctrl-C as well.
            self.popen = subprocess.Popen(spec.cmd, stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, env=env,
                                          start_new_session=True)
        except OSError as exc:
            raise LaunchError(f"cannot start {spec.name}: {exc}") from exc
        self.log(f"process started with pid [{self.popen.pid}]")
        self.thread = threading.Thread(target=self._copy, daemon=True)
        self.thread.start()

    def log(self, text: str) -> None:
        with self.lock:
            print(f"[INFO] [{self.spec.name}-{self.popen.pid}]: {text}", flush=True)

    def _copy(self) -> None:
        assert self.popen.stdout is not None
        for raw in iter(self.popen.stdout.readline, b""):
            line = raw.decode(errors="replace").rstrip("\n")
            with self.lock:
                sys.stdout.write(f"[{self.spec.name}] {line}\n")
                sys.stdout.flush()

    def signal(self, sig: int) -> None:
        if self.popen.poll() is None:
            try:
                self.popen.send_signal(sig)
            except ProcessLookupError:
                pass


class Runner:
    def __init__(self, path: Path, launch_args: dict[str, str],
                 sigterm_timeout: float = 5.0) -> None:
        self.path = path
        self.launch_args = launch_args
        self.sigterm_timeout = sigterm_timeout
        self.lock = threading.Lock()
        self.children: list[Child] = []
        self.interrupts = 0

    def plan(self, params_dir: Path) -> launch_shim.LaunchContext:
        """Evaluate the launch file: the processes to start (nothing starts here)."""
        context = launch_shim.LaunchContext(self.launch_args)
        with launch_shim.stand_in_modules():
            description = load_description(self.path)
            declared = {a.name for a in description.get_launch_arguments()}
            for name in self.launch_args:
                if name not in declared:
                    print(f"[WARN] [launch]: argument '{name}' is not declared by "
                          f"{self.path.name}", flush=True)
            context.params_dir = params_dir
            try:
                launch_shim.run_entities(description.entities, context)
            except LaunchError:
                raise
            except Exception as exc:  # e.g. a ValueError from the file's OpaqueFunction
                raise LaunchError(f"{self.path.name}: {type(exc).__name__}: {exc}") from exc
        return context

    def run(self, show_args: bool = False) -> int:
        if show_args:
            with launch_shim.stand_in_modules():
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
            return self.supervise(context.processes)

    def _on_signal(self, signum: int, frame: object) -> None:
        self.interrupts += 1

    def supervise(self, specs: list[ProcessSpec]) -> int:
        previous = {sig: signal.signal(sig, self._on_signal)
                    for sig in (signal.SIGINT, signal.SIGTERM)}
        _unique_names(specs)
        failed = False
        stopping_since: float | None = None
        escalated = 0
        respawn_at: dict[int, float] = {}
        try:
            for spec in specs:
                self.children.append(Child(spec, self.lock))
            while True:
                if self.interrupts and stopping_since is None:
                    self._say("user interrupted with ctrl-c (SIGINT)")
                    stopping_since = self._stop(signal.SIGINT)
                now = time.monotonic()
                for index, child in enumerate(self.children):
                    code = child.popen.poll()
                    if code is None or index in respawn_at or getattr(child, "reported", False):
                        continue
                    child.reported = True  # type: ignore[attr-defined]
                    child.thread.join(1.0)
                    if code == 0 or (stopping_since is not None and code in (
                            -signal.SIGINT, -signal.SIGTERM, 130, 143)):
                        child.log("process has finished cleanly")
                    else:
                        child.log(f"process has died [exit code {code}, cmd "
                                  f"'{' '.join(child.spec.cmd)}']")
                        failed = True
                    if stopping_since is None and child.spec.required:
                        self._say(f"required process {child.spec.name} exited: shutting down")
                        stopping_since = self._stop(signal.SIGINT)
                    elif stopping_since is None and child.spec.respawn:
                        respawn_at[index] = now + child.spec.respawn_delay
                for index, when in list(respawn_at.items()):
                    if stopping_since is not None:
                        del respawn_at[index]
                    elif now >= when:
                        del respawn_at[index]
                        self.children[index] = Child(self.children[index].spec, self.lock)
                if all(c.popen.poll() is not None for c in self.children) and not respawn_at:
                    break
                if stopping_since is not None:
                    # Escalate: SIGTERM after the timeout (or a second Ctrl-C), then SIGKILL.
                    waited = now - stopping_since
                    if escalated == 0 and (waited > self.sigterm_timeout or self.interrupts > 1):
                        self._say("sending SIGTERM to the processes still running")
                        self._stop(signal.SIGTERM)
                        escalated = 1
                    elif escalated == 1 and (waited > 2 * self.sigterm_timeout
                                             or self.interrupts > 2):
                        self._say("sending SIGKILL to the processes still running")
                        self._stop(signal.SIGKILL)
                        escalated = 2
                time.sleep(0.05)
        finally:
            for child in self.children:
                child.signal(signal.SIGKILL)  # only reached with children left on errors
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        for child in self.children:
            child.thread.join(1.0)
        return 1 if failed and not self.interrupts else 0

    def _stop(self, sig: int) -> float:
        for child in self.children:
            child.signal(sig)
        return time.monotonic()

    def _say(self, text: str) -> None:
        with self.lock:
            print(f"[INFO] [launch]: {text}", flush=True)


def _unique_names(specs: list[ProcessSpec]) -> None:
    seen: dict[str, int] = {}
    for spec in specs:
        count = seen.get(spec.name, 0)
        seen[spec.name] = count + 1
        if count:
            spec.name = f"{spec.name}-{count + 1}"
