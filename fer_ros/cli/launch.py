"""``fer-ros launch FILE|PACKAGE [FILE] [name:=value ...]``: run a ROS 2 launch file.

Delegates to ROS's own launch when it is installed; otherwise runs the file through the
stand-ins in fer_ros.rosless (see fer_ros/rosless/launch_runner.py).
"""

from __future__ import annotations

import argparse

from fer_ros.rosless.launch_runner import launch


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
    return launch(args.target, args.rest, args.show_args, args.sigterm_timeout)
