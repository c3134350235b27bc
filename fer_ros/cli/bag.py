"""``fer-ros bag play|record|info``: rosbag2 bags without ``ros2 bag``.

The work is done in fer_ros.rosless (bag, bag_play, bag_record); their docstrings say
which bag format we write and how play makes sure no message is lost.
"""

from __future__ import annotations

import argparse
import sys

from fer_ros.rosless.bag import ANONYMIZE_MIN_FACE_SIZE as MIN_FACE_SIZE
from fer_ros.rosless.bag import BagError, info


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bag_command", metavar="ACTION", required=True)
    _add_play(sub.add_parser("play", help="publish the messages of a bag with their timing"))

    record = sub.add_parser("record", help="record topics into a new bag")
    record.add_argument("topics", nargs="+", metavar="TOPIC")
    record.add_argument("-o", "--output", required=True, help="bag directory to create")
    record.add_argument("-s", "--storage", choices=["mcap", "sqlite3"], default="mcap",
                        help="storage plugin (default mcap; sqlite3 is Humble's default)")
    record.add_argument("-d", "--duration", type=float, metavar="S",
                        help="stop after S seconds")
    record.add_argument("--max-messages", type=int, metavar="N",
                        help="stop after N messages in all")
    record.add_argument("--anonymize", action="store_true",
                        help="write every image (Image, CompressedImage) with each face the "
                             "detector finds pixelated; an image that cannot be searched is "
                             "not written")
    record.add_argument("--device", default="cpu",
                        help="with --anonymize: the detector's device (cpu, cuda[:N], auto)")
    record.add_argument("--min-face-size", type=int, default=MIN_FACE_SIZE, metavar="PX",
                        help=f"with --anonymize: the smallest face searched for (default "
                             f"{MIN_FACE_SIZE} px)")

    bag_info = sub.add_parser("info", help="print a bag's topics, counts and duration")
    bag_info.add_argument("bag")


def _add_play(play: argparse.ArgumentParser) -> None:
    play.add_argument("bag", help="bag directory (or its .mcap/.db3 file)")
    play.add_argument("--rate", type=float, default=1.0, help="speed factor (default 1.0)")
    play.add_argument("-l", "--loop", action="store_true", help="play again and again")
    play.add_argument("--topics", nargs="+", metavar="TOPIC", help="play only these topics")
    play.add_argument("--start-delay", type=float, default=5.0, metavar="S",
                      help="wait up to S seconds for a subscriber on every topic before the "
                           "first message (ends as soon as each has one; default 5)")
    play.add_argument("--wait-for-subscribers", type=int, default=0, metavar="N",
                      help="instead, wait (without a time limit) until every topic has N "
                           "subscribers")
    play.add_argument("--ack-timeout", type=float, default=5.0, metavar="S",
                      help="wait up to S seconds for reliable subscribers to acknowledge "
                           "each topic's first message, and all messages at the end "
                           "(default 5)")
    play.add_argument("--remap", nargs="+", action="extend", default=[], metavar="FROM:=TO",
                      help="publish topic FROM as TO")
    play.add_argument("--clock", type=float, nargs="?", const=40.0, default=None, metavar="HZ",
                      help="publish the bag time on /clock at HZ (default 40) for use_sim_time")


def run(args: argparse.Namespace) -> int:
    try:
        if args.bag_command == "play":
            # Imported here: rclpy and its executor (about 0.5 s) are not needed for `bag info`.
            from fer_ros.rosless.bag_play import PlayOptions, play

            return play(PlayOptions(
                bag=args.bag, rate=args.rate, loop=args.loop, topics=args.topics,
                remaps=args.remap, start_delay=args.start_delay,
                wait_for_subscribers=args.wait_for_subscribers, clock_hz=args.clock,
                ack_timeout=args.ack_timeout))
        if args.bag_command == "record":
            from fer_ros.rosless.bag_record import RecordOptions, record  # rclpy: as above

            return record(RecordOptions(
                topics=args.topics, output=args.output, storage=args.storage,
                duration=args.duration, max_messages=args.max_messages,
                anonymize=args.anonymize, device=args.device,
                min_face_size=args.min_face_size))
        return info(args.bag)
    except BagError as exc:
        print(f"fer-ros bag: error: {exc}", file=sys.stderr)
        return 1
